"""What a report looks like: figures whatever MPLBACKEND says, one line per progress bar, an offline HTML page
(MathML, table of contents, folded code), checked in a real browser when Debian's chromium is installed."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys

import nbformat
import pytest
from bs4 import BeautifulSoup

from facekit.config import ConfigError
from facekit.reports import run_reports
from facekit.reports.batch import INLINE_BACKEND, NO_FIGURES, count_figures, kernel_environment
from facekit.reports.webpage import FIGURE_SCALE, export_html, latex_to_mathml

from test_reports import make_notebook

PLOT = """\
import matplotlib.pyplot as plt
plt.plot([0, 1, 2], [1, 0, 1])
plt.title("a line")
plt.show()
"""
LOOP = """\
from facekit.progress import bar, tqdm
b = tqdm(range(40), desc="train", unit="epoch")
for i in b:
    b.write(f"epoch {i + 1}: loss {1 / (i + 1):.3f}")
b.close()
total = sum(bar(range(25), desc="embed"))
"""
MATH = r"""# Losses

The loss is $$\ell = -\log \frac{e^{s\cos(\theta_y + m)}}{\sum_k e^{s \cos\theta_k}}$$ for a margin $m$.

## Margins

\begin{align}a &= b\\ c &= d\end{align}

A price of $5 and $6 stays text.
"""
SAY = r"""
from IPython.display import Markdown, display
display(Markdown(f"The accuracy is **{0.5:.2f}** at $\\tau = {0.3}$."))
"""
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real report of two tiny notebooks, made under MPLBACKEND=Agg (as `make test` sets)."""
    nbs = tmp_path_factory.mktemp("notebooks")
    plotting = make_notebook(nbs / "00_plots.ipynb", 'profile = "auto"', PLOT, LOOP, SAY)
    nb = nbformat.read(plotting, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(MATH))
    nbformat.write(nb, plotting)
    make_notebook(nbs / "01_no_plots.ipynb", 'profile = "auto"', "import warnings\nwarnings.warn('mind the gap')")
    reports = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPLBACKEND", "Agg")
        mp.delenv("FACEKIT_PROGRESS", raising=False)
        summary = run_reports(None, profile="smoke", run_name="out", reports_dir=reports, notebooks_dir=nbs,
                              progress=False)
    return summary


def _outputs(path):
    nb = nbformat.read(path, as_version=4)
    return nb, [o for c in nb.cells for o in c.get("outputs", [])]


def test_figures_survive_a_forced_agg_backend(run):
    assert run.ok, [(e.name, e.error) for e in run.entries]
    nb, _ = _outputs(run.run_dir / "00_plots.ipynb")
    assert count_figures(nb) == 1  # with MPLBACKEND=Agg reaching the kernel, plt.show() shows nothing
    plots, bare = run.entries
    assert plots.figures == 1 and NO_FIGURES not in plots.warnings
    assert bare.figures == 0 and NO_FIGURES in bare.warnings
    assert "no figures" in (run.run_dir / "summary.md").read_text()


def test_printed_warnings_are_listed_in_the_summary(run):
    plots, bare = run.entries
    printed = [w for w in bare.warnings if w.startswith("printed")]
    assert printed == ["printed In [3]: UserWarning: mind the gap"]  # cell 3: after the injected parameters
    assert not [w for w in plots.warnings if w.startswith("printed")]  # no TqdmWarning, nothing else
    assert "UserWarning: mind the gap" in (run.run_dir / "summary.md").read_text()


def test_kernel_environment_overrides_the_callers():
    env = kernel_environment(__import__("pathlib").Path("run"), None)
    assert env["MPLBACKEND"] == INLINE_BACKEND and env["FACEKIT_PROGRESS"] == "final"
    assert "FACEKIT_MAX_STEPS" not in env and "PYTHONOPTIMIZE" not in env
    dry = kernel_environment(__import__("pathlib").Path("run"), None, max_steps=2)
    assert dry["FACEKIT_MAX_STEPS"] == "2" and dry["PYTHONOPTIMIZE"] == "1"
    with pytest.raises(ConfigError, match="max_steps"):
        kernel_environment(__import__("pathlib").Path("run"), None, max_steps=0)


def test_progress_is_one_line_per_loop_in_a_report(run):
    _, outputs = _outputs(run.run_dir / "00_plots.ipynb")
    streams = [o for o in outputs if o.get("output_type") == "stream"]
    text = "".join(o["text"] for o in streams)
    assert all(o["name"] == "stdout" for o in streams), text  # nothing on stderr: no TqdmWarning, no bar
    assert "\r" not in text and "TqdmWarning" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    train = [line for line in lines if line.startswith("train:")]
    assert len(train) == 1 and "40/40 epoch in" in train[0] and train[0].endswith("last: epoch 40: loss 0.025")
    assert len([line for line in lines if line.startswith("embed:")]) == 1
    assert not any(line.startswith("epoch ") for line in lines)  # per-epoch messages folded into the last line


