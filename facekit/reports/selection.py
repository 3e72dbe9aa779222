"""Which notebooks a report run executes, and with which parameters (checked before anything runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from facekit.config import ConfigError, check_keys
from facekit.reports.order import notebook_meta

SYNC_MARGIN_S = 1.0  # jupytext writes the two files of a pair a moment apart


def available_notebooks(notebooks_dir: str | os.PathLike = "notebooks") -> list[Path]:
    """The ``*.ipynb`` of `notebooks_dir` in name order (hidden files left out)."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise ConfigError(f"notebooks folder {str(notebooks_dir)!r} does not exist")
    return sorted(p for p in notebooks_dir.glob("*.ipynb") if not p.name.startswith("."))


def _topic(stem: str) -> str:
    """A notebook's name without its number: ``11_verify_your_faces`` -> ``verify_your_faces``."""
    head, _, rest = stem.partition("_")
    return rest if head.isdigit() and rest else stem


def matching_stems(key: str, stems: Iterable[str]) -> list[str]:
    """The notebook names that `key` picks: the exact name, else the names it begins, else the names whose part
    after the number it begins (``"verify"`` -> ``11_verify_your_faces``).

    >>> matching_stems("0", ["00_a", "01_b", "11_c"])
    ['00_a', '01_b']
    """
    stems = list(stems)
    return ([s for s in stems if s == key] or [s for s in stems if s.startswith(key)]
            or [s for s in stems if _topic(s).startswith(key)])


def select_notebooks(items=None, notebooks_dir: str | os.PathLike = "notebooks") -> list[Path]:
    """Resolve paths, names and name prefixes (``"00"``, ``"01_cnn"``, or ``"verify"`` without the number) to
    notebooks, in name order.

    >>> select_notebooks(["01"], "notebooks")  # doctest: +SKIP
    [PosixPath('notebooks/01_cnn_basics.ipynb')]
    """
    available = available_notebooks(notebooks_dir)
    listing = ", ".join(p.stem for p in available) or f"none: {notebooks_dir} has no .ipynb"
    if items is None:
        if not available:
            raise ConfigError(f"no notebooks to run in {str(notebooks_dir)!r}")
        return available
    if isinstance(items, (str, os.PathLike)):
        items = [items]
    chosen: dict[Path, None] = {}
    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.suffix in (".ipynb", ".py") and (path.exists() or "/" in text or os.sep in text):
            ipynb = path.with_suffix(".ipynb")
            if not ipynb.exists():
                hint = " (run `jupytext --sync` on its .py to create it)" if path.suffix == ".py" else ""
                raise ConfigError(f"notebook {text!r} not found: no {str(ipynb)!r}{hint}")
            chosen[ipynb] = None
            continue
        key = text[: -len(path.suffix)] if path.suffix in (".ipynb", ".py") else text
        picked = matching_stems(key, [p.stem for p in available])
        matches = [p for p in available if p.stem in picked]
        if not matches:
            raise ConfigError(f"no notebook matches {text!r}; available notebooks: {listing}")
        if len(matches) > 1:
            names = ", ".join(p.stem for p in matches)
            raise ConfigError(f"{text!r} is ambiguous: it matches {names}; give more of the name")
        chosen[matches[0]] = None
    return sorted(chosen, key=lambda p: (p.name, str(p)))


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict]:
    """The parameters of the cell tagged ``parameters`` (name -> {inferred_type_name, default, help}).

    Raises ConfigError when the notebook has no such cell.
    """
    import nbformat
    import papermill

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ConfigError(f"notebook {path.stem!r} has no cell tagged 'parameters' ({path})")
    try:
        return papermill.inspect_notebook(str(path))
    except ValueError:  # no kernelspec in the notebook: read the parameters cell as Python
        from papermill.translators import papermill_translators

        cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
        params = papermill_translators.find_translator("python3", "python").inspect(cell)
        return {p.name: p._asdict() for p in params}


def plan_parameters(accepted: Mapping[Path, Iterable[str]], parameters: Mapping[str, Any], profile: str) -> dict:
    """Decide what each notebook gets: ``profile`` always, each other key where it is accepted.

    A key that no notebook accepts, or a notebook without a ``profile`` parameter, is a ConfigError.
    """
    if "profile" in parameters:
        raise ConfigError("pass the profile as profile=... (--profile on the command line), not as a parameter")
    for path, names in accepted.items():
        if "profile" not in names:
            raise ConfigError(
                f"notebook {Path(path).stem!r} has no 'profile' in its parameters cell; "
                f"its parameters: {', '.join(sorted(names)) or 'none'}"
            )
    union = sorted({n for names in accepted.values() for n in names})
    stems = ", ".join(Path(p).stem for p in accepted)
    check_keys(parameters, union, what=f"parameter for notebook(s) {stems}")
    return {
        path: {"profile": profile, **{k: v for k, v in parameters.items() if k in set(names)}}
        for path, names in accepted.items()
    }


def pair_warning(ipynb: Path) -> str | None:
    """A message when the paired ``.py`` is newer than the ``.ipynb`` (the pair may be out of sync)."""
    py = ipynb.with_suffix(".py")
    if py.exists() and py.stat().st_mtime > ipynb.stat().st_mtime + SYNC_MARGIN_S:
        return (
            f"{py.name} is newer than {ipynb.name}: the pair may be out of sync and the .ipynb is what "
            f"runs (run `jupytext --sync {py}`)"
        )
    return None


def default_selection(notebooks_dir, *, all_notebooks: bool = False) -> list[Path]:
    """Every notebook with ``all_notebooks``, else the course: those whose metadata group is not ``benchmark``."""
    available = available_notebooks(notebooks_dir)
    if all_notebooks:
        if not available:
            raise ConfigError(f"no notebooks to run in {str(notebooks_dir)!r}")
        return available
    course = [p for p in available if notebook_meta(p)["group"] != "benchmark"]
    if not course:
        raise ConfigError(f"no course notebooks to run in {str(notebooks_dir)!r}"
                          + (" (only benchmarks: use --all)" if available else ""))
    return course
