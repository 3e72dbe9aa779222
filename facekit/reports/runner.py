"""Execute notebooks with Papermill into ``reports/<run>/``: executed .ipynb, .html and a summary."""

from __future__ import annotations

import datetime as _dt
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

from facekit.config import ConfigError
from facekit.io import ARTIFACTS_ENV, cache_dir
from facekit.profiles import max_steps as env_max_steps
from facekit.profiles import resolve_profile
from facekit.reports.batch import (_now, batch_environment, execute_entries, finish, kernel_environment,
                                   run_artifacts_dir)
from facekit.reports.device import device_info, device_slug, git_info
from facekit.reports.order import plan_batch
from facekit.reports.selection import (  # re-exported: choosing the notebooks and their parameters
    SYNC_MARGIN_S, available_notebooks, default_selection, notebook_parameters, pair_warning, plan_parameters,
    select_notebooks)
from facekit.reports.summary import NotebookEntry, RunSummary, write_summary

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def claim_run_dir(reports_dir: Path, name: str, *, overwrite: bool = False) -> Path:
    """Create ``reports_dir/name``, or ``name-2``, ``name-3``... when it exists (unless `overwrite`)."""
    if not _RUN_NAME.match(name):
        raise ConfigError(f"run name {name!r} is not accepted: use letters, digits, '.', '_', '+', '-'")
    reports_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        (reports_dir / name).mkdir(exist_ok=True)
        return reports_dir / name
    for i in range(1, 10_000):
        candidate = reports_dir / (name if i == 1 else f"{name}-{i}")
        try:
            candidate.mkdir()  # atomic: two runs at once never get the same folder
            return candidate
        except FileExistsError:
            continue
    raise ConfigError(f"too many runs named {name!r} in {reports_dir}")


def default_run_name(profile: str, slug: str, *, dry_run: bool = False) -> str:
    """``<YYYY-MM-DD>-<profile>-<device slug>`` with today's UTC date (``<profile>-dry`` for a dry run)."""
    return f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d}-{profile}{'-dry' if dry_run else ''}-{slug}"


def _check_artifacts_dir(artifacts_dir, reports_dir: Path) -> None:
    inside = Path(artifacts_dir).resolve()
    if inside == reports_dir.resolve() or reports_dir.resolve() in inside.parents:
        raise ConfigError(f"artifacts_dir {str(artifacts_dir)!r} is inside the reports folder {str(reports_dir)!r}; "
                          "checkpoints do not belong in committed reports: choose a folder outside it")


def resolve_artifacts_arg(value: str | os.PathLike) -> Path:
    """``--artifacts``: a folder, or a run folder (holding ``summary.json``) whose recorded artifacts to reuse."""
    path = Path(value)
    if (path / "summary.json").is_file():
        from facekit.reports.summary import load_summary

        recorded = load_summary(path).artifacts_dir
        if not recorded:
            raise ConfigError(f"run {str(path)!r} recorded no artifacts folder (it predates them); give the folder")
        return Path(recorded)
    return path


def _plan_run(notebooks, notebooks_dir, all_notebooks: bool, dependencies: bool):
    """``(paths in run order, selection, added dependencies, dependency graph)`` of a run's notebooks."""
    if notebooks is not None and all_notebooks:
        raise ConfigError("give notebook names or --all (every notebook), not both")
    if notebooks is None:
        chosen, selection = default_selection(notebooks_dir, all_notebooks=all_notebooks), \
            ("all" if all_notebooks else "course")
    else:
        chosen, selection = select_notebooks(notebooks, notebooks_dir), "names"
    available = available_notebooks(notebooks_dir)
    paths, added, graph = plan_batch(chosen, available, add_dependencies=dependencies)
    return paths, selection, added, graph


def _artifacts_arg(artifacts_dir, reports_dir: Path, paths: list[Path], graph: dict, progress: bool):
    """The kernels' artifacts folder as given (checked), the shared one when --no-deps left a producer out, or
    None (a fresh folder of the run)."""
    stems = {p.stem for p in paths}
    left_out = sorted({d for p in paths for d in graph.get(p.stem, []) if d not in stems})
    if artifacts_dir is not None:
        artifacts_dir = resolve_artifacts_arg(artifacts_dir)
        _check_artifacts_dir(artifacts_dir, reports_dir)
    elif left_out:  # --no-deps: read what an earlier (interactive) run of the producers left in the shared place
        artifacts_dir = Path(os.environ.get(ARTIFACTS_ENV, "").strip() or cache_dir("artifacts")).expanduser()
        if progress:
            print(f"facekit report: {', '.join(left_out)} left out (--no-deps); their artifacts are read from "
                  f"{artifacts_dir} (pass --artifacts RUN_DIR to read those of an earlier run)",
                  file=sys.stderr, flush=True)
    return artifacts_dir


def _git(paths: list[Path], reports_dir: Path):
    """The checkout holding the notebooks; for notebooks copied elsewhere, the one holding the facekit code."""
    return git_info(paths[0].parent, exclude=reports_dir) or git_info(Path(__file__).parent, exclude=reports_dir)


def _announce(summary: RunSummary, paths: list[Path], added: list[str]) -> None:
    """Say which dependencies were added, warn of out-of-sync pairs (recorded too), write the first summary."""
    if added:  # said even with --quiet: the run is not what was asked for
        print(f"facekit report: added {', '.join(added)} (needed by the chosen notebooks; --no-deps to leave "
              "them out)", file=sys.stderr, flush=True)
    for entry, path in zip(summary.entries, paths):
        message = pair_warning(path)
        if message:
            entry.warnings.append(message)
            warnings.warn(message, stacklevel=3)


