"""A run's summary (``summary.json`` + ``summary.md``) and the index of runs (``reports/README.md``)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facekit.io import write_json, write_text

MARKER = "<!-- runs -->"
STATUSES = ("pending", "running", "ok", "failed")
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

    @property
    def ok(self) -> bool:
        """True when every notebook ran and passed."""
        return bool(self.entries) and all(e.status == "ok" for e in self.entries)

    @property
    def failed(self) -> list[NotebookEntry]:
        """The notebooks that failed."""
        return [e for e in self.entries if e.status == "failed"]

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
        return f"{device['gpu']}{mem}"
    return f"CPU {device.get('cpu', '?')}, {device.get('cpu_cores_usable') or device.get('cpu_cores', '?')} cores"


def render_markdown(summary: RunSummary) -> str:
    """The run's ``summary.md``: facts of the run, a table of notebooks, then the failures."""
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
        f"- **device**: {describe_device(d)}; torch {d.get('torch')}; Python {d.get('python')}; {d.get('platform')}",
        f"- **notebooks**: {state}",
        "",
        "| notebook | status | duration | key metrics |",
        "|---|---|---:|---|",
    ]
    for e in summary.entries:
        name = f"[{e.name}]({e.html})" if e.html else (f"[{e.name}]({e.ipynb})" if e.ipynb else e.name)
        status = "**failed**" if e.status == "failed" else e.status
        lines.append(f"| {name} | {status} | {format_duration(e.duration_s)} | {_cell(format_metrics(e))} |")
    failed = summary.failed
    if failed:
        lines += ["", "## Failures", ""]
        for e in failed:
            err = e.error or {}
            where = []
            if err.get("cell_index") is not None:
                where.append(f"cell {err['cell_index']}")
            if err.get("execution_count") is not None:
                where.append(f"In [{err['execution_count']}]")
            at = f" ({', '.join(where)})" if where else ""
            evalue = str(err.get("evalue", "")).strip().splitlines()
            lines.append(f"- **{e.name}**{at}: `{err.get('ename', '?')}: {evalue[0] if evalue else ''}`")
    warned = [(e.name, w) for e in summary.entries for w in e.warnings]
    if warned:
        lines += ["", "## Warnings", ""] + [f"- **{n}**: {w}" for n, w in warned]
    return "\n".join(lines) + "\n"


def write_summary(summary: RunSummary) -> None:
    """Write ``summary.json`` and ``summary.md`` into the run folder, each in one atomic rename."""
    write_json(summary.run_dir / "summary.json", summary.to_dict())
    write_text(summary.run_dir / "summary.md", render_markdown(summary))


def update_index(reports_dir: str | Path) -> Path:
    """Regenerate the runs table of ``<reports_dir>/README.md`` from every ``*/summary.json``.

    The text above the ``<!-- runs -->`` marker is kept as it is (a README without the marker
    keeps all its text above a new marker).
    """
    reports_dir = Path(reports_dir)
    readme = reports_dir / "README.md"
    header = DEFAULT_HEADER
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        header = text.split(MARKER, 1)[0].rstrip("\n") + "\n"
    rows = []
    for path in sorted(reports_dir.glob("*/summary.json")):
        try:
            s = load_summary(path.parent)
        except (OSError, ValueError, TypeError) as exc:
            warnings.warn(f"skipping {path} in the reports index: {exc}", stacklevel=2)
            continue
        c = s.counts()
        not_run = c["pending"] + c["running"]
        done = f"{c['ok']} ok, {c['failed']} failed" + (f", {not_run} not run" if not_run else "")
        date = (s.started or "")[:16].replace("T", " ")
        device = f"{s.device_slug}: {describe_device(s.device)}"
        link = f"[summary]({path.parent.name}/summary.md)"
        row = f"| {_cell(s.name)} | {date} | {s.profile} | {_cell(device)} | {done} | {link} |"
        rows.append((s.started or "", row))
    rows.sort(key=lambda r: r[0], reverse=True)  # newest first
    table = ["| run | date (UTC) | profile | device | notebooks | summary |", "|---|---|---|---|---|---|"]
    table += [r for _, r in rows]
    write_text(readme, header + "\n" + MARKER + "\n\n" + "\n".join(table) + "\n")
    return readme
