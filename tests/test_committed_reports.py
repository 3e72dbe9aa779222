"""The committed report runs, as a reader opens them: every chapter ran and shows figures, no progress-bar spam,
each HTML page is light, folded and renders its math offline in a real browser (Debian's chromium, when
installed), and reports/ holds complete runs of the whole course plus their index."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from facekit.reports.batch import count_figures

from test_reports_output import BROWSER_FLAGS, chromium

REPORTS = Path(__file__).resolve().parent.parent / "reports"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RUNS = sorted(p.parent for p in REPORTS.glob("*/summary.json"))
MAX_HTML_BYTES = 2_000_000  # each chapter's page under about 2 MB


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _pages():
    return [pytest.param(html, id=f"{run.name}/{html.stem}") for run in RUNS for html in sorted(run.glob("*.html"))]


def test_reports_hold_only_complete_course_runs():
    """No fragments: each committed run executed every notebook of the course, and each one passed."""
    if not RUNS:
        pytest.skip("no committed report runs in reports/")
    course = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    for run in RUNS:
        s = _summary(run)
        names = sorted(e["name"] for e in s["notebooks"])
        assert names == course, f"{run.name}: ran {names}, the course is {course}"
        failed = [e["name"] for e in s["notebooks"] if e["status"] != "ok"]
        assert not failed, f"{run.name}: not ok: {failed}"
        assert not (s.get("options") or {}).get("max_steps"), f"{run.name}: a dry run is not a report"


@pytest.mark.parametrize("run", [pytest.param(r, id=r.name) for r in RUNS])
def test_every_chapter_shows_figures_and_no_progress_spam(run):
    for nb_path in sorted(run.glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        assert count_figures(nb) > 0, f"{nb_path.name}: no figure"
        for c in nb.cells:
            for o in c.get("outputs", []) if c.cell_type == "code" else []:
                text = o.get("text", "") if o.get("output_type") == "stream" else ""
                assert text.count("\r") < 5 and "it/s]" not in text.replace("it/s)", ""), \
                    f"{nb_path.name}: per-iteration progress output: {text[:200]!r}"


@pytest.mark.parametrize("html", _pages())
def test_html_pages_are_light_folded_and_without_raw_math(html):
    assert html.stat().st_size < MAX_HTML_BYTES, f"{html.name}: {html.stat().st_size:,} bytes"
    soup = BeautifulSoup(html.read_text(encoding="utf-8"), "html.parser")
    assert not soup.find_all("script", src=True), f"{html.name}: loads a script from elsewhere"
    assert soup.find("details") is not None, f"{html.name}: code is not folded"
    assert "$$" not in soup.get_text(), f"{html.name}: raw $$ math"


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium) to render "
                                                "the committed reports headless and offline")
@pytest.mark.parametrize("html", [p for p in _pages() if p.id.endswith("04_verification_losses")])
def test_committed_report_math_renders_in_a_real_browser(html, tmp_path):
    """Chapter 4 (the most formulas): the browser's rendered text holds MathML and no raw $$."""
    dom = subprocess.run([chromium(), *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          html.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = BeautifulSoup(dom.stdout, "html.parser")
    assert len(rendered.find_all("math")) > 5 and "$$" not in rendered.get_text()
