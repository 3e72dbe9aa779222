"""facekit.reports: record/read_metrics, notebook selection, parameter checks, and one real batch run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from facekit.config import ConfigError
from facekit.reports import MIMETYPE, read_metrics, record, record_many, run_reports, select_notebooks
from facekit.reports.runner import claim_run_dir
from facekit.reports.summary import MARKER

GOOD = """\
import os, pathlib
from facekit.reports import record
record("answer", n * 2)
record("profile_seen", profile)
pathlib.Path(os.environ["FACEKIT_REPORT_RUN"], "from_good.txt").write_text(str(n))
"""
FAIL = """\
from facekit.reports import record
record("before_boom", 1.5, unit="s")
raise ValueError("boom")
"""
AFTER = """\
import os, pathlib
from facekit.reports import record
record("read_back", int(pathlib.Path(os.environ["FACEKIT_REPORT_RUN"], "from_good.txt").read_text()))
"""


def make_notebook(path: Path, params: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), first]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def notebooks_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("notebooks")
    make_notebook(d / "00_good.ipynb", 'profile = "auto"\nn = 3', GOOD)
    make_notebook(d / "01_fail.ipynb", 'profile = "auto"', FAIL, "print('never runs')")
    make_notebook(d / "02_after.ipynb", 'profile = "auto"', AFTER)
    return d


@pytest.fixture(scope="module")
def batch(notebooks_dir, tmp_path_factory):
    """One real run of the three notebooks, into a run name that is already taken."""
    reports = tmp_path_factory.mktemp("reports")
    (reports / "README.md").write_text(f"# My reports\n\nHand-written notes.\n\n{MARKER}\n\nold table\n")
    earlier = reports / "batch"
    earlier.mkdir()
    (earlier / "summary.json").write_text(json.dumps({
        "run": "batch", "started": "2020-01-01T00:00:00+00:00", "profile": "cpu", "device_slug": "cpu",
        "device": {"cpu": "old", "cpu_cores": 1}, "notebooks": [{"name": "x", "source": "x", "status": "ok"}],
    }))
    summary = run_reports(None, profile="smoke", parameters={"n": 5}, run_name="batch",
                          reports_dir=reports, notebooks_dir=notebooks_dir, progress=False)
    return summary, reports


# --- the real batch -----------------------------------------------------------------------------


def test_batch_records_failures_and_keeps_going(batch):
    summary, reports = batch
    assert summary.run_dir == reports / "batch-2"  # "batch" was taken: suffix, never overwrite
    by_name = {e.name: e for e in summary.entries}
    assert [e.name for e in summary.entries] == ["00_good", "01_fail", "02_after"]
    assert by_name["00_good"].status == "ok"
    assert by_name["00_good"].metrics == {"answer": 10, "profile_seen": "smoke"}
    assert by_name["00_good"].parameters == {"profile": "smoke", "n": 5}
    assert by_name["01_fail"].parameters == {"profile": "smoke"}  # n only goes where it is accepted
    fail = by_name["01_fail"]
    assert fail.status == "failed"
    assert fail.error["ename"] == "ValueError" and fail.error["evalue"] == "boom"
    assert fail.error["cell_index"] == 2  # markdown, parameters, then the failing cell
    assert fail.metrics == {"before_boom": 1.5} and fail.units == {"before_boom": "s"}
    assert by_name["02_after"].status == "ok"  # ran after 00 and read what it wrote
    assert by_name["02_after"].metrics == {"read_back": 5}
    assert not summary.ok and [e.name for e in summary.failed] == ["01_fail"]
    for e in summary.entries:
        assert e.duration_s is not None and e.duration_s > 0
        assert (summary.run_dir / f"{e.name}.ipynb").exists()
        assert (summary.run_dir / f"{e.name}.html").exists()
    assert "boom" in (summary.run_dir / "01_fail.html").read_text()
    assert read_metrics(summary.run_dir / "01_fail.ipynb") == {"before_boom": 1.5}
    assert (summary.run_dir / "from_good.txt").read_text() == "5"


def test_summary_files_agree_with_return_value(batch):
    summary, _ = batch
    data = json.loads((summary.run_dir / "summary.json").read_text())
    assert data["run"] == "batch-2" and data["profile"] == "smoke" and data["complete"]
    assert data["parameters"] == {"n": 5}
    assert data["counts"]["ok"] == 2 and data["counts"]["failed"] == 1
    assert set(data["device"]) >= {"torch", "cuda_available", "cpu", "cpu_cores", "python", "platform"}
    assert data["git"] is None or set(data["git"]) == {"commit", "dirty"}
    for entry, row in zip(summary.entries, data["notebooks"]):
        assert (row["name"], row["status"], row["metrics"], row["error"]) == (
            entry.name, entry.status, entry.metrics, entry.error)
    md = (summary.run_dir / "summary.md").read_text()
    assert "| [00_good](00_good.html) | ok |" in md and "answer = 10" in md
    assert "| [01_fail](01_fail.html) | **failed** |" in md
    assert "## Failures" in md and "ValueError: boom" in md


def test_index_lists_every_run_and_keeps_notes(batch):
    summary, reports = batch
    text = (reports / "README.md").read_text()
    head, table = text.split(MARKER)
    assert "Hand-written notes." in head and "old table" not in text
    assert "| batch-2 |" in table and "| batch |" in table
    assert table.index("batch-2") < table.index("| batch |")  # newest first
    assert "2 ok, 1 failed" in table and "(batch-2/summary.md)" in table


def test_no_temporary_files_left(batch):
    _, reports = batch
    assert [p for p in reports.rglob("*") if ".tmp" in p.name] == []


def test_missing_kernel_is_a_failed_notebook_not_a_crash(notebooks_dir, tmp_path):
    summary = run_reports(["00"], profile="smoke", reports_dir=tmp_path, notebooks_dir=notebooks_dir,
                          kernel_name="no-such-kernel", html=False, progress=False)
    (entry,) = summary.entries
    assert entry.status == "failed" and entry.error["ename"] == "NoSuchKernel"
    assert (summary.run_dir / "00_good.ipynb").exists() and not (summary.run_dir / "00_good.html").exists()
    nb = nbformat.read(summary.run_dir / "00_good.ipynb", as_version=4)
    assert "NoSuchKernel" in nb.cells[0].source


# --- checks made before anything runs ------------------------------------------------------------


def test_unknown_parameter_is_rejected_before_running(notebooks_dir, tmp_path):
    with pytest.raises(ConfigError) as info:
        run_reports(["00"], profile="smoke", parameters={"nn": 3}, reports_dir=tmp_path / "r",
                    notebooks_dir=notebooks_dir, progress=False)
    message = str(info.value)
    assert "'nn'" in message and "did you mean 'n'" in message and "00_good" in message
    assert not (tmp_path / "r").exists()


def test_parameter_no_selected_notebook_accepts(notebooks_dir, tmp_path):
    with pytest.raises(ConfigError, match="'n'"):  # only 00_good has n
        run_reports(["01", "02"], profile="smoke", parameters={"n": 3}, reports_dir=tmp_path / "r",
                    notebooks_dir=notebooks_dir, progress=False)
    with pytest.raises(ConfigError, match="--profile"):
        run_reports(["00"], parameters={"profile": "cpu"}, reports_dir=tmp_path / "r",
                    notebooks_dir=notebooks_dir, progress=False)
    assert not (tmp_path / "r").exists()


def test_bad_profile_is_rejected(notebooks_dir, tmp_path):
    with pytest.raises(ConfigError, match="profile='fast'"):
        run_reports(["00"], profile="fast", reports_dir=tmp_path / "r", notebooks_dir=notebooks_dir)
    assert not (tmp_path / "r").exists()


def test_notebook_without_parameters_cell(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "00_plain.ipynb")
    with pytest.raises(ConfigError, match="no cell tagged 'parameters'"):
        run_reports(profile="smoke", reports_dir=tmp_path / "r", notebooks_dir=tmp_path)
    assert not (tmp_path / "r").exists()


def test_select_by_name_prefix_and_path(notebooks_dir):
    names = [p.stem for p in select_notebooks(["02", "00_good"], notebooks_dir)]
    assert names == ["00_good", "02_after"]  # name order, whatever the order given
    assert [p.stem for p in select_notebooks(None, notebooks_dir)] == ["00_good", "01_fail", "02_after"]
    assert select_notebooks([notebooks_dir / "01_fail.ipynb"], notebooks_dir) == [notebooks_dir / "01_fail.ipynb"]
    assert select_notebooks(["01_fail.ipynb"], notebooks_dir) == [notebooks_dir / "01_fail.ipynb"]
    assert select_notebooks(["after"], notebooks_dir) == [notebooks_dir / "02_after.ipynb"]  # name without number
    assert select_notebooks(["fail"], notebooks_dir) == [notebooks_dir / "01_fail.ipynb"]


def test_select_errors(notebooks_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"'0' is ambiguous: it matches 00_good, 01_fail, 02_after"):
        select_notebooks(["0"], notebooks_dir)
    with pytest.raises(ConfigError, match=r"no notebook matches '07'; available notebooks: 00_good, 01_fail"):
        select_notebooks(["07"], notebooks_dir)
    with pytest.raises(ConfigError, match="jupytext --sync"):
        select_notebooks([str(tmp_path / "03_new.py")], notebooks_dir)
    with pytest.raises(ConfigError, match="does not exist"):
        select_notebooks(None, tmp_path / "missing")


def test_out_of_sync_pair_warns(tmp_path):
    ipynb = make_notebook(tmp_path / "00_pair.ipynb", 'profile = "auto"')
    py = tmp_path / "00_pair.py"
    py.write_text("# %%\n")
    os.utime(ipynb, (1_000_000, 1_000_000))
    from facekit.reports.runner import pair_warning

    assert "out of sync" in pair_warning(ipynb)
    os.utime(py, (1_000_000, 1_000_000))
    assert pair_warning(ipynb) is None


def test_run_dir_collision_gets_suffix(tmp_path):
    assert claim_run_dir(tmp_path, "r").name == "r"
    assert claim_run_dir(tmp_path, "r").name == "r-2"
    assert claim_run_dir(tmp_path, "r").name == "r-3"
    assert claim_run_dir(tmp_path, "r", overwrite=True).name == "r"
    with pytest.raises(ConfigError):
        claim_run_dir(tmp_path, "../escape")


# --- record / read_metrics without a kernel -------------------------------------------------------


def test_record_and_read_metrics_round_trip(capsys):
    assert record("acc", np.float32(0.5)) == np.float32(0.5)
    assert capsys.readouterr().out == "metric acc = 0.5\n"
    record_many({"loss": torch.tensor(0.25), "n": np.int64(3)})
    assert capsys.readouterr().out == "metric loss = 0.25\nmetric n = 3\n"

    from facekit.reports.record import _bundle

    outputs = [
        nbformat.v4.new_output("display_data", data=_bundle("acc", np.float64(0.5), None, None)),
        nbformat.v4.new_output("display_data", data=_bundle("time", 3, "s", None)),
        nbformat.v4.new_output("display_data", data=_bundle("acc", 0.75, None, None)),  # last wins
        nbformat.v4.new_output("display_data", data=_bundle("loss", float("nan"), None, None)),
        nbformat.v4.new_output("display_data", data=_bundle("ok", np.bool_(True), None, "other")),
        nbformat.v4.new_output("stream", name="stdout", text="metric fake = 1\n"),
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)  # a real .ipynb round trip (strict JSON)
    assert outputs[1]["data"]["text/plain"] == "metric time = 3 s"
    assert outputs[1]["data"][MIMETYPE] == {"name": "time", "value": 3, "unit": "s"}
    metrics = read_metrics(nb)
    assert list(metrics) == ["acc", "time", "loss", "ok"]
    assert metrics["acc"] == 0.75 and metrics["time"] == 3 and metrics["ok"] is True
    assert np.isnan(metrics["loss"])
    assert read_metrics(nb, notebook_key="other") == {"ok": True}
    assert read_metrics(nb, with_units=True)["time"] == {"value": 3, "unit": "s"}


def test_record_rejects_what_is_not_a_scalar():
    with pytest.raises(TypeError, match="metric 'embeddings'.*ndarray of shape \\(3,\\)"):
        record("embeddings", np.zeros(3))
    with pytest.raises(TypeError, match="metric 'obj'.*object"):
        record("obj", object())
    with pytest.raises(ValueError, match="at most"):
        record("long", "x" * 1000)
    with pytest.raises(ValueError, match="metric name"):
        record("", 1)
    with pytest.raises(TypeError, match="metric 'bad'"):  # nothing is shown when one value is bad
        record_many({"good": 1, "bad": [1, 2]})


# --- interruption, git, device ---------------------------------------------------------------------


def test_interrupted_batch_leaves_a_consistent_summary(notebooks_dir, tmp_path, monkeypatch):
    import papermill

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setenv("FACEKIT_REPORT_RUN", "before")
    monkeypatch.setattr(papermill, "execute_notebook", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_reports(["00", "02"], profile="smoke", run_name="cut", reports_dir=tmp_path,
                    notebooks_dir=notebooks_dir, html=False, progress=False)
    data = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert [n["status"] for n in data["notebooks"]] == ["failed", "pending"]
    assert data["notebooks"][0]["error"]["ename"] == "KeyboardInterrupt" and not data["complete"]
    assert "1 not run" in (tmp_path / "README.md").read_text()
    assert (tmp_path / "cut" / "00_good.ipynb").exists()
    assert os.environ["FACEKIT_REPORT_RUN"] == "before"  # restored


def test_git_info(tmp_path):
    import shutil
    import subprocess

    from facekit.reports.device import git_info

    if shutil.which("git") is None:
        pytest.skip("no git")
    assert git_info(tmp_path) is None
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    (tmp_path / "a.txt").write_text("a")
    for cmd in (["init", "-q"], ["add", "a.txt"], ["commit", "-q", "-m", "a"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, env=env, check=True)
    info = git_info(tmp_path, exclude=tmp_path / "reports")
    assert info["dirty"] is False and len(info["commit"]) >= 7
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "x.md").write_text("x")  # a run's own output does not make it dirty
    assert git_info(tmp_path, exclude=tmp_path / "reports")["dirty"] is False
    (tmp_path / "a.txt").write_text("b")
    assert git_info(tmp_path, exclude=tmp_path / "reports")["dirty"] is True


def test_device_slug():
    from facekit.reports.device import device_slug

    assert device_slug({"gpu": "NVIDIA H100 80GB HBM3"}) == "h100"
    assert device_slug({"gpu": "NVIDIA A100-SXM4-40GB"}) == "a100"
    assert device_slug({"gpu": "Tesla T4"}) == "t4"
    assert device_slug({"gpu": None}) == "cpu"


def test_notebooks_outside_a_checkout_record_the_facekit_commit(batch):
    """Notebooks copied out of the checkout (here: a temporary folder) still get the code's commit."""
    import facekit.reports.runner as runner
    from facekit.reports.device import git_info

    summary, _ = batch
    code = git_info(Path(runner.__file__).parent)
    if code is None:
        pytest.skip("facekit is not installed from a git checkout")
    assert git_info(Path(summary.entries[0].source).parent) is None, "the fixture's notebooks are outside git"
    assert summary.git is not None and summary.git["commit"] == code["commit"]
