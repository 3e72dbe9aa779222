"""Which notebooks a run executes, and in what order: groups and ``depends_on`` metadata.

A notebook declares what it needs in its metadata, set through the Jupytext header of its ``.py``::

    # ---
    # jupyter:
    #   facekit:
    #     depends_on: [05_self_supervised_pretraining]
    #     group: course          # or: benchmark
    #   jupytext: ...

(add ``facekit`` to ``notebook_metadata_filter`` so that Jupytext keeps it in the ``.ipynb``).
``depends_on`` lists the stems of the notebooks whose artifacts (checkpoints written with
:func:`facekit.io.artifact_path`) it reads; ``facekit report`` runs those first. ``group`` is
``course`` (the default) or ``benchmark``: ``facekit report`` without notebook names runs the
course, ``facekit report --all`` the course and the benchmarks.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path
from typing import Iterable, Mapping

from facekit.config import ConfigError

GROUPS = ("course", "benchmark")


def notebook_meta(path: str | os.PathLike) -> dict:
    """The ``facekit`` block of a notebook's metadata (``{}`` when there is none), checked.

    Returns ``{"depends_on": [stems], "group": "course" | "benchmark"}``; a malformed block is a
    ConfigError naming the notebook and the key.
    """
    import nbformat

    path = Path(path)
    meta = nbformat.read(path, as_version=4).metadata.get("facekit", {}) or {}
    if not isinstance(meta, Mapping):
        raise ConfigError(f"notebook {path.stem!r}: metadata 'facekit' must be a mapping, got {type(meta).__name__}")
    unknown = sorted(set(meta) - {"depends_on", "group"})
    if unknown:
        raise ConfigError(f"notebook {path.stem!r}: unknown key(s) {unknown} in metadata 'facekit'; "
                          "accepted: depends_on, group")
    deps = meta.get("depends_on", []) or []
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) and d for d in deps):
        raise ConfigError(f"notebook {path.stem!r}: depends_on must be a list of notebook names, got {deps!r}")
    group = meta.get("group", "course")
    if group not in GROUPS:
        raise ConfigError(f"notebook {path.stem!r}: group={group!r} is not accepted; use one of {GROUPS}")
    return {"depends_on": [Path(d).stem if d.endswith(".ipynb") else d for d in deps], "group": group}


def dependency_graph(paths: Iterable[Path], available: Iterable[Path]) -> dict[str, list[str]]:
    """``{stem: [stems it depends on]}`` for `paths` and, transitively, what they depend on.

    Dependencies are looked up by exact stem among `available`; an unknown one is a ConfigError.
    """
    by_stem = {p.stem: p for p in available}
    for p in paths:
        by_stem.setdefault(p.stem, p)
    graph: dict[str, list[str]] = {}
    todo = [p.stem for p in paths]
    while todo:
        stem = todo.pop()
        if stem in graph:
            continue
        deps = notebook_meta(by_stem[stem])["depends_on"]
        for d in deps:
            if d not in by_stem:
                listing = ", ".join(sorted(by_stem)) or "none"
                raise ConfigError(f"notebook {stem!r} depends on {d!r}, which is not a notebook here; "
                                  f"available notebooks: {listing}")
            if d == stem:
                raise ConfigError(f"notebook {stem!r} depends on itself")
        graph[stem] = list(dict.fromkeys(deps))
        todo.extend(graph[stem])
    return graph


def topological_order(stems: Iterable[str], graph: Mapping[str, list[str]]) -> list[str]:
    """`stems` ordered so that each comes after what it depends on; ties in name order (stable).

    Dependencies outside `stems` are ignored (they are not part of the batch). A cycle is a
    ConfigError that names it.

    >>> topological_order(["00_a", "01_b", "02_c"], {"00_a": ["02_c"], "01_b": [], "02_c": []})
    ['01_b', '02_c', '00_a']
    """
    stems = list(dict.fromkeys(stems))
    inside = set(stems)
    needs = {s: {d for d in graph.get(s, []) if d in inside} for s in stems}
    users: dict[str, list[str]] = {s: [] for s in stems}
    for s, deps in needs.items():
        for d in deps:
            users[d].append(s)
    ready = [s for s in stems if not needs[s]]
    heapq.heapify(ready)
    order = []
    while ready:
        s = heapq.heappop(ready)
        order.append(s)
        for u in users[s]:
            needs[u].discard(s)
            if not needs[u]:
                heapq.heappush(ready, u)
    if len(order) < len(stems):
        raise ConfigError(f"notebook dependencies form a cycle: {' -> '.join(_find_cycle(needs))}")
    return order


def _find_cycle(needs: Mapping[str, set]) -> list[str]:
    """One cycle among the nodes left with unmet needs, as a closed path ``a -> b -> a``."""
    start = min(s for s, d in needs.items() if d)
    path, seen = [start], {start: 0}
    while True:
        nxt = min(needs[path[-1]])
        if nxt in seen:
            return path[seen[nxt]:] + [nxt]
        seen[nxt] = len(path)
        path.append(nxt)


def plan_batch(paths: list[Path], available: list[Path], *, add_dependencies: bool = True):
    """Order `paths` by their dependencies, adding the missing ones unless told not to.

    Returns ``(ordered paths, stems added as dependencies, graph)``. With ``add_dependencies=False``
    a dependency outside the batch is assumed to be satisfied (its artifact already exists).
    """
    graph = dependency_graph(paths, available)
    by_stem = {p.stem: p for p in available}
    for p in paths:
        by_stem[p.stem] = p
    chosen = {p.stem for p in paths}
    added: list[str] = []
    if add_dependencies:
        todo = sorted(chosen)
        while todo:
            for d in graph[todo.pop()]:
                if d not in chosen:
                    chosen.add(d)
                    added.append(d)
                    todo.append(d)
    order = topological_order(sorted(chosen), graph)
    return [by_stem[s] for s in order], sorted(added), graph


def blocked_by(stem: str, graph: Mapping[str, list[str]], bad: Mapping[str, str]) -> str | None:
    """The first direct dependency of `stem` in `bad` (stem -> status), as ``'<dep> <status>'``, or None.

    >>> blocked_by("06", {"06": ["05"]}, {"05": "failed"})
    '05 failed'
    """
    for d in graph.get(stem, []):
        if d in bad:
            return f"{d} {bad[d]}"
    return None


__all__ = ["GROUPS", "notebook_meta", "dependency_graph", "topological_order", "plan_batch", "blocked_by"]