def test_progress_modes(monkeypatch, capsys):
    from facekit import progress

    monkeypatch.setenv("FACEKIT_PROGRESS", "final")
    for _ in progress.bar(range(3), desc="x"):
        pass
    assert capsys.readouterr().out.startswith("x: 3/3 it in ")
    monkeypatch.setenv("FACEKIT_PROGRESS", "off")
    for _ in progress.bar(range(3), desc="x"):
        pass
    assert capsys.readouterr() == ("", "")
    monkeypatch.delenv("FACEKIT_PROGRESS")
    monkeypatch.setenv("FACEKIT_REPORT_RUN", "/tmp/some-run")
    assert progress.mode() == "final"
    monkeypatch.delenv("FACEKIT_REPORT_RUN")
    assert progress.mode() == "live"
    live = progress.tqdm(range(2), file=io.StringIO())
    assert type(live).__module__ == "tqdm.std"  # outside a kernel: tqdm's text bar
    live.close()
    monkeypatch.setenv("FACEKIT_PROGRESS", "fancy")
    with pytest.raises(ConfigError, match="FACEKIT_PROGRESS"):
        progress.mode()


def test_latex_to_mathml():
    assert latex_to_mathml(r"\sqrt{d_k}").count("<msqrt>") == 1
    assert 'display="block"' in latex_to_mathml(r"\begin{align}a&=b\\c&=d\end{align}", display=True)
    with pytest.raises(ValueError):
        latex_to_mathml(r"\frac{a}{")


def _page(run):
    return (run.run_dir / "00_plots.html").read_text()


def test_html_is_light_offline_and_folded(run):
    page = _page(run)
    soup = BeautifulSoup(page, "html.parser")
    assert len(page.encode()) < 200_000  # no JupyterLab CSS (the default export of this notebook is ~300 kB)
    assert not soup.find_all("script")  # nothing to run, nothing to fetch
    assert not [t for t in soup.find_all(["link", "img"]) if str(t.get("href") or t.get("src")).startswith("http")]
    folds = soup.find_all("details", class_="input")
    assert len(folds) == 5 and not any(d.has_attr("open") for d in folds)  # parameters, injected, 3 code cells
    assert soup.find("summary", string="parameters of this run") is not None
    assert soup.select("details.input pre")  # the code is inside the fold
    assert soup.select(".output_area img")  # and the outputs outside it


def test_html_math_is_mathml(run):
    soup = BeautifulSoup(_page(run), "html.parser")
    text = soup.get_text()
    assert "$$" not in text and "\\begin" not in text and "\\frac" not in text
    maths = soup.find_all("math")
    assert len(maths) == 4  # the loss, m, the align block, and tau in a Markdown output of a code cell
    assert sum(m.get("display") == "block" for m in maths) == 2
    assert "A price of $5 and $6 stays text." in text


def test_html_table_of_contents_and_figure_size(run):
    from PIL import Image

    soup = BeautifulSoup(_page(run), "html.parser")
    links = [(a.get_text(), a["href"]) for a in soup.select("nav#toc a")]
    assert [t for t, _ in links] == ["00_plots", "Losses", "Margins"]
    assert all(soup.find(id=h[1:]) is not None for _, h in links)
    img = soup.select_one(".output_area img")
    width = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1]))).width
    assert img["style"] == f"width: {min(round(width * FIGURE_SCALE), 940)}px"


def test_html_warns_about_math_it_cannot_convert():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(r"Broken: $\frac{a}{$ here.")])
    page, warnings = export_html(nb)
    assert len(warnings) == 1 and "1 formula(s) left as TeX" in warnings[0]
    assert 'class="tex-unconverted"' in page


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium) to render "
                                               "the report headless and offline")
def test_report_renders_in_a_real_browser(run, tmp_path):
    from PIL import Image

    page = run.run_dir / "00_plots.html"
    common = [chromium(), *BROWSER_FLAGS, "--window-size=1200,1600"]
    dom = subprocess.run([*common, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = BeautifulSoup(dom.stdout, "html.parser")
    assert rendered.find("math") is not None and "$$" not in rendered.get_text()
    shot = tmp_path / "report.png"
    out = subprocess.run([*common, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1200, 1600)
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # text and a figure, not a blank page
    if "-s" in sys.argv or "--capture=no" in sys.argv:
        print(f"screenshot: {shot}")


def test_progress_in_plain_papermill_and_in_jupyterlab(tmp_path, monkeypatch):
    """No runner: a kernel no Jupyter server started (papermill, nbval) writes the one line; one that a server
    started (JPY_SESSION_NAME, as JupyterLab's) gets tqdm's live widget."""
    import papermill

    monkeypatch.delenv("FACEKIT_PROGRESS", raising=False)
    monkeypatch.delenv("FACEKIT_REPORT_RUN", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    src = make_notebook(tmp_path / "loop.ipynb", 'profile = "auto"', LOOP)
    plain = papermill.execute_notebook(str(src), str(tmp_path / "plain.ipynb"), progress_bar=False)
    text = "".join(o.get("text", "") for c in plain.cells for o in c.get("outputs", []))
    assert "train: 40/40 epoch in" in text and "\r" not in text
    monkeypatch.setenv("JPY_SESSION_NAME", str(src))
    live = papermill.execute_notebook(str(src), str(tmp_path / "live.ipynb"), progress_bar=False)
    widgets = [o for c in live.cells for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 2  # the two loops, as ipywidgets bars
