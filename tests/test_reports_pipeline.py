"""facekit report: dependency order, added dependencies, skipped dependents, per-run artifacts, --rerun-failed.

Five real notebook executions in all (tiny nbformat notebooks in the python3 kernel); the ordering rules
themselves are checked on notebooks that never run.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from facekit.config import ConfigError
from facekit.reports.order import notebook_meta, plan_batch, topological_order
from facekit.reports.rerun import rerun_failed
from facekit.reports.runner import default_selection, run_reports
from facekit.reports.summary import NotebookEntry, RunSummary, load_summary, write_summary

PRODUCER = """\
import os
from facekit.io import artifact_path
from facekit.reports import record
path = artifact_path("shared.txt", profile)
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(str(n))
record("artifacts_root", os.environ["FACEKIT_ARTIFACTS"])
"""
CONSUMER = """\
from facekit.io import artifact_path
from facekit.reports import record
record("read_back", int(artifact_path("shared.txt", profile).read_text()))
"""
BROKEN = "raise RuntimeError('producer broke')"


def make_notebook(path: Path, *cells: str, params: str = 'profile = "auto"', **facekit_meta) -> Path:
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if facekit_meta:
        nb.metadata["facekit"] = facekit_meta
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # the kernels inherit it: nothing lands in ~/.cache
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("FACEKIT_CACHE", str(path))
        mp.delenv("FACEKIT_ARTIFACTS", raising=False)
        yield path


@pytest.fixture(scope="module")
def chain(tmp_path_factory, cache):
    """00_consumer needs 03_producer; 02_needs_broken needs 01_broken. Run 00 and 02 only."""
    nbs = tmp_path_factory.mktemp("notebooks")
    make_notebook(nbs / "00_consumer.ipynb", CONSUMER, depends_on=["03_producer"])
    make_notebook(nbs / "01_broken.ipynb", BROKEN)
    make_notebook(nbs / "02_needs_broken.ipynb", "print('must not run')", depends_on=["01_broken"])
    make_notebook(nbs / "03_producer.ipynb", PRODUCER, params='profile = "auto"\nn = 1')
    reports = tmp_path_factory.mktemp("reports")
    summary = run_reports(["00", "02"], profile="smoke", parameters={"n": 7}, run_name="chain",
                          reports_dir=reports, notebooks_dir=nbs, html=False, progress=True)
    return summary, nbs, reports


def test_dependencies_run_first_and_are_added(chain, capsys):
    summary, _, _ = chain
    assert [e.name for e in summary.entries] == ["01_broken", "02_needs_broken", "03_producer", "00_consumer"]
    assert summary.added_dependencies == ["01_broken", "03_producer"]
    by = {e.name: e for e in summary.entries}
    assert by["03_producer"].added_as_dependency and not by["00_consumer"].added_as_dependency
    assert by["00_consumer"].depends_on == ["03_producer"]
    md = (summary.run_dir / "summary.md").read_text()
    assert "added as dependencies**: 01_broken, 03_producer" in md


def test_failed_dependency_skips_its_dependents_only(chain):
    summary, _, reports = chain
    by = {e.name: e for e in summary.entries}
    assert by["01_broken"].status == "failed"
    assert by["02_needs_broken"].status == "skipped"
    assert by["02_needs_broken"].skip_reason == "dependency 01_broken failed"
    assert not (summary.run_dir / "02_needs_broken.ipynb").exists()  # never executed
    assert by["03_producer"].status == "ok" and by["00_consumer"].status == "ok"  # independent: still ran
    data = json.loads((summary.run_dir / "summary.json").read_text())
    assert data["counts"] == {"pending": 0, "running": 0, "ok": 2, "failed": 1, "skipped": 1}
    assert "skipped (dependency 01_broken failed)" in (summary.run_dir / "summary.md").read_text()
    assert "2 ok, 1 failed, 1 skipped" in (reports / "README.md").read_text()


def test_consumer_reads_the_producers_artifact_from_a_per_run_folder(chain, cache):
    summary, _, reports = chain
    by = {e.name: e for e in summary.entries}
    assert by["00_consumer"].metrics == {"read_back": 7}
    root = Path(by["03_producer"].metrics["artifacts_root"])
    assert root == Path(summary.artifacts_dir)
    assert cache in root.parents and reports not in root.parents  # in the cache, never in the reports tree
    assert (root / "smoke" / "shared.txt").read_text() == "7"
    assert "chain-" in root.name


def test_no_deps_reads_an_earlier_runs_artifacts(chain, capsys):
    """--no-deps runs the consumer alone; --artifacts RUN_DIR points it at the checkpoints of that run."""
    from facekit.cli import main

    summary, nbs, reports = chain
    code = main(["report", "00_consumer", "--no-deps", "--artifacts", str(summary.run_dir), "--profile", "smoke",
                 "--notebooks-dir", str(nbs), "--reports-dir", str(reports), "--run", "alone", "--no-html", "-q"])
    assert code == 0
    alone = load_summary(reports / "alone")
    assert [e.name for e in alone.entries] == ["00_consumer"] and alone.added_dependencies == []
    assert alone.entries[0].metrics == {"read_back": 7} and alone.artifacts_dir == summary.artifacts_dir
    assert "added" not in capsys.readouterr().err


def test_rerun_failed_on_a_fabricated_run(tmp_path, cache, capsys):
    """A run whose producer failed (since fixed) and whose consumer was skipped: both run again, in order,
    with the recorded profile and parameters and the recorded artifact folder; the passing notebook is kept."""
    from facekit.cli import main

    nbs = tmp_path / "notebooks"
    producer = make_notebook(nbs / "01_producer.ipynb", PRODUCER, params='profile = "auto"\nn = 1')
    consumer = make_notebook(nbs / "02_consumer.ipynb", CONSUMER, "from facekit.reports import record\n"
                             "record('profile_seen', profile)", depends_on=["01_producer"])
    run = tmp_path / "reports" / "old-run"
    run.mkdir(parents=True)
    artifacts = tmp_path / "artifacts-of-old-run"
    summary = RunSummary(run_dir=run, name="old-run", profile="cpu", requested_profile="auto",
                         parameters={"n": 4}, started="2026-01-01T00:00:00+00:00", device_slug="cpu",
                         artifacts_dir=str(artifacts), options={"html": False, "kernel_name": None},
                         entries=[
                             NotebookEntry("00_fine", "gone/00_fine.ipynb", status="ok", metrics={"acc": 0.5},
                                           duration_s=3.0, parameters={"profile": "cpu"}),
                             NotebookEntry("01_producer", str(producer), status="failed",
                                           error={"ename": "RuntimeError", "evalue": "x"},
                                           parameters={"profile": "cpu", "n": 4}),
                             NotebookEntry("02_consumer", str(consumer), status="skipped",
                                           skip_reason="dependency 01_producer failed", depends_on=["01_producer"],
                                           parameters={"profile": "cpu"}),
                         ])
    write_summary(summary)
    assert main(["report", "--rerun-failed", str(run), "--profile", "gpu"]) == 2  # the run's profile is kept
    assert "drop profile" in capsys.readouterr().err
    assert main(["report", "--rerun-failed", str(run), "-q"]) == 0
    after = load_summary(run)
    by = {e.name: e for e in after.entries}
    assert [e.name for e in after.entries] == ["00_fine", "01_producer", "02_consumer"]
    assert by["00_fine"].metrics == {"acc": 0.5} and by["00_fine"].duration_s == 3.0  # untouched
    assert by["01_producer"].status == "ok" and by["01_producer"].error is None
    assert by["01_producer"].metrics["artifacts_root"] == str(artifacts)
    assert by["02_consumer"].status == "ok" and by["02_consumer"].skip_reason is None
    assert by["02_consumer"].metrics == {"read_back": 4, "profile_seen": "cpu"}
    assert by["01_producer"].reruns == 1 and by["00_fine"].reruns == 0
    assert after.reruns[0]["notebooks"] == ["01_producer", "02_consumer"] and after.finished
    assert not (run / "01_producer.html").exists()  # the run's own html=False is reused
    assert "**rerun**" in (run / "summary.md").read_text()
    assert (tmp_path / "reports" / "README.md").exists()
    assert [p for p in run.iterdir() if ".tmp" in p.name] == []
    assert main(["report", "--rerun-failed", str(run), "-q"]) == 0  # nothing left to rerun
    assert len(load_summary(run).reruns) == 1
    assert main(["report", "--rerun-failed", str(tmp_path / "nope")]) == 2
    # --rerun: a notebook that passed runs again (its dependents do not), and the rerun is recorded
    capsys.readouterr()
    assert main(["report", "--rerun", str(run), "-q"]) == 2
    assert "needs the notebooks" in capsys.readouterr().err
    assert main(["report", "--rerun", str(run), "07", "-q"]) == 2
    assert "'07' is not in this run" in capsys.readouterr().err
    assert main(["report", "--rerun-failed", str(run), "01", "-q"]) == 2
    assert "use --rerun RUN_DIR NOTEBOOK" in capsys.readouterr().err
    assert main(["report", "--rerun", str(run), "01_prod", "-q"]) == 0
    again = load_summary(run)
    by = {e.name: e for e in again.entries}
    assert by["01_producer"].reruns == 2 and by["02_consumer"].reruns == 1 and by["01_producer"].status == "ok"
    assert again.reruns[-1]["notebooks"] == ["01_producer"] and len(again.reruns) == 2


# --- ordering rules, on notebooks that never run --------------------------------------------------------


@pytest.fixture()
def graph_nbs(tmp_path) -> Path:
    make_notebook(tmp_path / "00_a.ipynb")
    make_notebook(tmp_path / "01_b.ipynb", depends_on=["03_d"])
    make_notebook(tmp_path / "02_c.ipynb", depends_on=["01_b", "00_a"])
    make_notebook(tmp_path / "03_d.ipynb")
    make_notebook(tmp_path / "07_bench.ipynb", group="benchmark")
    return tmp_path


def test_plan_adds_and_orders(graph_nbs):
    available = sorted(graph_nbs.glob("*.ipynb"))
    pick = [graph_nbs / "02_c.ipynb"]
    paths, added, graph = plan_batch(pick, available)
    assert [p.stem for p in paths] == ["00_a", "03_d", "01_b", "02_c"]  # name order where free
    assert added == ["00_a", "01_b", "03_d"]
    paths, added, _ = plan_batch(pick, available, add_dependencies=False)  # --no-deps
    assert [p.stem for p in paths] == ["02_c"] and added == []
    every, _, _ = plan_batch(available, available)
    assert [p.stem for p in every] == ["00_a", "03_d", "01_b", "02_c", "07_bench"]


def test_topological_order_is_stable_and_finds_cycles():
    assert topological_order(["b", "a", "c"], {}) == ["a", "b", "c"]
    assert topological_order(["a", "b", "c"], {"a": ["c"], "b": ["zz"]}) == ["b", "c", "a"]  # zz: outside
    with pytest.raises(ConfigError, match=r"cycle: a -> b -> c -> a"):
        topological_order(["a", "b", "c", "d"], {"a": ["b"], "b": ["c"], "c": ["a"], "d": []})


def test_bad_dependencies_are_config_errors(tmp_path):
    make_notebook(tmp_path / "00_x.ipynb", depends_on=["05_missing"])
    make_notebook(tmp_path / "01_y.ipynb", depends_on=["02_z"])
    make_notebook(tmp_path / "02_z.ipynb", depends_on=["01_y"])
    make_notebook(tmp_path / "03_self.ipynb", depends_on=["03_self"])
    make_notebook(tmp_path / "04_typo.ipynb", depends=["00_x"])
    make_notebook(tmp_path / "05_group.ipynb", group="bench")
    with pytest.raises(ConfigError, match=r"'00_x' depends on '05_missing', which is not a notebook here"):
        run_reports(["00_x"], profile="smoke", reports_dir=tmp_path / "r", notebooks_dir=tmp_path)
    with pytest.raises(ConfigError, match="cycle"):
        run_reports(["01"], profile="smoke", reports_dir=tmp_path / "r", notebooks_dir=tmp_path)
    with pytest.raises(ConfigError, match="depends on itself"):
        run_reports(["03"], profile="smoke", reports_dir=tmp_path / "r", notebooks_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['depends'\]"):
        notebook_meta(tmp_path / "04_typo.ipynb")
    with pytest.raises(ConfigError, match="group='bench'"):
        notebook_meta(tmp_path / "05_group.ipynb")
    assert not (tmp_path / "r").exists()  # nothing was created


def test_course_and_all(graph_nbs, tmp_path):
    assert "07_bench" not in [p.stem for p in default_selection(graph_nbs)]
    assert [p.stem for p in default_selection(graph_nbs, all_notebooks=True)][-1] == "07_bench"
    with pytest.raises(ConfigError, match="not both"):
        run_reports(["00"], all_notebooks=True, notebooks_dir=graph_nbs, reports_dir=tmp_path / "r")
    only = tmp_path / "only"
    make_notebook(only / "07_b.ipynb", group="benchmark")
    with pytest.raises(ConfigError, match="use --all"):
        default_selection(only)


def test_artifacts_dir_inside_reports_is_refused(graph_nbs, tmp_path):
    with pytest.raises(ConfigError, match="inside the reports folder"):
        run_reports(["00"], profile="smoke", reports_dir=tmp_path / "r", notebooks_dir=graph_nbs,
                    artifacts_dir=tmp_path / "r" / "ckpt")
