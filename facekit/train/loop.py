"""`fit`: the one training loop of the course.

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> x = torch.randn(256, 2); y = (x[:, 0] > 0).long()
>>> hist = fit(torch.nn.Linear(2, 2), TensorDataset(x, y), epochs=10, lr=0.1, batch_size=16, progress=False)
>>> hist.records[-1]["train_accuracy"] > 0.8
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from facekit.config import choice, make_config
from facekit.train.callbacks import Callback
from facekit.train.checkpoint import load_checkpoint, save_checkpoint
from facekit.device import resolve_device
from facekit.train.seed import epoch_seed, seed_everything

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine")
AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # passes over the training data
    batch_size: int = 64  # used when fit builds the loaders from datasets
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    optimizer: str = "adam"  # one of OPTIMIZERS
    momentum: float = 0.9  # sgd only
    scheduler: str = "none"  # one of SCHEDULERS; cosine decays to 0 over `epochs`
    warmup_epochs: int = 0  # linear warm-up before the schedule
    grad_clip: float | None = None  # max global gradient norm, None = off
    seed: int = 0  # the same seed gives the same numbers on the CPU
    device: str = "auto"  # 'auto', 'cpu', 'cuda', 'cuda:1', ...
    amp: str = "auto"  # 'auto' = bf16 (or fp16 + scaler) on CUDA, off elsewhere
    num_workers: int = 0  # DataLoader workers when fit builds the loaders
    checkpoint: str | None = None  # file written after every epoch; resumed from if present
    resume: bool = True  # continue from `checkpoint` when it exists
    progress: bool = True  # a tqdm bar over epochs and one line of metrics per epoch


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy of (B, K) logits against (B,) labels."""
    return (outputs.argmax(dim=1) == targets).float().mean().item()


@dataclass
class History:
    """One dict per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``train_<metric>``, ..., ``lr``, ``time_s``.

    ``stopped_epoch`` is the last epoch run when a callback (early stopping) ended training before
    ``config.epochs``, else None. ``time_to`` reads the time to reach a target from the records.

    >>> h = History([{"epoch": 1, "val_acc": 0.5, "time_s": 2.0}, {"epoch": 2, "val_acc": 0.8, "time_s": 3.0}])
    >>> h.time_to("val_acc", 0.7)
    (2, 5.0)
    """

    records: list[dict] = field(default_factory=list)
    stopped_epoch: int | None = None

    def first(self, key: str, target: float, mode: str = "max") -> dict | None:
        """The first record whose `key` reaches `target` (>= for mode 'max', <= for 'min'), or None."""
        choice(mode, ("min", "max"), name="mode")
        for r in self.records:
            if key in r and r[key] is not None and (r[key] >= target if mode == "max" else r[key] <= target):
                return r
        return None

    def time_to(self, key: str, target: float, mode: str = "max") -> tuple[int, float] | None:
        """(epochs, seconds) until `key` first reaches `target`: the 1-based epoch and the summed ``time_s``
        of the epochs up to it; None when it never does."""
        hit = self.first(key, target, mode)
        if hit is None:
            return None
        seconds = sum(r.get("time_s", 0.0) for r in self.records if r["epoch"] <= hit["epoch"])
        return hit["epoch"], seconds

    def total_time(self) -> float:
        """Seconds of all epochs (the sum of ``time_s``)."""
        return sum(r.get("time_s", 0.0) for r in self.records)

    def __getitem__(self, key: str) -> list:
        return [r.get(key) for r in self.records]

    def last(self, key: str):
        return self.records[-1][key]

    def best(self, key: str, mode: str = "max") -> dict:
        pick = max if mode == "max" else min
        return pick((r for r in self.records if key in r), key=lambda r: r[key])


@dataclass
class FitState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    config: TrainConfig
    device: torch.device
    epoch: int = 0
    stop: bool = False


def _default_forward(model: nn.Module, batch, device):
    x, y = batch[0], batch[1]
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    return model(x), y


def _autocast(device: torch.device, amp: str):
    """(context manager, GradScaler or None) for the requested mixed precision."""
    mode = amp
    if amp == "auto":
        if device.type != "cuda":
            mode = "off"
        else:
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), scaler


