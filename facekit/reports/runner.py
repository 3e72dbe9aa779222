"""Execute notebooks with Papermill into ``reports/<run>/``: executed .ipynb, .html and a summary."""

from __future__ import annotations

import datetime as _dt
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from facekit.config import ConfigError, check_keys
from facekit.io import atomic_path, write_text
from facekit.profiles import resolve_profile
from facekit.reports.device import device_info, device_slug, git_info
from facekit.reports.record import read_metrics
from facekit.reports.summary import NotebookEntry, RunSummary, update_index, write_summary

RUN_ENV_VAR = "FACEKIT_REPORT_RUN"
SYNC_MARGIN_S = 1.0  # jupytext writes the two files of a pair a moment apart
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def available_notebooks(notebooks_dir: str | os.PathLike = "notebooks") -> list[Path]:
    """The ``*.ipynb`` of `notebooks_dir` in name order (hidden files left out)."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise ConfigError(f"notebooks folder {str(notebooks_dir)!r} does not exist")
    return sorted(p for p in notebooks_dir.glob("*.ipynb") if not p.name.startswith("."))


def select_notebooks(items=None, notebooks_dir: str | os.PathLike = "notebooks") -> list[Path]:
    """Resolve paths, names and name prefixes (``"00"``, ``"01_cnn"``) to notebooks, in name order.

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
        matches = [p for p in available if p.stem == key] or [p for p in available if p.stem.startswith(key)]
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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _failed_cell(nb) -> tuple[int | None, int | None]:
    """(index in the source notebook, execution count) of the cell that failed or was running."""
    skip = ("injected-parameters", "papermill-error-cell-tag", "facekit-error")
    cells = [c for c in nb.cells if not set(c.get("metadata", {}).get("tags", [])) & set(skip)]
    found = None
    for i, c in enumerate(cells):
        meta = c.get("metadata", {}).get("papermill", {})
        if meta.get("exception") or any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            found = i
            break
        if meta.get("start_time"):
            found = i  # the last cell that started is the one that was running
    if found is None:
        return None, None
    return found, cells[found].get("execution_count")


