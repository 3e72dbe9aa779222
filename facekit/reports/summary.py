"""A run's summary (``summary.json`` + ``summary.md``) and the index of runs (``reports/README.md``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facekit.io import write_json, write_text

MARKER = "<!-- runs -->"
STATUSES = ("pending", "running", "ok", "failed", "skipped")
NOT_DONE = ("pending", "running", "failed", "skipped")  # what `facekit report --rerun-failed` runs again
DEFAULT_HEADER = (
    "# Reports\n\n"
    "Executed notebooks, one folder per run (`facekit report`). Each folder holds the executed\n"
    "`.ipynb`, its `.html`, and `summary.json` / `summary.md`.\n"
    "The table below the marker is regenerated after every run; write your own notes above it.\n"
)


@dataclass
class NotebookEntry:
    """One notebook of a run: its status, duration, key metrics and error (when it failed)."""

    name: str
    source: str
    status: str = "pending"
    duration_s: float | None = None
    metrics: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    error: dict | None = None
    parameters: dict = field(default_factory=dict)
    ipynb: str | None = None
    html: str | None = None
    warnings: list = field(default_factory=list)
    depends_on: list = field(default_factory=list)  # stems of the notebooks whose artifacts it reads
    added_as_dependency: bool = False  # not asked for: added because a chosen notebook depends on it
    skip_reason: str | None = None  # why it was skipped (a dependency failed or was skipped)
    reruns: int = 0  # how many times `--rerun-failed` executed it again
    figures: int | None = None  # image outputs in the executed notebook (0 is warned about)
    key_metrics: list = field(default_factory=list)  # names recorded with record(..., key=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunSummary:
    """What :func:`facekit.reports.run_reports` returns and what ``summary.json`` holds.

    >>> s = RunSummary(run_dir=Path("reports/x"), name="x", profile="smoke")
    >>> s.entries.append(NotebookEntry("00_a", "00_a.ipynb", status="failed"))
    >>> s.ok, [e.name for e in s.failed]
    (False, ['00_a'])
    """

    run_dir: Path
    name: str
    profile: str
    requested_profile: str = "auto"
    parameters: dict = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    git: dict | None = None
    device: dict = field(default_factory=dict)
    device_slug: str = "cpu"
    facekit_version: str | None = None
    entries: list[NotebookEntry] = field(default_factory=list)
    selection: str = "names"  # 'names' (given), 'course' (no names) or 'all' (--all)
    added_dependencies: list = field(default_factory=list)
    artifacts_dir: str | None = None  # FACEKIT_ARTIFACTS of the run's kernels
    options: dict = field(default_factory=dict)  # kernel_name, execution_timeout, html: reused by reruns
    reruns: list = field(default_factory=list)  # one record per `--rerun-failed`
    plots: list = field(default_factory=list)  # PNG files in the run folder

    @property
    def ok(self) -> bool:
        """True when every notebook ran and passed."""
        return bool(self.entries) and all(e.status == "ok" for e in self.entries)

    @property
    def failed(self) -> list[NotebookEntry]:
        """The notebooks that failed."""
        return [e for e in self.entries if e.status == "failed"]

    @property
    def skipped(self) -> list[NotebookEntry]:
        """The notebooks not run because a dependency failed."""
        return [e for e in self.entries if e.status == "skipped"]

    def counts(self) -> dict:
        return {s: sum(e.status == s for e in self.entries) for s in STATUSES}

    def to_dict(self) -> dict:
        return {
            "run": self.name,
            "started": self.started,
            "finished": self.finished,
            "complete": self.finished is not None,
            "profile": self.profile,
            "requested_profile": self.requested_profile,
            "parameters": self.parameters,
            "git": self.git,
            "device": self.device,
            "device_slug": self.device_slug,
            "facekit_version": self.facekit_version,
            "counts": self.counts(),
            "selection": self.selection,
            "added_dependencies": self.added_dependencies,
            "artifacts_dir": self.artifacts_dir,
            "options": self.options,
            "reruns": self.reruns,
            "plots": self.plots,
            "notebooks": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, data: dict, run_dir: str | Path) -> "RunSummary":
        names = {f.name for f in dataclasses.fields(NotebookEntry)}
        entries = [NotebookEntry(**{k: v for k, v in e.items() if k in names}) for e in data.get("notebooks", [])]
        return cls(
            run_dir=Path(run_dir), name=data.get("run", Path(run_dir).name), profile=data.get("profile", "?"),
            requested_profile=data.get("requested_profile", "?"), parameters=data.get("parameters", {}),
            started=data.get("started"), finished=data.get("finished"), git=data.get("git"),
            device=data.get("device", {}), device_slug=data.get("device_slug", "?"),
            facekit_version=data.get("facekit_version"), entries=entries,
            selection=data.get("selection", "names"), added_dependencies=data.get("added_dependencies", []),
            artifacts_dir=data.get("artifacts_dir"), options=data.get("options", {}),
            reruns=data.get("reruns", []), plots=data.get("plots", []),
        )


def load_summary(run_dir: str | Path) -> RunSummary:
    """Read ``<run_dir>/summary.json`` back into a :class:`RunSummary`."""
    run_dir = Path(run_dir)
    return RunSummary.from_dict(json.loads((run_dir / "summary.json").read_text(encoding="utf-8")), run_dir)


def format_duration(seconds: float | None) -> str:
    """``12.3 s``, ``4 min 05 s``, ``1 h 02 min``; an empty string for None.

    >>> format_duration(245)
    '4 min 05 s'
    """
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _cell(text: Any) -> str:
    """Make `text` safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value: Any, unit: str | None) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text + (f" {unit}" if unit else "")


def format_metrics(entry: NotebookEntry) -> str:
    return ", ".join(f"{k} = {_value(v, entry.units.get(k))}" for k, v in entry.metrics.items())