def run_reports(
    notebooks=None,
    *,
    profile: str = "auto",
    parameters: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    reports_dir: str | os.PathLike = "reports",
    notebooks_dir: str | os.PathLike = "notebooks",
    html: bool = True,
    kernel_name: str | None = None,
    execution_timeout: float | None = None,
    progress: bool = True,
    overwrite: bool = False,
    all_notebooks: bool = False,
    dependencies: bool = True,
    artifacts_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
) -> RunSummary:
    """Execute notebooks into ``reports/<run>/`` and write the run's summary, plots and the runs index.

    Everything is checked (notebook names, dependencies, profile, every parameter against every
    parameters cell) before the run folder is created. Notebooks run in dependency order (ties in
    name order). A notebook that fails is recorded as ``failed`` with its partial output; the
    notebooks that depend on it are ``skipped``; the others still run.

    Args:
        notebooks: None for the course (every ``notebooks_dir/*.ipynb`` not in the ``benchmark``
            group; every notebook with `all_notebooks`), else paths, names or name prefixes.
        profile: ``smoke``, ``cpu``, ``gpu`` or ``auto``; passed, resolved, as ``profile``.
        parameters: other parameters; each goes to the notebooks whose parameters cell has it.
        run_name: the run folder's name (default ``<date>-<profile>-<device>``); an existing
            folder gets a ``-2``, ``-3`` suffix unless `overwrite`.
        html: also write ``<stem>.html`` for each notebook.
        kernel_name: Jupyter kernel (default ``python3``).
        execution_timeout: seconds one cell may run (default: no limit).
        progress: show Papermill's progress bar and one line per notebook on stderr.
        all_notebooks: with ``notebooks=None``, run the benchmarks too.
        dependencies: add the notebooks the chosen ones depend on (``depends_on`` metadata) to the
            run; False (``--no-deps``) assumes their artifacts already exist.
        artifacts_dir: ``FACEKIT_ARTIFACTS`` for the kernels: a folder, or an earlier run folder whose
            recorded artifacts to reuse. Default: :func:`run_artifacts_dir`, a fresh folder of this run in
            the cache (never inside `reports_dir`); but when ``dependencies=False`` left a dependency out,
            the shared default (``$FACEKIT_ARTIFACTS``, else ``$FACEKIT_CACHE/artifacts``), where an
            interactive run of the producer notebook leaves its checkpoint.
        max_steps: a dry run (``--dry-run``): ``FACEKIT_MAX_STEPS`` for the kernels, so every training and
            evaluation loop stops after this many steps and the count-like sizes are capped
            (:func:`facekit.profiles.pick`), while the profile's configuration is kept. Default: the caller's
            ``$FACEKIT_MAX_STEPS``, else no cap. Recorded in the summary; the run name gets ``-dry``.

    Kernels always get the inline matplotlib backend and one-line progress bars, whatever the caller's
    environment says (see :mod:`facekit.reports.batch`).

    Returns:
        The :class:`RunSummary`; ``summary.ok`` is True when every notebook passed.

    >>> s = run_reports(["00"], profile="smoke", parameters={"epochs": 1})  # doctest: +SKIP
    >>> s.ok, s.run_dir  # doctest: +SKIP
    (True, PosixPath('reports/2025-01-31-smoke-cpu'))
    """
    from facekit import __version__

    parameters = dict(parameters or {})
    paths, selection, added, graph = _plan_run(notebooks, notebooks_dir, all_notebooks, dependencies)
    resolved = resolve_profile(profile)
    if execution_timeout is not None and not execution_timeout > 0:
        raise ConfigError(f"execution_timeout={execution_timeout!r} is not accepted; give a number of seconds > 0")
    plan = plan_parameters({p: notebook_parameters(p) for p in paths}, parameters, resolved)
    if max_steps is None:
        max_steps = env_max_steps()
    kernel_environment(Path("."), max_steps=max_steps)  # rejects a bad max_steps before the run folder exists
    reports_dir = Path(reports_dir)
    artifacts_dir = _artifacts_arg(artifacts_dir, reports_dir, paths, graph, progress)

    device = device_info()
    slug = device_slug(device)
    git = _git(paths, reports_dir)
    run_dir = claim_run_dir(reports_dir, run_name or default_run_name(resolved, slug, dry_run=max_steps is not None),
                             overwrite=overwrite)
    artifacts = Path(artifacts_dir) if artifacts_dir is not None else run_artifacts_dir(run_dir)
    summary = RunSummary(
        run_dir=run_dir, name=run_dir.name, profile=resolved, requested_profile=profile,
        parameters=parameters, started=_now(), git=git, device=device, device_slug=slug,
        facekit_version=__version__, selection=selection, added_dependencies=added,
        artifacts_dir=str(artifacts.resolve()),
        options={"kernel_name": kernel_name, "execution_timeout": execution_timeout, "html": html,
                 "max_steps": max_steps},
        entries=[NotebookEntry(name=p.stem, source=str(p), parameters=plan[p], depends_on=graph.get(p.stem, []),
                               added_as_dependency=p.stem in added) for p in paths],
    )
    _announce(summary, paths, added)
    write_summary(summary)

    try:
        with batch_environment(**kernel_environment(run_dir, artifacts.resolve(), max_steps=max_steps)):
            execute_entries(summary, list(zip(summary.entries, paths)), graph, kernel_name=kernel_name,
                            timeout=execution_timeout, progress=progress, html=html)
        summary.finished = _now()
    finally:  # an interrupted batch still leaves a consistent summary and index
        finish(summary, reports_dir)
    return summary
