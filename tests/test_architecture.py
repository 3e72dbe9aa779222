"""The package's rooms and what each may import (ARCHITECTURE.md), checked on the source with ast.

Every ``import facekit...`` in every module, at module level or inside a function, is an edge of the
facekit-internal import graph. The graph must have no cycle, module by module and room by room, and a
room may only import rooms below it in :data:`LAYERS` (the drawing in ARCHITECTURE.md).
"""

import ast
import importlib
from pathlib import Path

import pytest

import facekit

PACKAGE = Path(facekit.__file__).resolve().parent

# room -> layer; a room imports only rooms of a lower layer (keep in step with ARCHITECTURE.md)
LAYERS = {
    "facekit": 0, "config": 0,
    "profiles": 1, "device": 1, "progress": 1, "metrics": 1, "viz": 1,
    "io": 2, "losses": 2, "stats": 2, "fairness": 2, "search": 2,
    "models": 3, "compress": 3, "data": 3,
    "detection": 4, "train": 4,
    "pretrained": 5, "privacy": 5, "pretrain": 5,
    "bench": 6, "verify": 6, "explore": 6,
    "reports": 7,
    "notebook": 8, "cli": 8, "course": 8,
    "__main__": 9,
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("facekit", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the facekit modules it imports (``from facekit.a import b`` is facekit.a.b when that is a module)."""
    edges = {}
    for name, path in mods.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name.split(".")[0] == "facekit"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "facekit":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                raise AssertionError(f"{path}: relative import; facekit uses absolute imports")
        edges[name] = {m for m in out if m in mods and m != name}
    return edges


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path, or None (iterative depth-first search)."""
    state = {}  # node -> 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_one_and_only_then():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y"}}) == ["y", "y"]


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_edges(modules()))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_no_import_cycle_between_rooms():
    rooms = {}
    for src, targets in import_edges(modules()).items():
        rooms.setdefault(room(src), set()).update(room(t) for t in targets if room(t) != room(src))
    cycle = find_cycle(rooms)
    assert cycle is None, f"rooms import each other: {' -> '.join(cycle)}"


def test_every_room_imports_only_rooms_below_it():
    mods = modules()
    unknown = sorted({room(m) for m in mods} - set(LAYERS))
    assert not unknown, f"rooms {unknown} are not in LAYERS: place them in ARCHITECTURE.md and in this test"
    upward = sorted(f"{src} -> {dst}" for src, targets in import_edges(mods).items() for dst in targets
                    if room(src) != room(dst) and LAYERS[room(dst)] >= LAYERS[room(src)])
    assert not upward, "imports that run up or sideways (see ARCHITECTURE.md):\n" + "\n".join(upward)


@pytest.mark.parametrize("name", sorted(set(modules()) - {"facekit.__main__"}))  # __main__ runs the CLI
def test_every_module_imports(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:  # an optional third-party package (an extra) that is not installed
        if (err.name or "").split(".")[0] == "facekit":
            raise
        pytest.skip(f"{name} needs {err.name}, which is not installed")


# Size limits of the style guide: a file past ~300 lines is a sign to split, a function body past ~60 lines too.
MAX_FILE_LINES = 320  # "about 300": cli, download, attention and finding sit at 301-314 lines, one idea each
MAX_FUNCTION_BODY = 60  # lines of code after the docstring
SIZE_EXCEPTIONS: dict[str, str] = {}  # "facekit/<file>.py": the reason it may stay longer


def _function_bodies(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                if len(body) == 1:
                    continue
                first = body[1]
            yield node.name, node.end_lineno - first.lineno + 1


def test_files_and_functions_stay_small():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel in SIZE_EXCEPTIONS:
            continue
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{rel}: {len(source.splitlines())} lines")
        too_long += [f"{rel}:{name}: {n} lines" for name, n in _function_bodies(ast.parse(source))
                     if n > MAX_FUNCTION_BODY]
    assert not too_long, "split these (or list them in SIZE_EXCEPTIONS with a reason): " + "; ".join(too_long)