def describe_device(device: dict) -> str:
    """One line: the GPU (with memory) if any, else the CPU model and cores."""
    if device.get("gpu"):
        mem = f", {device['gpu_memory_gib']} GiB" if device.get("gpu_memory_gib") else ""
        count = f"{device['gpu_count']} x " if (device.get("gpu_count") or 1) > 1 else ""
        return f"{count}{device['gpu']}{mem}"
    return f"CPU {device.get('cpu', '?')}, {device.get('cpu_cores_usable') or device.get('cpu_cores', '?')} cores"


def describe_software(device: dict) -> str:
    """torch, CUDA, driver, Python and platform, as far as they are known."""
    parts = [f"torch {device.get('torch')}"]
    if device.get("cuda_version"):
        parts.append(f"CUDA {device['cuda_version']}")
    if device.get("driver_version"):
        parts.append(f"driver {device['driver_version']}")
    parts += [f"Python {device.get('python')}", str(device.get("platform"))]
    return "; ".join(parts)


def _status(e: NotebookEntry) -> str:
    if e.status == "failed":
        return "**failed**"
    if e.status == "skipped":
        return f"skipped ({e.skip_reason})" if e.skip_reason else "skipped"
    return e.status + (" (dependency)" if e.added_as_dependency else "")


def metrics_table(summary: RunSummary) -> list[str]:
    """One Markdown table of every recorded metric: notebook, metric, value, unit."""
    rows = [(e.name, k, v, e.units.get(k)) for e in summary.entries for k, v in e.metrics.items()]
    if not rows:
        return []
    lines = ["| notebook | metric | value | unit |", "|---|---|---:|---|"]
    lines += [f"| {_cell(n)} | {_cell(k)} | {_cell(_value(v, None))} | {_cell(u or '')} |" for n, k, v, u in rows]
    return lines


def _failure_line(e: NotebookEntry) -> str:
    """``- **name** (cell i, In [n]): `Error: first line of its message```."""
    err = e.error or {}
    where = []
    if err.get("cell_index") is not None:
        where.append(f"cell {err['cell_index']}")
    if err.get("execution_count") is not None:
        where.append(f"In [{err['execution_count']}]")
    at = f" ({', '.join(where)})" if where else ""
    evalue = str(err.get("evalue", "")).strip().splitlines()
    return f"- **{e.name}**{at}: `{err.get('ename', '?')}: {evalue[0] if evalue else ''}`"


def render_markdown(summary: RunSummary) -> str:
    """The run's ``summary.md``: facts of the run, a table of notebooks, metrics, plots, failures."""
    d = summary.device
    git = summary.git
    commit = "not a git checkout" if git is None else f"`{git['commit']}`" + (" (dirty)" if git.get("dirty") else "")
    params = ", ".join(f"`{k}={v!r}`" for k, v in summary.parameters.items()) or "defaults"
    counts = summary.counts()
    state = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if summary.finished is None:
        state += " (run not finished)"
    lines = [
        f"# Run `{summary.name}`",
        "",
        f"- **started**: {summary.started}" + (f", finished {summary.finished}" if summary.finished else ""),
        f"- **profile**: {summary.profile}"
        + (f" (from `{summary.requested_profile}`)" if summary.requested_profile != summary.profile else ""),
        f"- **parameters**: {params}",
        f"- **commit**: {commit}",
        f"- **device**: {describe_device(d)}; {describe_software(d)}",
        f"- **notebooks**: {state}",
    ]
    if summary.selection != "names":
        lines.append(f"- **selection**: {'every notebook (--all)' if summary.selection == 'all' else 'the course'}")
    if summary.added_dependencies:
        lines.append(f"- **added as dependencies**: {', '.join(summary.added_dependencies)}")
    if summary.artifacts_dir:
        lines.append(f"- **artifacts** (`FACEKIT_ARTIFACTS`): `{summary.artifacts_dir}`")
    for r in summary.reruns:
        rc = (r.get("git") or {}).get("commit")
        lines.append(f"- **rerun** {r.get('started')}: {', '.join(r.get('notebooks', []))}"
                     + (f" at commit `{rc}`" if rc else ""))
    max_steps = (summary.options or {}).get("max_steps")
    if max_steps:
        lines.append(f"- **dry run**: `FACEKIT_MAX_STEPS={max_steps}`: every loop capped at {max_steps} steps and "
                     "the count-like sizes capped (facekit.profiles); the metrics are not results")
    lines += ["", "| notebook | status | duration | figures | key metrics |", "|---|---|---:|---:|---|"]
    for e in summary.entries:
        name = f"[{e.name}]({e.html})" if e.html else (f"[{e.name}]({e.ipynb})" if e.ipynb else e.name)
        figures = "" if e.figures is None else str(e.figures)
        lines.append(f"| {name} | {_cell(_status(e))} | {format_duration(e.duration_s)} | {figures} | "
                     f"{_cell(format_metrics(e))} |")
    table = metrics_table(summary)
    if table:
        lines += ["", "## Metrics", ""] + table
    if summary.plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in summary.plots]
    if summary.failed:
        lines += ["", "## Failures", ""] + [_failure_line(e) for e in summary.failed]
    warned = [(e.name, w) for e in summary.entries for w in e.warnings]
    if warned:
        lines += ["", "## Warnings", ""] + [f"- **{n}**: {w}" for n, w in warned]
    return "\n".join(lines) + "\n"


def write_summary(summary: RunSummary) -> None:
    """Write ``summary.json`` and ``summary.md`` into the run folder, each in one atomic rename."""
    write_json(summary.run_dir / "summary.json", summary.to_dict())
    write_text(summary.run_dir / "summary.md", render_markdown(summary))