def _execute(path: Path, out: Path, params: dict, *, kernel_name, timeout, progress) -> tuple[Any, dict | None]:
    """Run one notebook into `out` (atomically); return (notebook node, error or None)."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    error = None
    with atomic_path(out) as tmp:
        exec_path = tmp.with_name(tmp.name + ".ipynb")  # papermill wants the .ipynb suffix
        try:
            try:
                papermill.execute_notebook(
                    str(path), str(exec_path), parameters=params, kernel_name=kernel_name,
                    progress_bar=progress, cwd=str(path.parent), execution_timeout=timeout,
                )
            except PapermillExecutionError as exc:
                error = {"ename": exc.ename, "evalue": exc.evalue}
            except KeyboardInterrupt:  # keep what ran; run_reports re-raises after writing
                error = {"ename": "KeyboardInterrupt", "evalue": "interrupted", "interrupted": True}
            except Exception as exc:  # kernel death, cell timeout, no such kernel...
                error = {"ename": type(exc).__name__, "evalue": str(exc)}
            if exec_path.exists() and exec_path.stat().st_size:
                nb = nbformat.read(exec_path, as_version=4)
            else:  # nothing ran: keep the input notebook so the report still shows what failed
                nb = nbformat.read(path, as_version=4)
            if error is not None:
                error["cell_index"], error["execution_count"] = _failed_cell(nb)
                tags = {t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])}
                if "papermill-error-cell-tag" not in tags:  # papermill marks only errors inside a cell
                    text = f"{error['ename']}: {error['evalue'][:2000]}"
                    note = nbformat.v4.new_markdown_cell(f"**Execution stopped** (facekit report)\n~~~\n{text}\n~~~")
                    note.metadata["tags"] = ["facekit-error"]
                    nb.cells.insert(0, note)
            nbformat.write(nb, tmp)
        finally:
            exec_path.unlink(missing_ok=True)
    return nb, error


def _write_html(nb, out: Path) -> None:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    write_text(out, body)


def default_run_name(profile: str, slug: str) -> str:
    """``<YYYY-MM-DD>-<profile>-<device slug>`` with today's UTC date."""
    return f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d}-{profile}-{slug}"


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
) -> RunSummary:
    """Execute notebooks into ``reports/<run>/`` and write the run's summary and the runs index.

    Everything is checked (notebook names, profile, every parameter against every parameters
    cell) before the run folder is created. A notebook that fails is recorded as ``failed`` with
    its partial output, and the next one still runs.

    Args:
        notebooks: None for every ``notebooks_dir/*.ipynb``, else paths, names or name prefixes.
        profile: ``smoke``, ``cpu``, ``gpu`` or ``auto``; passed, resolved, as ``profile``.
        parameters: other parameters; each goes to the notebooks whose parameters cell has it.
        run_name: the run folder's name (default ``<date>-<profile>-<device>``); an existing
            folder gets a ``-2``, ``-3`` suffix unless `overwrite`.
        html: also write ``<stem>.html`` for each notebook.
        kernel_name: Jupyter kernel (default ``python3``).
        execution_timeout: seconds one cell may run (default: no limit).
        progress: show Papermill's progress bar and one line per notebook on stderr.

    Returns:
        The :class:`RunSummary`; ``summary.ok`` is True when every notebook passed.

    >>> s = run_reports(["00"], profile="smoke", parameters={"epochs": 1})  # doctest: +SKIP
    >>> s.ok, s.run_dir  # doctest: +SKIP
    (True, PosixPath('reports/2025-01-31-smoke-cpu'))
    """
    from facekit import __version__

    parameters = dict(parameters or {})
    paths = select_notebooks(notebooks, notebooks_dir)
    resolved = resolve_profile(profile)
    if execution_timeout is not None and not execution_timeout > 0:
        raise ConfigError(f"execution_timeout={execution_timeout!r} is not accepted; give a number of seconds > 0")
    plan = plan_parameters({p: notebook_parameters(p) for p in paths}, parameters, resolved)

    reports_dir = Path(reports_dir)
    device = device_info()
    slug = device_slug(device)
    # the checkout holding the notebooks; for notebooks copied elsewhere, the one holding the facekit code
    git = git_info(paths[0].parent, exclude=reports_dir) or git_info(Path(__file__).parent, exclude=reports_dir)
    run_dir = claim_run_dir(reports_dir, run_name or default_run_name(resolved, slug), overwrite=overwrite)
    summary = RunSummary(
        run_dir=run_dir, name=run_dir.name, profile=resolved, requested_profile=profile,
        parameters=parameters, started=_now(), git=git, device=device, device_slug=slug,
        facekit_version=__version__,
        entries=[NotebookEntry(name=p.stem, source=str(p), parameters=plan[p]) for p in paths],
    )
    for entry, path in zip(summary.entries, paths):
        message = pair_warning(path)
        if message:
            entry.warnings.append(message)
            warnings.warn(message, stacklevel=2)
    write_summary(summary)

    previous_env = os.environ.get(RUN_ENV_VAR)
    os.environ[RUN_ENV_VAR] = str(run_dir.resolve())
    try:
        for i, (entry, path) in enumerate(zip(summary.entries, paths), 1):
            if progress:
                print(f"[{i}/{len(paths)}] {entry.name} ...", file=sys.stderr, flush=True)
            entry.status = "running"
            write_summary(summary)
            start = time.monotonic()
            nb, error = _execute(
                path, run_dir / f"{entry.name}.ipynb", plan[path],
                kernel_name=kernel_name or "python3", timeout=execution_timeout, progress=progress,
            )
            entry.duration_s = round(time.monotonic() - start, 2)
            entry.ipynb = f"{entry.name}.ipynb"
            entry.metrics = read_metrics(nb)
            entry.units = {k: v["unit"] for k, v in read_metrics(nb, with_units=True).items() if v["unit"]}
            entry.status = "ok" if error is None else "failed"
            entry.error = error
            if html:
                try:
                    _write_html(nb, run_dir / f"{entry.name}.html")
                    entry.html = f"{entry.name}.html"
                except Exception as exc:  # a broken HTML export must not lose the run
                    entry.warnings.append(f"HTML export failed: {type(exc).__name__}: {exc}")
            write_summary(summary)
            if progress:
                first = "" if error is None else (str(error["evalue"]).strip().splitlines() or [""])[0]
                tail = "" if error is None else f": {error['ename']}: {first[:200]}"
                print(f"[{i}/{len(paths)}] {entry.name} {entry.status} ({entry.duration_s:.1f} s){tail}",
                      file=sys.stderr, flush=True)
            if error is not None and error.get("interrupted"):
                raise KeyboardInterrupt
        summary.finished = _now()
    finally:  # an interrupted batch still leaves a consistent summary and index
        if previous_env is None:
            os.environ.pop(RUN_ENV_VAR, None)
        else:
            os.environ[RUN_ENV_VAR] = previous_env
        write_summary(summary)
        update_index(reports_dir)
    return summary
