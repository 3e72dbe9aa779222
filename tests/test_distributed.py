"""facekit.train.distributed: two gloo processes on the CPU train to the weights of one process on the same
global batch; rank 0 alone writes the checkpoint and a resumed DDP run continues exactly.

The model has no BatchNorm on purpose: with BatchNorm each replica normalises with the statistics of its own
half of the batch (8 samples instead of 16), so the two runs would legitimately differ; SyncBatchNorm, which
would make them agree, runs only on GPUs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from facekit.config import ConfigError
from facekit.train.distributed import DistInfo, distributed_loader, fit_distributed

WORLD = 2
GLOBAL_BATCH = 16
CONFIG = dict(lr=0.05, optimizer="adam", batch_size=GLOBAL_BATCH, seed=3, progress=False, device="cpu")


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()  # 3 classes
    return TensorDataset(x, y)


def model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.0), nn.Linear(16, 3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    from facekit.train.distributed import cleanup_distributed, init_distributed

    info = init_distributed("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout_s=60)
    assert info == DistInfo(rank, WORLD, 0)
    try:
        ckpt = Path(out) / "run.pt"
        two = model()
        hist = fit_distributed(two, data(), data(), epochs=2, checkpoint=str(ckpt), **CONFIG)
        torch.save({"state": two.state_dict(), "records": hist.records, "ckpt_exists": ckpt.exists()},
                   Path(out) / f"two_epochs_rank{rank}.pt")
        resumed = model()  # a fresh model: everything comes back from rank 0's checkpoint
        fit_distributed(resumed, data(), epochs=3, checkpoint=str(ckpt), **CONFIG)
        torch.save(resumed.state_dict(), Path(out) / f"resumed_rank{rank}.pt")
    finally:
        cleanup_distributed()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out


def _assert_close(a: dict, b: dict, atol=2e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-5, msg=lambda m: f"{k}: {m}")


def test_two_processes_match_one_process_on_the_same_global_batch(ddp_run):
    one = model()
    hist = fit_distributed(one, data(), data(), epochs=2, **CONFIG)  # no group: one process, the same sampler
    r0 = torch.load(ddp_run / "two_epochs_rank0.pt", weights_only=True)
    r1 = torch.load(ddp_run / "two_epochs_rank1.pt", weights_only=True)
    _assert_close(r0["state"], one.state_dict())
    _assert_close(r1["state"], r0["state"], atol=0)  # DDP keeps the replicas identical
    for a, b, c in zip(r0["records"], r1["records"], hist.records):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(c[key], abs=1e-5), key  # averaged over ranks = the whole epoch
            assert a[key] == b[key]
    changed = max((v - model().state_dict()[k]).abs().max().item() for k, v in one.state_dict().items())
    assert changed > 1e-2  # it did train


def test_the_check_can_fail_half_the_batch_is_another_result(ddp_run):
    """One process on the per-rank batch (8) is not what two processes compute: the test above is not vacuous."""
    half = model()
    fit_distributed(half, data(), epochs=2, **{**CONFIG, "batch_size": GLOBAL_BATCH // WORLD})
    r0 = torch.load(ddp_run / "two_epochs_rank0.pt", weights_only=True)
    diff = max((half.state_dict()[k] - v).abs().max().item() for k, v in r0["state"].items())
    assert diff > 1e-3


def test_rank0_checkpoint_and_resume(ddp_run, tmp_path):
    r0 = torch.load(ddp_run / "two_epochs_rank0.pt", weights_only=True)
    assert r0["ckpt_exists"]
    assert sorted(p.name for p in ddp_run.glob("*.pt*") if "run" in p.name) == ["run.pt"]  # no per-rank files
    one = model()
    fit_distributed(one, data(), epochs=3, **CONFIG)  # three epochs in one go
    for rank in range(WORLD):
        _assert_close(torch.load(ddp_run / f"resumed_rank{rank}.pt", weights_only=True), one.state_dict())


def test_loader_splits_the_global_batch():
    ds = data()
    shards = [distributed_loader(ds, GLOBAL_BATCH, info=DistInfo(r, WORLD, 0), seed=5) for r in range(WORLD)]
    whole = distributed_loader(ds, GLOBAL_BATCH, info=DistInfo(0, 1, 0), seed=5)
    for loader in (*shards, whole):
        loader.sampler.set_epoch(2)
    for (x0, _), (x1, _), (x, _) in zip(*shards, whole):
        assert x0.shape[0] == x1.shape[0] == GLOBAL_BATCH // WORLD
        rows = {tuple(r.tolist()) for r in x}
        assert {tuple(r.tolist()) for r in torch.cat([x0, x1])} == rows  # same samples in the global step
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        distributed_loader(ds, 15, info=DistInfo(0, 2, 0))


def test_no_process_group_is_joined_by_one_process(monkeypatch):
    from facekit.train.distributed import default_backend, init_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == DistInfo(0, 1, 0)
    assert not torch.distributed.is_initialized()
    assert default_backend("cpu") == "gloo" and default_backend("cuda:0") == "nccl"
