"""facekit.notebook: the one-call chapter setup, rendered prose and exercise checks."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

import facekit as fk
from facekit.notebook import ExerciseFailed, check, setup, sizes_table


@dataclass(frozen=True)
class Sizes:
    epochs: int
    batch: int


def test_setup_picks_the_profile_seeds_and_finds_data(tmp_path, capsys):
    ctx = setup("smoke", smoke=Sizes(1, 2), cpu=Sizes(3, 4), gpu=Sizes(5, 6), data_root=str(tmp_path), seed=7)
    assert ctx.profile == "smoke" and ctx.sizes == Sizes(1, 2)
    assert ctx.device.type == "cpu" or torch.cuda.is_available()
    assert ctx.found == {"lfw": None, "orl": None, "dlib": None} and not ctx.has("lfw")
    a = torch.rand(3)
    setup("smoke", smoke=Sizes(1, 2), cpu=Sizes(3, 4), gpu=Sizes(5, 6), data_root=str(tmp_path), seed=7, show=False)
    assert torch.equal(a, torch.rand(3)), "setup must seed torch"
    assert "profile=smoke" in capsys.readouterr().out
    assert ctx.elapsed() >= 0


def test_setup_rejects_an_unknown_profile():
    with pytest.raises(fk.config.ConfigError, match="profile='fast'"):
        setup("fast", smoke=Sizes(1, 2), cpu=Sizes(3, 4), gpu=Sizes(5, 6))


def test_sizes_table_marks_the_chosen_profile():
    table = sizes_table("gpu", smoke=Sizes(1, 2), cpu=Sizes(3, 4), gpu=Sizes(5, 6))
    assert list(table.index) == ["smoke", "cpu", "gpu ←"]
    assert table.loc["gpu ←", "batch"] == 6


def test_check_passes_close_values_and_names_the_expected_one(capsys):
    assert check("mean", torch.tensor([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]))
    assert "✓ mean" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match=r"expected 0\.5, got 0\.25"):
        check("auc", 0.25, 0.5)
    with pytest.raises(ExerciseFailed, match=r"shape \(3,\)"):
        check("shape", np.zeros(2), np.zeros(3))
    with pytest.raises(ExerciseFailed, match="no answer yet"):
        check("todo", None, 1.0)
    with pytest.raises(ExerciseFailed, match="'b'"):
        check("label", "a", "b")


def _summary(folder, profile, started, entries, **extra):
    import json

    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"profile": profile, "started": started, "notebooks": entries,
                                                     **extra}))


def test_committed_durations_keep_the_newest_ok_run_per_profile(tmp_path):
    from facekit.notebook import committed_durations, durations_sentence

    ok = {"name": "01_x", "status": "ok", "duration_s": 120.0}
    _summary(tmp_path / "a", "cpu", "2026-01-01", [ok])
    _summary(tmp_path / "b", "cpu", "2026-02-01", [{**ok, "duration_s": 300.0}])
    _summary(tmp_path / "c", "cpu", "2026-03-01", [{**ok, "status": "failed"}])
    _summary(tmp_path / "d", "smoke", "2026-03-01", [{**ok, "duration_s": 30.0}, {"name": "02_y", "status": "ok",
                                                                                  "duration_s": 9.0}])
    _summary(tmp_path / "e", "gpu", "2026-03-01", [ok], options={"max_steps": 2})
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "summary.json").write_text("{not json")
    found = committed_durations("01_x", tmp_path)
    assert found == {"cpu": (300.0, "b", "2026-02-01"), "smoke": (30.0, "d", "2026-03-01")}
    text = durations_sentence("01_x", tmp_path)
    assert text.index("**smoke** 0.5 min") < text.index("**cpu** 5.0 min (run `b`)")
    assert durations_sentence("03_z", tmp_path) == "No committed run of this chapter yet."