def _loader(data, config: TrainConfig, *, shuffle: bool, epoch: int, device: torch.device):
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset):
        raise TypeError(f"expected a torch Dataset or DataLoader, got {type(data).__name__}")
    gen = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
    sampler = RandomSampler(data, generator=gen) if shuffle else None
    return DataLoader(data, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def _check_groups(model: nn.Module, param_groups: Sequence[Mapping]) -> list[dict]:
    """Copies of `param_groups` (each with ``params`` and an optional ``lr_scale``), checked against `model`."""
    owned = {id(p) for p in model.parameters()}
    groups, seen = [], set()
    for i, g in enumerate(param_groups):
        if not isinstance(g, Mapping) or "params" not in g:
            raise ValueError(f"param_groups[{i}] must be a dict with 'params' (see facekit.train.param_groups)")
        g = dict(g)
        g["params"] = [p for p in g["params"] if p.requires_grad]
        for p in g["params"]:
            if id(p) not in owned:
                raise ValueError(f"param_groups[{i}] ({g.get('name', 'unnamed')}) holds a parameter that is not "
                                 f"in the model being trained")
            if id(p) in seen:
                raise ValueError(f"param_groups[{i}] ({g.get('name', 'unnamed')}) repeats a parameter of an "
                                 f"earlier group")
            seen.add(id(p))
        g.setdefault("lr_scale", 1.0)
        if g["params"]:
            groups.append(g)
    if not groups:
        raise ValueError("param_groups holds no trainable parameter")
    return groups


def _make_optimizer(model: nn.Module, config: TrainConfig,
                    param_groups: Sequence[Mapping] | None = None) -> torch.optim.Optimizer:
    params = ([p for p in model.parameters() if p.requires_grad] if param_groups is None
              else _check_groups(model, param_groups))
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate of `epoch` (0-based): linear warm-up, then constant or cosine."""
    import math

    if epoch < config.warmup_epochs:
        return config.lr * (epoch + 1) / (config.warmup_epochs + 1)
    if config.scheduler == "cosine":
        span = max(1, config.epochs - config.warmup_epochs)
        return 0.5 * config.lr * (1 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))
    return config.lr


@torch.no_grad()
def evaluate(model: nn.Module, data, *, loss_fn=None, metrics: Mapping[str, Callable] | None = None,
             device="auto", batch_size: int = 256, forward: Callable | None = None, amp: str = "off") -> dict:
    """Mean loss and metrics of `model` on `data` (a Dataset or DataLoader), weighted by batch size."""
    device = resolve_device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    metrics = {"accuracy": accuracy} if metrics is None else metrics
    forward = forward or _default_forward
    cfg = TrainConfig(batch_size=batch_size)
    autocast, _ = _autocast(device, amp)
    totals, n = {}, 0
    for batch in _loader(data, cfg, shuffle=False, epoch=0, device=device):
        with autocast():
            out, y = forward(model, batch, device)
            loss = loss_fn(out, y)
        b = y.shape[0]
        n += b
        totals["loss"] = totals.get("loss", 0.0) + loss.item() * b
        for name, fn in metrics.items():
            totals[name] = totals.get(name, 0.0) + fn(out.float(), y) * b
    model.train(was_training)
    return {k: v / max(n, 1) for k, v in totals.items()}


@torch.no_grad()
def predict(model: nn.Module, data, *, device="auto", batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) outputs and (N,) targets of `model` over `data`, on the CPU."""
    device = resolve_device(device)
    model = model.to(device).eval()
    outs, ys = [], []
    for x, y, *_ in _loader(data, TrainConfig(batch_size=batch_size), shuffle=False, epoch=0, device=device):
        outs.append(model(x.to(device)).float().cpu())
        ys.append(y)
    return torch.cat(outs), torch.cat(ys)


def fit(model: nn.Module, train, val=None, *, config: TrainConfig | Mapping | None = None,
        loss_fn: Callable | None = None, metrics: Mapping[str, Callable] | None = None,
        callbacks: Sequence[Callback] = (), forward: Callable | None = None,
        param_groups: Sequence[Mapping] | None = None, **overrides) -> History:
    """Train `model` on `train` (Dataset or DataLoader); evaluate on `val` after each epoch.

    Args:
        model: the network; moved to the chosen device.
        train, val: datasets of ``(input, target)`` or ready DataLoaders. With datasets, fit
            shuffles with a generator seeded from (seed, epoch), so a resumed run is identical.
        config: a :class:`TrainConfig` or mapping; keyword `overrides` replace its fields
            (a mistyped key is an error naming it).
        loss_fn: ``loss_fn(outputs, targets)``; cross-entropy by default.
        metrics: name -> ``fn(outputs, targets) -> float``; top-1 accuracy by default.
        callbacks: :class:`Callback` objects (early stopping, plots).
        forward: ``forward(model, batch, device) -> (outputs, targets)`` for batches that are
            not ``(x, y)``.
        param_groups: optimizer groups, dicts with ``params`` and ``lr_scale`` (the group's learning
            rate is ``lr(epoch) * lr_scale``, warm-up and schedule included), e.g. from
            :func:`facekit.train.param_groups`; None = every trainable parameter at ``lr``. Parameters
            left out of every group are not trained.

    Returns:
        The :class:`History`, one record per epoch.
    """
    base = config if isinstance(config, TrainConfig) else make_config(TrainConfig, config or {})
    config = make_config(TrainConfig, dataclasses.asdict(base), **overrides)
    choice(config.optimizer, OPTIMIZERS, name="optimizer")
    choice(config.scheduler, SCHEDULERS, name="scheduler")
    choice(config.amp, AMP_MODES, name="amp")
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model.to(device)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    metrics = {"accuracy": accuracy} if metrics is None else dict(metrics)
    forward = forward or _default_forward
    optimizer = _make_optimizer(model, config, param_groups)
    autocast, scaler = _autocast(device, config.amp)
    state = FitState(model, optimizer, History(), config, device)
    start_epoch = 0
    if config.checkpoint and config.resume and Path(config.checkpoint).exists():
        ckpt = load_checkpoint(config.checkpoint, map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        state.history.records = list(ckpt["history"])
        for cb, cb_state in zip(callbacks, ckpt.get("callbacks", [])):
            cb.load_state_dict(cb_state)
        start_epoch = ckpt["epoch"] + 1
        state.stop = bool(ckpt.get("stopped", False))
    for cb in callbacks:
        cb.on_fit_start(state)

    from facekit.progress import tqdm

    epochs = tqdm(range(start_epoch, config.epochs), desc="fit", unit="epoch", initial=start_epoch,
                  total=config.epochs, disable=not config.progress, mininterval=1.0)
    for epoch in epochs:
        if state.stop:
            break
        state.epoch = epoch
        torch.manual_seed(epoch_seed(config.seed, epoch))  # dropout, augmentation: same draws on resume
        lr = _lr_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        model.train()
        t0 = time.perf_counter()
        totals, n = {}, 0
        loader = _loader(train, config, shuffle=True, epoch=epoch, device=device)
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out, y = forward(model, batch, device)
                loss = loss_fn(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}; lower lr={config.lr}?")
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            b = y.shape[0]
            n += b
            totals["loss"] = totals.get("loss", 0.0) + loss.item() * b
            with torch.no_grad():
                for name, fn in metrics.items():
                    totals[name] = totals.get(name, 0.0) + fn(out.detach().float(), y) * b
        record = {"epoch": epoch + 1, "lr": lr}
        record.update({f"train_{k}": v / max(n, 1) for k, v in totals.items()})
        if val is not None:
            val_logs = evaluate(model, val, loss_fn=loss_fn, metrics=metrics, device=device,
                                batch_size=config.batch_size, forward=forward, amp=config.amp)
            record.update({f"val_{k}": v for k, v in val_logs.items()})
        record["time_s"] = time.perf_counter() - t0
        state.history.records.append(record)
        for cb in callbacks:
            cb.on_epoch_end(state)
        if config.progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "lr", "time_s"))
            epochs.write(f"epoch {epoch + 1:>3}/{config.epochs}: {shown} ({record['time_s']:.1f}s)")
        if config.checkpoint:
            save_checkpoint(config.checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch, "history": state.history.records, "stopped": state.stop,
                "callbacks": [cb.state_dict() for cb in callbacks],
                "config": dataclasses.asdict(config),
            })
    epochs.close()
    if state.stop and state.history.records and state.history.records[-1]["epoch"] < config.epochs:
        state.history.stopped_epoch = state.history.records[-1]["epoch"]
    for cb in callbacks:
        cb.on_fit_end(state)
    return state.history
