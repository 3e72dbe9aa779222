import time

import pytest
import torch
from torch import nn

from facekit.bench import inference_throughput, train_throughput
from facekit.train import History


class Sleepy(nn.Module):
    """Each forward pass takes at least `seconds`: throughput has a known ceiling."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.calls = 0
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        self.calls += 1
        time.sleep(self.seconds)
        return self.lin(x)


def test_inference_throughput_against_a_known_cost():
    model = Sleepy(0.01)
    model.train()
    ips = inference_throughput(model, torch.zeros(64, 4), batch_size=16, warmup_batches=2, repeats=2, device="cpu")
    assert model.calls == 2 + 2 * 4  # warm-up batches, then every batch once per repeat
    assert 0.4 * 1600 < ips <= 1600  # 4 forwards of >= 10 ms for 64 images
    assert model.training, "the train/eval mode is restored"


def test_inference_throughput_runs_without_gradients_in_eval_mode():
    seen = {}

    class Probe(nn.Module):
        def forward(self, x):
            seen["grad"], seen["training"] = torch.is_grad_enabled(), self.training
            return x

    inference_throughput(Probe(), torch.zeros(5, 3), batch_size=2, device="cpu")
    assert seen == {"grad": False, "training": False}


def test_inference_throughput_rejects_bad_arguments():
    with pytest.raises(ValueError, match="non-empty"):
        inference_throughput(nn.Identity(), torch.zeros(0, 3), device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        inference_throughput(nn.Identity(), torch.zeros(4, 3), batch_size=0, device="cpu")


def test_train_throughput():
    hist = History([{"epoch": 1, "time_s": 0.5}, {"epoch": 2, "time_s": 1.5}])
    assert train_throughput(hist, num_train=100) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no epochs"):
        train_throughput(History(), num_train=10)
