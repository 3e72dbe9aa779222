"""Execute the notebooks of a run one after another (used by a new run and by ``--rerun-failed``).

Each notebook runs in its own Papermill kernel with these environment variables set for the batch
(:func:`kernel_environment`), whatever the caller's environment says:

- ``FACEKIT_REPORT_RUN``: the run folder; ``FACEKIT_ARTIFACTS``: the run's artifact folder, outside the reports
  tree, where producers leave checkpoints for their dependents (see :func:`facekit.io.artifact_path`);
- ``MPLBACKEND``: the inline backend, so figures land in the report even when the caller set ``MPLBACKEND=Agg``
  (as ``make test`` does); a notebook that still shows no image gets a warning in the summary;
- ``FACEKIT_PROGRESS=final``: progress bars write one line per loop, not one per iteration (facekit.progress);
- in a dry run, ``FACEKIT_MAX_STEPS`` (see :mod:`facekit.profiles`) and ``PYTHONOPTIMIZE=1``: ``assert``
  statements are skipped, since a claim about results cannot hold after two training steps; an exception raised
  by code (a shape error, a missing key, an API the installed torch lacks) still fails the notebook.

A notebook whose dependency failed or was skipped is marked ``skipped`` instead of run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

from facekit.config import ConfigError
from facekit.io import atomic_path, cache_dir
from facekit.reports.order import blocked_by
from facekit.reports.record import key_metric_names, read_metrics
from facekit.reports.summary import NotebookEntry, RunSummary, write_summary

RUN_ENV_VAR = "FACEKIT_REPORT_RUN"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # what ipykernel uses when MPLBACKEND is unset
IMAGE_MIMETYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
NO_FIGURES = ("no figures: the executed notebook holds no image output (a plotting cell failed, or a non-inline "
              "matplotlib backend was forced inside the notebook, e.g. matplotlib.use('Agg') or %matplotlib agg)")


EXECUTION_WARNINGS = ("no figures", "HTML", "printed ")  # warnings an execution writes (dropped before it runs again)


def kernel_environment(run_dir: Path, artifacts: str | os.PathLike | None = None, *,
                       max_steps: int | None = None) -> dict:
    """The environment variables the runner sets for its kernels (see the module docstring).

    >>> env = kernel_environment(Path("/tmp/run"), "/tmp/art", max_steps=2)
    >>> env["MPLBACKEND"], env["FACEKIT_PROGRESS"], env["FACEKIT_MAX_STEPS"]
    ('module://matplotlib_inline.backend_inline', 'final', '2')
    """
    from facekit.io import ARTIFACTS_ENV
    from facekit.profiles import MAX_STEPS_VAR
    from facekit.progress import ENV_VAR as PROGRESS_ENV_VAR

    env = {RUN_ENV_VAR: str(Path(run_dir).resolve()), "MPLBACKEND": INLINE_BACKEND, PROGRESS_ENV_VAR: "final"}
    if artifacts:
        env[ARTIFACTS_ENV] = str(artifacts)
    if max_steps is not None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps={max_steps!r} is not accepted; give a whole number >= 1 (or None)")
        env[MAX_STEPS_VAR] = str(max_steps)
        env["PYTHONOPTIMIZE"] = "1"  # no asserts: results after `max_steps` steps prove nothing
    return env


_WARNING_LINE = re.compile(r"\b([A-Z]\w*Warning): (.+)")


def printed_warnings(nb) -> list[str]:
    r"""The distinct warnings a notebook printed on stderr (``UserWarning: ...``), each with its cell's number.

    >>> cell = {"cell_type": "code", "execution_count": 3, "outputs": [{"output_type": "stream", "name": "stderr",
    ...         "text": "/x.py:1: UserWarning: tight_layout failed\n  fig.tight_layout()\n"}]}
    >>> printed_warnings({"cells": [cell]})
    ['In [3]: UserWarning: tight_layout failed']
    """
    found: dict[str, None] = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                for m in _WARNING_LINE.finditer(out.get("text", "")):
                    found[f"In [{cell.get('execution_count')}]: {m.group(1)}: {m.group(2).strip()[:200]}"] = None
    return list(found)


def count_figures(nb) -> int:
    """The number of image outputs (PNG, JPEG, SVG, GIF) in an executed notebook."""
    return sum(1 for c in nb.cells for o in c.get("outputs", [])
               if o.get("output_type") in ("display_data", "execute_result")
               and any(m in o.get("data", {}) for m in IMAGE_MIMETYPES))


def run_artifacts_dir(run_dir: Path) -> Path:
    """The default artifact folder of a run: ``$FACEKIT_CACHE/artifacts/runs/<run name>-<8 hex>``.

    The suffix is a hash of the run folder's absolute path, so two reports trees with a run of the
    same name never share checkpoints. It is outside the checkout: checkpoints are never committed.
    """
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return cache_dir("artifacts", "runs", f"{Path(run_dir).name}-{digest}")


@contextlib.contextmanager
def batch_environment(**values: str):
    """Set environment variables for the kernels of a batch; restore the previous values afterwards."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def execute_entries(summary: RunSummary, todo: list[tuple[NotebookEntry, Path]], graph: Mapping[str, list],
                    *, kernel_name: str | None, timeout: float | None, progress: bool, html: bool) -> None:
    """Run `todo` (entries of `summary` with their source notebooks) in order, writing the summary as it goes.

    An entry whose dependency (per `graph`) failed or was skipped, in this batch or before it, is
    marked ``skipped`` with the reason and not executed; independent entries still run.
    """
    bad = {e.name: e.status for e in summary.entries if e.status in ("failed", "skipped")}
    bad.update({e.name: "not run" for e in summary.entries if e.status in ("pending", "running")})
    for entry, _ in todo:
        bad.pop(entry.name, None)
    waiting = {entry.name for entry, _ in todo}
    for i, (entry, path) in enumerate(todo, 1):
        tag = f"[{i}/{len(todo)}] {entry.name}"
        waiting.discard(entry.name)
        reason = blocked_by(entry.name, graph, {**bad, **{w: "not run" for w in waiting}})
        if reason is not None:
            entry.status, entry.skip_reason, entry.error = "skipped", f"dependency {reason}", None
            entry.duration_s = None
            bad[entry.name] = "skipped"
            write_summary(summary)
            _say(progress, f"{tag} skipped: dependency {reason}")
            continue
        _say(progress, f"{tag} ...")
        entry.status, entry.skip_reason = "running", None
        entry.warnings = [w for w in entry.warnings if not w.startswith(EXECUTION_WARNINGS)]  # a rerun redoes them
        write_summary(summary)
        start = time.monotonic()
        nb, error = _execute(path, summary.run_dir / f"{entry.name}.ipynb", dict(entry.parameters),
                             kernel_name=kernel_name or "python3", timeout=timeout, progress=progress)
        entry.duration_s = round(time.monotonic() - start, 2)
        entry.ipynb = f"{entry.name}.ipynb"
        entry.metrics = read_metrics(nb)
        entry.units = {k: v["unit"] for k, v in read_metrics(nb, with_units=True).items() if v["unit"]}
        entry.status = "ok" if error is None else "failed"
        entry.error = error
        entry.figures = count_figures(nb)
        entry.key_metrics = key_metric_names(nb)
        entry.warnings += [f"printed {w}" for w in printed_warnings(nb)]
        if entry.figures == 0 and error is None:
            entry.warnings.append(NO_FIGURES)
        if error is not None:
            bad[entry.name] = "failed"
        if html:
            from facekit.reports.webpage import write_html

            try:
                entry.warnings += write_html(nb, summary.run_dir / f"{entry.name}.html")
                entry.html = f"{entry.name}.html"
            except Exception as exc:  # a broken HTML export must not lose the run
                entry.warnings.append(f"HTML export failed: {type(exc).__name__}: {exc}")
        write_summary(summary)
        first = "" if error is None else (str(error["evalue"]).strip().splitlines() or [""])[0]
        tail = "" if error is None else f": {error['ename']}: {first[:200]}"
        _say(progress, f"{tag} {entry.status} ({entry.duration_s:.1f} s){tail}")
        if error is not None and error.get("interrupted"):
            raise KeyboardInterrupt


def finish(summary: RunSummary, reports_dir: Path | None) -> None:
    """Draw the plots (a failure there only warns), write the summary, regenerate the index."""
    from facekit.reports.index import update_index

    try:
        from facekit.reports.plots import write_plots

        summary.plots = write_plots(summary)
    except Exception as exc:  # plots are a convenience: never lose a run over them
        warnings.warn(f"summary plots not drawn: {type(exc).__name__}: {exc}", stacklevel=2)
    write_summary(summary)
    if reports_dir is not None:
        update_index(reports_dir)


__all__ = ["RUN_ENV_VAR", "INLINE_BACKEND", "kernel_environment", "count_figures", "batch_environment",
           "execute_entries", "finish", "run_artifacts_dir"]
