"""facekit compare, the summary's metrics table and plots, the device record, the runs index: on fabricated
report folders (no notebook runs)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from facekit.cli import main
from facekit.config import ConfigError
from facekit.reports.compare import compare_runs, compare_values, metric_direction
from facekit.reports.index import update_index
from facekit.reports.summary import MARKER, NotebookEntry, RunSummary, load_summary, write_summary

CPU = {"cpu": "AMD EPYC", "cpu_cores": 2, "torch": "2.11.0", "python": "3.11", "platform": "Linux"}
H100 = {**CPU, "gpu": "NVIDIA H100 80GB HBM3", "gpu_memory_gib": 79.1, "cuda_version": "12.8",
        "driver_version": "570.86", "gpu_count": 1}


def fabricate(root: Path, name: str, entries: list[NotebookEntry], *, profile="cpu", device=None,
              started="2026-01-01T00:00:00+00:00", **extra) -> Path:
    run = root / name
    run.mkdir(parents=True)
    write_summary(RunSummary(run_dir=run, name=name, profile=profile, device=device or CPU, started=started,
                             git={"commit": "abc1234", "dirty": False}, entries=entries, **extra))
    return run


def bench(status="ok", **metrics) -> NotebookEntry:
    units = {"train_throughput": "img/s", "latency_p50": "ms", "peak_memory": "GiB"}
    return NotebookEntry("07_bench", "n/07.ipynb", status=status, duration_s=100.0, metrics=metrics,
                         units={k: u for k, u in units.items() if k in metrics})


@pytest.fixture()
def runs(tmp_path):
    a = fabricate(tmp_path, "a", [
        NotebookEntry("01_cnn", "n/01.ipynb", status="ok", duration_s=60.0,
                      metrics={"val_accuracy": 0.90, "eer": 0.10, "n_pairs": 600, "backend": "gloo", "gone": 1.0}),
        bench(train_throughput=1000.0, latency_p50=2.0, peak_memory=4.0),
        NotebookEntry("04_losses", "n/04.ipynb", status="ok", duration_s=30.0, metrics={"auc": 0.95}),
    ])
    b = fabricate(tmp_path, "b", [
        NotebookEntry("01_cnn", "n/01.ipynb", status="ok", duration_s=90.0,
                      metrics={"val_accuracy": 0.91, "eer": 0.13, "n_pairs": 700, "backend": "nccl", "new": 2}),
        bench(train_throughput=900.0, latency_p50=2.05, peak_memory=4.0),
        NotebookEntry("04_losses", "n/04.ipynb", status="failed", duration_s=3.0, metrics={}),
    ], profile="gpu", device=H100, device_slug="h100", started="2026-02-01T00:00:00+00:00")
    return a, b


def test_direction_from_unit_then_name():
    assert metric_direction("anything", "img/s") == "higher"
    assert metric_direction("anything", "TFLOP/s") == "higher"
    assert metric_direction("step", "ms") == "lower" and metric_direction("peak", "GiB") == "lower"
    assert metric_direction("val_accuracy", "%") == "higher"  # '%' says nothing: the name does
    assert metric_direction("tar_at_far_1e-3", None) == "higher"
    assert metric_direction("heldout_error", None) == "lower"
    assert metric_direction("n_identities", None) is None
    assert metric_direction("vit_train_images_per_s", None) == "higher"
    assert metric_direction("real_ap50_ours", None) == metric_direction("mse_one_face_iou", None) == "higher"
    assert metric_direction("n_identities", None, higher=["n_identities"]) == "higher"
    assert metric_direction("latency_ms", "ms", higher=["latency_ms"]) == "higher"  # the caller wins


def test_compare_values_by_hand():
    assert compare_values(1000.0, 900.0, direction="higher", tolerance=0.05) == (0.9, -0.1, "regression")
    assert compare_values(1000.0, 960.0, direction="higher", tolerance=0.05)[2] == ""  # within tolerance
    assert compare_values(2.0, 3.0, direction="lower", tolerance=0.05) == (1.5, 0.5, "regression")
    assert compare_values(2.0, 1.0, direction="lower", tolerance=0.05) == (0.5, -0.5, "improved")
    assert compare_values(5, 7, direction=None, tolerance=0.05)[2] == "changed"
    assert compare_values(0.0, 0.2, direction="lower", tolerance=0.05) == (None, None, "regression")  # no scale
    assert compare_values(0.0, 0.01, direction="lower", tolerance=0.05) == (None, None, "")
    assert compare_values("a", "b", direction=None, tolerance=0.05) == (None, None, "changed")
    assert compare_values(True, True, direction=None, tolerance=0.05) == (None, None, "")
    assert compare_values(math.nan, 1.0, direction="higher", tolerance=0.05)[2] == "changed"


def test_compare_runs_metric_by_metric(runs):
    a, b = runs
    c = compare_runs(a, b, tolerance=0.05)
    rows = {(r.notebook, r.metric): r for r in c.rows}
    acc = rows["01_cnn", "val_accuracy"]
    assert (acc.a, acc.b, acc.flag) == (0.90, 0.91, "")
    assert acc.ratio == pytest.approx(0.91 / 0.90) and acc.change == pytest.approx(0.01 / 0.90)
    assert rows["01_cnn", "eer"].flag == "regression"  # +30 %, lower is better
    assert rows["01_cnn", "n_pairs"].flag == "changed" and rows["01_cnn", "n_pairs"].direction is None
    assert rows["01_cnn", "backend"].flag == "changed"
    assert rows["01_cnn", "gone"].flag == "only in A" and rows["01_cnn", "new"].flag == "only in B"
    assert rows["07_bench", "train_throughput"].flag == "regression"  # -10 % img/s
    assert rows["07_bench", "latency_p50"].flag == ""  # +2.5 % ms: within 5 %
    assert rows["07_bench", "peak_memory"].change == 0.0
    assert rows["04_losses", "auc"].flag == "only in A"
    assert {r.metric for r in c.regressions} == {"eer", "train_throughput"}
    assert c.status_regressions == ["04_losses"] and c.has_regression
    assert any("different profiles" in n for n in c.notes) and any("different devices" in n for n in c.notes)
    assert not any(r.metric == "(duration)" for r in c.rows)
    timed = compare_runs(a, b, include_durations=True)
    assert {(r.notebook, r.flag) for r in timed.rows if r.metric == "(duration)"} == {
        ("01_cnn", "regression"), ("07_bench", ""), ("04_losses", "improved")}
    loose = compare_runs(a, b, tolerance=0.5)
    assert loose.regressions == []  # only the notebook that stopped passing is left
    md = c.to_markdown()
    assert "| 07_bench | train_throughput ↑ | img/s | 1000 | 900 | 0.9 | -10.0% | **regression** |" in md
    assert "| 04_losses | ok | failed | **regression** |" in md
    assert "NVIDIA H100" in md


def test_compare_same_run_has_no_regression(runs):
    a, _ = runs
    c = compare_runs(a, a)
    assert not c.has_regression and not c.notes and all(r.flag == "" for r in c.rows)


def test_compare_cli_exit_codes_and_output(runs, tmp_path, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b)]) == 0  # regressions reported, not fatal by default
    out = capsys.readouterr()
    assert out.out.startswith("# Comparison: `a` (A) vs `b` (B)") and "3 regression(s)" in out.err
    report = tmp_path / "out" / "cmp.md"
    assert main(["compare", str(a), str(b), "--fail-on-regression", "--output", str(report)]) == 1
    assert report.read_text() == capsys.readouterr().out
    assert main(["compare", str(a), str(a), "--fail-on-regression"]) == 0
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "no summary.json" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--tolerance", "-1"]) == 2
    assert main(["compare", str(a)]) == 2  # argparse usage error


def test_metrics_table_and_plots(tmp_path):
    pytest.importorskip("seaborn")
    from facekit.reports.plots import numeric_metrics, write_plots

    run = fabricate(tmp_path, "p", [
        NotebookEntry("00_a", "a", status="ok", duration_s=12.5,
                      metrics={"acc": 0.9, "imgs": 5000, "flag": True, "label": "x", "bad": math.nan},
                      units={"imgs": "img/s"}),
        NotebookEntry("01_b", "b", status="failed", duration_s=2.0, metrics={"loss": 1.5}),
        NotebookEntry("02_c", "c", status="skipped", skip_reason="dependency 01_b failed"),
    ])
    s = load_summary(run)
    rows = numeric_metrics(s)
    assert [(r["notebook"], r["metric"]) for r in rows] == [("00_a", "acc"), ("00_a", "imgs [img/s]"),
                                                            ("01_b", "loss")]
    s.plots = write_plots(s)
    assert s.plots == ["durations.png", "metrics.png"]
    for name in s.plots:
        data = (run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    write_summary(s)
    md = (run / "summary.md").read_text()
    assert "| 00_a | imgs | 5000 | img/s |" in md and "![durations](durations.png)" in md
    assert "skipped (dependency 01_b failed)" in md
    empty = fabricate(tmp_path, "e", [NotebookEntry("00_a", "a")])
    assert write_plots(load_summary(empty)) == []  # nothing ran: no plot, no error
    assert [p for p in run.iterdir() if ".tmp" in p.name] == []


def test_index_lists_device_profile_commit_and_status(runs, tmp_path):
    (tmp_path / "README.md").write_text(f"# Mine\n\nkeep me\n\n{MARKER}\n\nold\n")
    text = update_index(tmp_path).read_text()
    head, table = text.split(MARKER)
    assert "keep me" in head and "old" not in table
    assert table.index("| b |") < table.index("| a |")  # newest first
    assert ("| b | 2026-02-01 00:00 | gpu | h100: NVIDIA H100 80GB HBM3, 79.1 GiB | abc1234 | 01, 07, 04 | "
            "2 ok, 1 failed | [summary](b/summary.md) |") in table
    assert "| a | 2026-01-01 00:00 | cpu | cpu: CPU AMD EPYC, 2 cores | abc1234 |" in table
    assert "3 ok, 0 failed" in table


def test_device_info_records_driver_and_cuda_fields():
    from facekit.reports.device import device_info, driver_version

    info = device_info()
    assert {"driver_version", "cuda_version", "gpu", "gpu_memory_gib", "cpu", "torch", "gpus"} <= set(info)
    if not info["cuda_available"]:
        assert info["gpu"] is None and info["driver_version"] is None
    assert driver_version() is None or isinstance(driver_version(), str)


def test_summary_reads_old_summaries(tmp_path):
    """A summary.json written before skips, reruns and plots existed still loads."""
    import json

    run = tmp_path / "old"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"run": "old", "profile": "cpu", "notebooks": [
        {"name": "x", "source": "x", "status": "ok"}]}))
    s = load_summary(run)
    assert s.reruns == [] and s.entries[0].depends_on == [] and s.counts()["skipped"] == 0
    with pytest.raises(ConfigError):
        compare_runs(run, tmp_path / "nothing")


def test_summary_subcommand_redraws_a_run(runs, capsys):
    pytest.importorskip("seaborn")
    a, _ = runs
    assert main(["summary", str(a)]) == 0
    assert "a: summary.md, durations.png, metrics.png" in capsys.readouterr().out
    assert load_summary(a).plots == ["durations.png", "metrics.png"] and (a.parent / "README.md").exists()
    assert main(["summary", str(a.parent / "nope")]) == 2
