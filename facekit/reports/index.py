"""The index of runs: the generated table of ``reports/README.md`` (below the ``<!-- runs -->`` marker)."""

from __future__ import annotations

import base64
import io
import re
import warnings
from pathlib import Path

from facekit.config import ConfigError
from facekit.io import write_text
from facekit.reports.summary import (DEFAULT_HEADER, MARKER, _cell, _value, describe_device, format_duration,
                                     load_summary)


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
        course = _COURSE_BLOCK.search(header)
        if course and (reports_dir / course["run"] / "summary.json").is_file():  # keep the course page current
            header = header[:course.start()] + course_page(reports_dir / course["run"]) + header[course.end():]
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




# --- the course page: one line per chapter of one chosen run -----------------------------------------------------

COURSE_START = "<!-- course: {run} -->"
COURSE_END = "<!-- /course -->"
_COURSE_BLOCK = re.compile(r"<!-- course: (?P<run>[^ ]+) -->\n.*?<!-- /course -->\n?", re.S)
KEY_FIGURE_TAG = "key-figure"  # a code cell tagged so gives the chapter's thumbnail (else its largest image)
THUMB_WIDTH_PX = 240
THUMBS_DIR = "thumbs"
N_KEY_METRICS = 3


def key_figure(nb) -> bytes | None:
    """The bytes (PNG or JPEG) of a notebook's key figure: the first image of a cell tagged ``key-figure``, else
    its largest PNG/JPEG output; None when it has no image."""
    images = []
    for cell in nb.cells:
        tagged = KEY_FIGURE_TAG in cell.get("metadata", {}).get("tags", [])
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            for mime in ("image/png", "image/jpeg"):
                if mime in data:
                    raw = base64.b64decode(data[mime])
                    if tagged:
                        return raw
                    images.append(raw)
    return max(images, key=len) if images else None


def write_thumbnail(image: bytes, out: Path, width: int = THUMB_WIDTH_PX) -> Path:
    """A JPEG of `image` at most `width` pixels wide, written atomically to `out`."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    from facekit.io import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out


def _key_metrics(entry) -> str:
    names = [n for n in (entry.key_metrics or []) if n in entry.metrics]
    if not names:  # no metric marked key=True: the first ones recorded, the profile left out
        names = [n for n in entry.metrics if n != "profile"]
    return ", ".join(f"{n} = {_value(entry.metrics[n], entry.units.get(n))}" for n in names[:N_KEY_METRICS])


def course_page(run_dir: str | Path) -> str:
    """The Markdown block of the course page of one run (links relative to the reports folder); writes the
    thumbnails into ``<run_dir>/thumbs/``."""
    import nbformat

    run_dir = Path(run_dir)
    s = load_summary(run_dir)
    name = run_dir.name
    lines = [COURSE_START.format(run=name), "",
             f"## The course: run `{name}`", "",
             f"Profile **{s.profile}** on {describe_device(s.device)}, commit `{(s.git or {}).get('commit', '?')}`, "
             f"started {(s.started or '?')[:16].replace('T', ' ')} UTC. [Summary]({name}/summary.md).", ""]
    if (s.options or {}).get("max_steps"):
        lines += [f"A dry run (`FACEKIT_MAX_STEPS={s.options['max_steps']}`): its numbers are not results.", ""]
    for r in s.reruns or []:  # --rerun / --rerun-failed: those chapters' outputs and durations come from then
        commit = ((r.get("git") or {}).get("commit") or "?")[:7]
        lines += [f"Rerun {(r.get('started') or '?')[:16].replace('T', ' ')} UTC at commit `{commit}`: "
                  f"{', '.join(r.get('notebooks') or [])}.", ""]
    lines += ["| chapter | status | duration | key metrics | key figure |", "|---|---|---:|---|---|"]
    total = 0.0
    for e in s.entries:
        total += e.duration_s or 0.0
        link = f"[{e.name}]({name}/{e.html or e.ipynb})" if (e.html or e.ipynb) else e.name
        thumb = ""
        if e.ipynb and (run_dir / e.ipynb).is_file():
            image = key_figure(nbformat.read(run_dir / e.ipynb, as_version=4))
            if image is not None:
                out = write_thumbnail(image, run_dir / THUMBS_DIR / f"{e.name}.jpg")
                thumb = f"![{e.name}]({name}/{THUMBS_DIR}/{out.name})"
        status = e.status + (f" ({e.skip_reason})" if e.skip_reason else "")
        if e.status == "failed" and e.error:
            status += f": {e.error.get('ename', '?')}"
        lines.append(f"| {_cell(link)} | {_cell(status)} | {format_duration(e.duration_s)} | "
                     f"{_cell(_key_metrics(e))} | {thumb} |")
    n = len(s.entries)
    lines += ["", f"Total: {format_duration(total)} for {n} notebook{'' if n == 1 else 's'} "
                  f"({index_status(s.counts())}).", "", COURSE_END]
    return "\n".join(lines) + "\n"


def write_course_page(run_dir: str | Path) -> Path:
    """Put the course page of `run_dir` into ``<its reports folder>/README.md`` (replacing an earlier one), above
    the runs table, and regenerate the runs table. :func:`update_index` keeps the page up to date afterwards
    (a ``--rerun-failed`` of that run redraws it)."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a report run: no summary.json there")
    readme = run_dir.parent / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else DEFAULT_HEADER + "\n" + MARKER + "\n"
    header, sep, rest = text.partition(MARKER)
    header = _COURSE_BLOCK.sub("", header).rstrip("\n") + "\n\n" + course_page(run_dir) + "\n"
    write_text(readme, header + sep + rest)
    return update_index(run_dir.parent)


__all__ = ["index_status", "update_index", "course_page", "write_course_page", "key_figure", "KEY_FIGURE_TAG"]
