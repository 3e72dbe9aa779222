"""The course page of reports/README.md: one line per chapter of a chosen run, on fabricated run folders."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import nbformat
from PIL import Image

from facekit.reports import MIMETYPE
from facekit.reports.index import KEY_FIGURE_TAG, key_figure, update_index, write_course_page
from facekit.reports.summary import MARKER


def _png(width: int, height: int, color) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _metric(name, value, unit=None, key=False):
    payload = {"name": name, "value": value, "unit": unit, **({"key": True} if key else {})}
    return nbformat.v4.new_output("display_data", data={"text/plain": f"metric {name}", MIMETYPE: payload})


def _executed(images, metrics=(), tagged=None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for i, (w, h, color) in enumerate(images):
        cell = nbformat.v4.new_code_cell("plot()")
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png(w, h, color)})]
        if tagged == i:
            cell.metadata["tags"] = [KEY_FIGURE_TAG]
        nb.cells.append(cell)
    cell = nbformat.v4.new_code_cell("record()")
    cell.outputs = list(metrics)
    nb.cells.append(cell)
    return nb


def fabricate_run(reports: Path, name: str, started: str = "2030-01-02T03:04:05+00:00") -> Path:
    """A run folder as `facekit report` leaves it: three chapters (ok with key metrics, ok without, failed)."""
    run = reports / name
    run.mkdir(parents=True)
    chapters = {
        "00_intro": _executed([(300, 200, "red"), (800, 400, "blue")],
                              [_metric("profile", "cpu"), _metric("n_people", 40), _metric("auc", 0.91, key=True),
                               _metric("eer", 0.12, key=True), _metric("acc", 0.8, "%", key=True),
                               _metric("extra", 1.0, key=True)]),
        "01_plain": _executed([(500, 500, "green"), (900, 300, "white")],
                              [_metric("profile", "cpu"), _metric("a", 1), _metric("b", 2.5), _metric("c", 3),
                               _metric("d", 4)], tagged=0),
        "02_broken": _executed([]),
    }
    entries = []
    for stem, nb in chapters.items():
        nbformat.write(nb, run / f"{stem}.ipynb")
        from facekit.reports.record import key_metric_names, read_metrics

        units = {k: v["unit"] for k, v in read_metrics(nb, with_units=True).items() if v["unit"]}
        failed = stem == "02_broken"
        entries.append({"name": stem, "source": f"notebooks/{stem}.ipynb", "status": "failed" if failed else "ok",
                        "duration_s": 75.0, "metrics": read_metrics(nb), "units": units,
                        "key_metrics": key_metric_names(nb), "ipynb": f"{stem}.ipynb", "html": f"{stem}.html",
                        "error": {"ename": "AssertionError", "evalue": "boom"} if failed else None})
    (run / "summary.json").write_text(json.dumps({
        "run": name, "started": started, "profile": "cpu", "device_slug": "cpu",
        "device": {"cpu": "Test CPU", "cpu_cores": 2}, "git": {"commit": "abc1234"}, "notebooks": entries,
        "options": {}}))
    return run


def test_course_page_one_line_per_chapter(tmp_path):
    reports = tmp_path / "reports"
    run = fabricate_run(reports, "full-run")
    (reports / "README.md").write_text(f"# Reports\n\nMy notes.\n\n{MARKER}\n\nold table\n")
    write_course_page(run)
    text = (reports / "README.md").read_text()
    assert text.startswith("# Reports\n\nMy notes.\n")  # the hand-written header is kept
    page = text[text.index("<!-- course: full-run -->"):text.index("<!-- /course -->")]
    rows = [line for line in page.splitlines() if line.startswith("| [")]
    assert len(rows) == 3
    intro, plain, broken = rows
    # marked key metrics first (at most three), else the first three recorded, the profile never
    assert "auc = 0.91, eer = 0.12, acc = 0.8 %" in intro and "extra" not in intro and "n_people" not in intro
    assert "a = 1, b = 2.5, c = 3 |" in plain and "profile" not in plain
    assert "| failed: AssertionError | 1 min 15 s |" in broken
    assert "Total: 3 min 45 s for 3 notebooks (2 ok, 1 failed)." in page
    assert "[00_intro](full-run/00_intro.html)" in intro
    # thumbnails: the tagged figure, else the largest; none for a chapter without figures
    assert "![00_intro](full-run/thumbs/00_intro.jpg)" in intro and "thumbs" not in broken
    with Image.open(run / "thumbs" / "00_intro.jpg") as im:
        assert im.size == (240, 120) and im.getpixel((120, 60))[2] > 200  # the 800x400 blue one, scaled
    with Image.open(run / "thumbs" / "01_plain.jpg") as im:
        assert im.size == (240, 240) and im.getpixel((120, 120))[1] > 100  # the tagged 500x500 green one
    assert text.index("<!-- /course -->") < text.index(MARKER)  # above the runs table
    assert "| full-run | 2030-01-02 03:04 | cpu |" in text and "old table" not in text


def test_course_page_is_replaced_and_kept_current(tmp_path):
    reports = tmp_path / "reports"
    first = fabricate_run(reports, "first")
    second = fabricate_run(reports, "second", started="2030-02-01T00:00:00+00:00")
    write_course_page(first)
    write_course_page(second)
    text = (reports / "README.md").read_text()
    assert text.count("<!-- course:") == 1 and "<!-- course: second -->" in text
    summary = json.loads((second / "summary.json").read_text())
    summary["notebooks"][2].update(status="ok", error=None)  # e.g. after --rerun-failed
    summary["reruns"] = [{"started": "2030-02-02T10:00:00+00:00", "notebooks": [summary["notebooks"][2]["name"]],
                          "git": {"commit": "abcdef0123"}}]
    (second / "summary.json").write_text(json.dumps(summary))
    update_index(reports)
    text = (reports / "README.md").read_text()
    assert "(3 ok, 0 failed)" in text and text.count("<!-- course:") == 1
    assert f"Rerun 2030-02-02 10:00 UTC at commit `abcdef0`: {summary['notebooks'][2]['name']}." in text


def test_key_figure_without_images_is_none():
    assert key_figure(_executed([])) is None
