"""``facekit report --rerun-failed RUN_DIR``: run again only what did not pass in an existing run;
``facekit report --rerun RUN_DIR NOTEBOOK...``: run again the named notebooks of a run whatever their status (for
example one whose duration was taken while other work shared the machine).

The failed and skipped notebooks (and those an interrupted batch never reached) run again from their
source notebooks (the current ``.ipynb``, so a fix made since is picked up), with the profile and
per-notebook parameters recorded in the run's ``summary.json``, into the same folder, with the same
``FACEKIT_ARTIFACTS`` (so a rerun consumer reads the checkpoint its producer wrote in the first pass).
The summary is updated in place (each file replaced in one rename) and the rerun is recorded in it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from facekit.config import ConfigError
from facekit.io import ARTIFACTS_ENV
from facekit.reports.batch import _now, batch_environment, execute_entries, finish, kernel_environment
from facekit.reports.device import device_info, device_slug, git_info
from facekit.reports.order import topological_order
from facekit.reports.selection import matching_stems
from facekit.reports.summary import NOT_DONE, RunSummary, load_summary, write_summary

_UNSET = object()


def _load_run(run_dir: Path) -> RunSummary:
    """The run's summary, or a ConfigError naming the folder or the unreadable file."""
    if not (run_dir / "summary.json").is_file():
        raise ConfigError(f"--rerun-failed {str(run_dir)!r}: no summary.json there; give a run folder "
                          "such as reports/2026-01-31-cpu-cpu")
    try:
        return load_summary(run_dir)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--rerun-failed: {run_dir / 'summary.json'} cannot be read: {exc}") from exc


def _sources(summary: RunSummary, order: list[str]) -> list[tuple]:
    """``(entry, source notebook)`` of each notebook to rerun, in ``order``; each source must still exist."""
    by_name = {e.name: e for e in summary.entries}
    todo = []
    for name in order:
        entry = by_name[name]
        source = Path(entry.source)
        if not source.is_file():
            raise ConfigError(f"--rerun-failed: notebook {name!r} has no source notebook at {str(source)!r} "
                              "(the run recorded that path; run from the same folder)")
        todo.append((entry, source))
    return todo


def _chosen(summary: RunSummary, notebooks, flag: str) -> list[str]:
    """The names of the run's notebooks that `notebooks` (names or name prefixes) pick, in the run's order."""
    names = [e.name for e in summary.entries]
    chosen = []
    for want in notebooks:
        hits = matching_stems(Path(str(want)).stem, names)  # the rule `facekit report NOTEBOOK` uses
        if not hits:
            raise ConfigError(f"{flag}: notebook {want!r} is not in this run; its notebooks: {', '.join(names)}")
        chosen += [n for n in hits if n not in chosen]
    return [n for n in names if n in chosen]


def rerun_failed(run_dir: str | os.PathLike, *, kernel_name=_UNSET, execution_timeout=_UNSET, html=_UNSET,
                 progress: bool = True, reports_dir: str | os.PathLike | None = _UNSET,
                 notebooks=None) -> RunSummary:
    """Execute again the failed, skipped and not-run notebooks of `run_dir` (or the chosen `notebooks`, whatever
    their status); return the updated summary.

    Args:
        run_dir: a run folder holding ``summary.json``.
        notebooks: names or name prefixes of the run's notebooks to run again even if they passed
            (``--rerun``); their dependents are not rerun. None: the ones that did not pass.
        kernel_name, execution_timeout, html: default to what the run recorded.
        progress: one line per notebook on stderr.
        reports_dir: whose ``README.md`` index to regenerate; default the run folder's parent
            (None: leave the index alone).

    Nothing to rerun is not an error: the summary comes back unchanged.
    """
    run_dir = Path(run_dir)
    summary = _load_run(run_dir)
    if notebooks is not None:
        todo_names = _chosen(summary, notebooks, "--rerun")
    else:
        todo_names = [e.name for e in summary.entries if e.status in NOT_DONE]
    if not todo_names:
        if progress:
            print(f"facekit report: nothing to rerun in {run_dir} (every notebook passed)", file=sys.stderr)
        return summary
    graph = {e.name: list(e.depends_on) for e in summary.entries}
    order = topological_order(todo_names, graph)
    todo = _sources(summary, order)
    opts = summary.options or {}
    kernel_name = opts.get("kernel_name") if kernel_name is _UNSET else kernel_name
    execution_timeout = opts.get("execution_timeout") if execution_timeout is _UNSET else execution_timeout
    html = opts.get("html", True) if html is _UNSET else html
    reports_dir = run_dir.parent if reports_dir is _UNSET else reports_dir

    device = device_info()
    slug = device_slug(device)
    git = git_info(todo[0][1].parent, exclude=run_dir.parent) or git_info(Path(__file__).parent,
                                                                          exclude=run_dir.parent)
    record = {"started": _now(), "finished": None, "notebooks": order, "git": git, "device_slug": slug}
    summary.reruns.append(record)
    for entry, _ in todo:
        entry.status, entry.reruns = "pending", entry.reruns + 1
        if slug != summary.device_slug:
            entry.warnings.append(f"rerun on {slug}, the run was on {summary.device_slug}: durations differ")
    # a run made before per-run artifacts: keep its kernels' default
    artifacts = summary.artifacts_dir or os.environ.get(ARTIFACTS_ENV, "")
    env = kernel_environment(run_dir, artifacts, max_steps=(summary.options or {}).get("max_steps"))
    summary.finished = None
    write_summary(summary)
    if progress:
        print(f"facekit report: rerunning {', '.join(order)} in {run_dir} (profile {summary.profile})",
              file=sys.stderr, flush=True)
    try:
        with batch_environment(**env):
            execute_entries(summary, todo, graph, kernel_name=kernel_name, timeout=execution_timeout,
                            progress=progress, html=html)
        record["finished"] = summary.finished = _now()
    finally:
        finish(summary, Path(reports_dir) if reports_dir is not None else None)
    return summary


__all__ = ["rerun_failed"]
