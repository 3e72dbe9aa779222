"""Execute notebooks with Papermill into ``reports/<run>/``: executed .ipynb, .html and a summary."""

from __future__ import annotations

import datetime as _dt
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from facekit.config import ConfigError, check_keys
from facekit.io import ARTIFACTS_ENV, cache_dir
from facekit.profiles import max_steps as env_max_steps
from facekit.profiles import resolve_profile
from facekit.reports.batch import (_now, batch_environment, execute_entries, finish, kernel_environment,
                                   run_artifacts_dir)
from facekit.reports.device import device_info, device_slug, git_info
from facekit.reports.order import notebook_meta, plan_batch
from facekit.reports.summary import NotebookEntry, RunSummary, write_summary
SYNC_MARGIN_S = 1.0  # jupytext writes the two files of a pair a moment apart
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


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
        matches = ([p for p in available if p.stem == key] or [p for p in available if p.stem.startswith(key)]
                   or [p for p in available if _topic(p.stem).startswith(key)])  # "verify" -> 11_verify_...
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
    if notebooks is not None and all_notebooks:
        raise ConfigError("give notebook names or --all (every notebook), not both")
    if notebooks is None:
        chosen, selection = default_selection(notebooks_dir, all_notebooks=all_notebooks), \
            ("all" if all_notebooks else "course")
    else:
        chosen, selection = select_notebooks(notebooks, notebooks_dir), "names"
    available = available_notebooks(notebooks_dir)
    paths, added, graph = plan_batch(chosen, available, add_dependencies=dependencies)
    resolved = resolve_profile(profile)
    if execution_timeout is not None and not execution_timeout > 0:
        raise ConfigError(f"execution_timeout={execution_timeout!r} is not accepted; give a number of seconds > 0")
    plan = plan_parameters({p: notebook_parameters(p) for p in paths}, parameters, resolved)
    if max_steps is None:
        max_steps = env_max_steps()
    kernel_environment(Path("."), max_steps=max_steps)  # rejects a bad max_steps before the run folder exists
    reports_dir = Path(reports_dir)
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

    device = device_info()
    slug = device_slug(device)
    # the checkout holding the notebooks; for notebooks copied elsewhere, the one holding the facekit code
    git = git_info(paths[0].parent, exclude=reports_dir) or git_info(Path(__file__).parent, exclude=reports_dir)
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
    if added:  # said even with --quiet: the run is not what was asked for
        print(f"facekit report: added {', '.join(added)} (needed by the chosen notebooks; --no-deps to leave "
              "them out)", file=sys.stderr, flush=True)
    for entry, path in zip(summary.entries, paths):
        message = pair_warning(path)
        if message:
            entry.warnings.append(message)
            warnings.warn(message, stacklevel=2)
    write_summary(summary)

    try:
        with batch_environment(**kernel_environment(run_dir, artifacts.resolve(), max_steps=max_steps)):
            execute_entries(summary, list(zip(summary.entries, paths)), graph, kernel_name=kernel_name,
                            timeout=execution_timeout, progress=progress, html=html)
        summary.finished = _now()
    finally:  # an interrupted batch still leaves a consistent summary and index
        finish(summary, reports_dir)
    return summary
