"""The index of runs: the generated table of ``reports/README.md`` (below the ``<!-- runs -->`` marker)."""

from __future__ import annotations

import warnings
from pathlib import Path

from facekit.io import write_text
from facekit.reports.summary import DEFAULT_HEADER, MARKER, _cell, describe_device, load_summary


def index_status(counts: dict) -> str:
    """``2 ok, 1 failed`` plus skipped and not-run counts when there are any.

    >>> index_status({"ok": 2, "failed": 1, "skipped": 1, "pending": 0, "running": 0})
    '2 ok, 1 failed, 1 skipped'
    """
    not_run = counts.get("pending", 0) + counts.get("running", 0)
    text = f"{counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed"
    if counts.get("skipped"):
        text += f", {counts['skipped']} skipped"
    return text + (f", {not_run} not run" if not_run else "")


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
        date = (s.started or "")[:16].replace("T", " ")
        device = f"{s.device_slug}: {describe_device(s.device)}"
        commit = (s.git or {}).get("commit") or ""
        notebooks = ", ".join(e.name.split("_", 1)[0] for e in s.entries)
        link = f"[summary]({path.parent.name}/summary.md)"
        row = (f"| {_cell(s.name)} | {date} | {s.profile} | {_cell(device)} | {_cell(commit)} | "
               f"{_cell(notebooks)} | {index_status(s.counts())} | {link} |")
        rows.append((s.started or "", row))
    rows.sort(key=lambda r: r[0], reverse=True)  # newest first
    table = ["| run | date (UTC) | profile | device | commit | notebooks | status | summary |",
             "|---|---|---|---|---|---|---|---|"]
    table += [r for _, r in rows]
    write_text(readme, header + "\n" + MARKER + "\n\n" + "\n".join(table) + "\n")
    return readme


__all__ = ["index_status", "update_index"]
