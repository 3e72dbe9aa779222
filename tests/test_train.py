import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from facekit.config import ConfigError
from facekit.train import Callback, EarlyStopping, TrainConfig, evaluate, fit, load_checkpoint, predict, resolve_device


def blobs(n=240, k=3, d=8, seed=0):
    centers = torch.randn(k, d, generator=torch.Generator().manual_seed(1234)) * 3  # shared by every split
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = centers[y] + torch.randn(n, d, generator=g)
    return TensorDataset(x, y)


def mlp(seed=0, dropout=0.2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 3))


FAST = dict(batch_size=32, lr=1e-2, progress=False)


def test_fit_learns_a_tiny_problem():
    train, val = blobs(seed=0), blobs(seed=1)
    model = mlp()
    before = evaluate(model, val)["accuracy"]
    hist = fit(model, train, val, epochs=8, **FAST)
    assert len(hist.records) == 8
    assert hist.last("val_accuracy") > 0.9 > before
    assert hist.last("train_loss") < hist.records[0]["train_loss"]
    logits, y = predict(model, val)
    assert logits.shape == (240, 3) and (logits.argmax(1) == y).float().mean() > 0.9


def test_same_seed_same_numbers_on_cpu():
    runs = [fit(mlp(), blobs(), blobs(seed=1), epochs=3, seed=7, **FAST).records for _ in range(2)]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "time_s"} for r in recs]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])
    other = fit(mlp(), blobs(), blobs(seed=1), epochs=3, seed=8, **FAST).records
    assert strip(other) != strip(runs[0])


class Interrupt(Exception):
    pass


class CrashAfterEpoch(Callback):
    """Simulates a crash (power cut, killed job) once epoch `k` (1-based) is checkpointed."""

    def __init__(self, k):
        self.k = k

    def on_epoch_end(self, state):
        if state.epoch == self.k:  # 0-based: the end of epoch k+1, before its checkpoint; 1..k are saved
            raise Interrupt


def test_resume_equals_uninterrupted(tmp_path):
    ckpt = tmp_path / "run.pt"
    cfg = TrainConfig(epochs=6, scheduler="cosine", **FAST)
    full_model = mlp()
    full = fit(full_model, blobs(), blobs(seed=1), config=cfg)

    with pytest.raises(Interrupt):
        fit(mlp(), blobs(), blobs(seed=1), config=cfg, checkpoint=str(ckpt), callbacks=[CrashAfterEpoch(3)])
    assert load_checkpoint(ckpt)["epoch"] == 2  # epochs 1-3 (0-based 0-2) are on disk
    resumed_model = mlp(seed=123)  # a fresh process starts from other weights: the checkpoint restores all
    resumed = fit(resumed_model, blobs(), blobs(seed=1), config=cfg, checkpoint=str(ckpt))
    assert [r["epoch"] for r in resumed.records] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(full.records, resumed.records):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    for p, q in zip(full_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_checkpoint_is_atomic_and_weights_only(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(mlp(), blobs(), epochs=2, checkpoint=str(ckpt), **FAST)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary files left
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1 and len(state["history"]) == 2
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="c.pt"):
        load_checkpoint(ckpt)


def test_early_stopping_restores_best():
    # Pure noise labels: validation loss stops improving quickly.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    train = TensorDataset(x, torch.randint(0, 3, (200,), generator=g))
    val = TensorDataset(torch.randn(200, 8, generator=g), torch.randint(0, 3, (200,), generator=g))
    stopper = EarlyStopping(monitor="val_loss", patience=2)
    model = mlp(dropout=0.0)
    hist = fit(model, train, val, epochs=50, callbacks=[stopper], **FAST)
    assert stopper.stopped_epoch is not None and len(hist.records) < 50
    assert len(hist.records) == stopper.best_epoch + 2
    best_val = min(hist["val_loss"])
    assert evaluate(model, val)["loss"] == pytest.approx(best_val, rel=1e-5)


def test_typos_and_bad_choices_are_named():
    with pytest.raises(ConfigError, match="'lrr'.*did you mean 'lr'"):
        fit(mlp(), blobs(), epochs=1, lrr=0.1)
    with pytest.raises(ConfigError, match="optimizer='adagrad'"):
        fit(mlp(), blobs(), epochs=1, optimizer="adagrad", progress=False)
    with pytest.raises(ConfigError, match="device="):
        resolve_device("gpu0")
    with pytest.raises(TypeError, match="Dataset or DataLoader"):
        fit(mlp(), [1, 2, 3], epochs=1, progress=False)


def test_accepts_dataloader_and_sgd_and_warmup():
    loader = DataLoader(blobs(), batch_size=40, shuffle=True, generator=torch.Generator().manual_seed(0))
    hist = fit(mlp(), loader, epochs=4, optimizer="sgd", lr=0.1, warmup_epochs=2, progress=False)
    assert [round(r["lr"], 4) for r in hist.records] == [0.0333, 0.0667, 0.1, 0.1]


@pytest.mark.parametrize("amp", ["bf16", "off"])
def test_mixed_precision_path_runs_on_cpu(amp):
    # The GPU's autocast path, exercised on the CPU with bfloat16.
    hist = fit(mlp(), blobs(), blobs(seed=1), epochs=4, amp=amp, **FAST)
    assert hist.last("val_accuracy") > 0.85


def test_nan_loss_is_reported():
    with pytest.raises(FloatingPointError, match="lower lr"):
        fit(mlp(), blobs(), epochs=3, loss_fn=lambda out, y: out.sum() * float("nan"), progress=False)
