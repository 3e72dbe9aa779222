"""The ``facekit`` command line: listing, exit codes, -p parsing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from facekit.cli import SUBCOMMANDS, main, parse_parameters, parse_value
from facekit.config import ConfigError


def make_notebook(path: Path, params: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def notebooks(tmp_path) -> Path:
    d = tmp_path / "notebooks"
    d.mkdir()
    make_notebook(d / "00_good.ipynb", 'profile = "auto"\nn = 3  # how many', "n * 2")
    make_notebook(d / "01_fail.ipynb", 'profile = "auto"', "raise ValueError('boom')")
    return d


def test_list(notebooks, capsys):
    assert main(["report", "--list", "--notebooks-dir", str(notebooks)]) == 0
    out = capsys.readouterr().out
    assert "00_good\n" in out and "01_fail\n" in out
    assert "    n: int = 3  # how many" in out and "    profile: str = \"auto\"" in out


def test_unknown_parameter_exits_2_with_message(notebooks, tmp_path, capsys):
    code = main(["report", "00", "--notebooks-dir", str(notebooks), "--reports-dir", str(tmp_path / "r"),
                 "--profile", "smoke", "-p", "nn=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'nn'" in err and "did you mean 'n'" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_usage_errors_exit_2(notebooks, capsys):
    assert main(["report", "--profile", "fast"]) == 2
    assert main(["report", "-p", "novalue", "--notebooks-dir", str(notebooks)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["report", "zz", "--notebooks-dir", str(notebooks)]) == 2
    assert "no notebook matches 'zz'" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--help"]) == 0


def test_failing_notebook_exits_1(notebooks, tmp_path, capsys):
    code = main(["report", "01", "--notebooks-dir", str(notebooks), "--reports-dir", str(tmp_path / "r"),
                 "--profile", "smoke", "--run", "cli", "--no-html", "-q"])
    assert code == 1
    data = json.loads((tmp_path / "r" / "cli" / "summary.json").read_text())
    assert data["notebooks"][0]["status"] == "failed"
    assert not (tmp_path / "r" / "cli" / "01_fail.html").exists()
    assert "failed 01_fail: ValueError: boom" in capsys.readouterr().err


def test_parse_values_like_papermill():
    assert parse_parameters(["a=1", "b=0.5", "c=true", "d=False", "e=None", "f=x=y", "g="]) == {
        "a": 1, "b": 0.5, "c": True, "d": False, "e": None, "f": "x=y", "g": ""}
    assert parse_value("1e-3") == 0.001
    with pytest.raises(ConfigError):
        parse_parameters(["1a=3"])


def test_subcommands_are_a_dict():
    assert "report" in SUBCOMMANDS and callable(SUBCOMMANDS["report"].handler)


def test_python_dash_m_facekit():
    done = subprocess.run([sys.executable, "-m", "facekit", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("facekit ")


def test_subcommands_include_compare():
    assert "compare" in SUBCOMMANDS and callable(SUBCOMMANDS["compare"].handler)


def test_report_options_that_conflict_exit_2(notebooks, tmp_path, capsys):
    nb = nbformat.read(notebooks / "01_fail.ipynb", as_version=4)
    nb.metadata["facekit"] = {"depends_on": ["01_fail"]}
    nbformat.write(nb, notebooks / "01_fail.ipynb")
    common = ["--notebooks-dir", str(notebooks), "--reports-dir", str(tmp_path / "r"), "--profile", "smoke"]
    assert main(["report", "00", "--all", *common]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["report", "01", *common]) == 2
    assert "depends on itself" in capsys.readouterr().err
    assert main(["report", "--rerun-failed", str(tmp_path / "r"), "00"]) == 2
    assert "drop notebooks" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_list_shows_the_course_by_default_and_every_notebook_with_all(notebooks, capsys):
    nb = nbformat.read(notebooks / "01_fail.ipynb", as_version=4)
    nb.metadata["facekit"] = {"group": "benchmark"}
    nbformat.write(nb, notebooks / "01_fail.ipynb")
    assert main(["report", "--list", "--notebooks-dir", str(notebooks)]) == 0
    assert "01_fail" not in capsys.readouterr().out
    assert main(["report", "--list", "--all", "--notebooks-dir", str(notebooks)]) == 0
    assert "01_fail  [benchmark]" in capsys.readouterr().out


def test_dry_run_flag_reaches_the_kernels_and_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FACEKIT_MAX_STEPS", raising=False)
    d = tmp_path / "notebooks"
    d.mkdir()
    make_notebook(d / "00_steps.ipynb", 'profile = "auto"',
                  "assert False, 'a claim about results: skipped in a dry run'\n"
                  "import os\nfrom facekit.reports import record\n"
                  "record('steps', int(os.environ['FACEKIT_MAX_STEPS']))")
    args = ["report", "00", "--notebooks-dir", str(d), "--reports-dir", str(tmp_path / "r"), "--profile", "gpu",
            "--no-html", "-q"]
    assert main(args + ["--dry-run"]) == 0
    (run,) = (tmp_path / "r").glob("*-gpu-dry-*")  # a dry run is named so
    summary = json.loads((run / "summary.json").read_text())
    assert summary["notebooks"][0]["metrics"]["steps"] == 2 and summary["options"]["max_steps"] == 2
    assert "FACEKIT_MAX_STEPS=2" in (run / "summary.md").read_text()
    assert main(args + ["--dry-run", "5", "--run", "five"]) == 0
    assert json.loads((tmp_path / "r" / "five" / "summary.json").read_text())["notebooks"][0]["metrics"]["steps"] == 5
    capsys.readouterr()
    assert main(args + ["--dry-run", "0"]) == 2
    assert "--dry-run 0 is not accepted" in capsys.readouterr().err
    assert main(["report", "--rerun-failed", str(tmp_path / "r" / "five"), "--dry-run"]) == 2
    assert "drop --dry-run" in capsys.readouterr().err


def test_course_page_option(tmp_path, capsys):
    from test_reports_course_page import fabricate_run

    run = fabricate_run(tmp_path / "reports", "course-run")
    assert main(["report", "--course-page", str(run)]) == 0
    assert "<!-- course: course-run -->" in (tmp_path / "reports" / "README.md").read_text()
    assert main(["report", "--course-page", str(run), "--profile", "cpu"]) == 2
    assert "runs nothing; drop profile" in capsys.readouterr().err
    assert main(["report", "--course-page", str(tmp_path / "nowhere")]) == 2
    assert "no summary.json" in capsys.readouterr().err
