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
