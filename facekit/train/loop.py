"""`fit`: the one training loop of the course.

Every trainer in facekit runs through it: the chapters, DP-SGD (a callback wraps the model, optimiser
and data with Opacus, :class:`facekit.privacy.dp.MakePrivate`) and FedAvg's clients
(:func:`facekit.privacy.local_train`). The steps are small functions: :func:`_start` builds the state,
:func:`_resume` reads a checkpoint, :func:`_train_epoch` runs the optimiser steps of one epoch
(:func:`_train_step` each), :func:`_end_epoch` evaluates, logs, calls back and checkpoints.

>>> import torch
>>> from torch.utils.data import TensorDataset
>>> x = torch.randn(256, 2); y = (x[:, 0] > 0).long()
>>> hist = fit(torch.nn.Linear(2, 2), TensorDataset(x, y), epochs=10, lr=0.1, batch_size=16, progress=False)
>>> hist.records[-1]["train_accuracy"] > 0.8
True
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from facekit.config import make_config
from facekit.device import resolve_device
from facekit.profiles import max_steps
from facekit.train.batches import autocast_for, batch_size_of, default_forward, make_loader
from facekit.train.callbacks import Callback
from facekit.train.checkpoint import load_checkpoint, save_checkpoint
from facekit.train.config import AMP_MODES, TrainConfig
from facekit.train.evaluate import MeanMeter, accuracy, evaluate, predict
from facekit.train.optim import OPTIMIZERS, SCHEDULERS, check_param_groups, lr_at, make_optimizer
from facekit.train.seed import epoch_seed, seed_everything
from facekit.train.state import FitState, History

__all__ = ["fit", "TrainConfig", "History", "FitState", "accuracy", "evaluate", "predict", "OPTIMIZERS",
           "SCHEDULERS", "AMP_MODES"]


@dataclasses.dataclass
class _Run:
    """What one call of fit holds besides the callbacks' view (:class:`FitState`)."""

    state: FitState
    loss_fn: Callable
    metrics: Mapping[str, Callable]
    forward: Callable
    callbacks: Sequence[Callback]
    autocast: Callable
    scaler: torch.amp.GradScaler | None
    cap: int | None  # the dry-run cap: optimiser steps per epoch and epochs, None = no cap


def _lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate of `epoch` (0-based) under `config`: linear warm-up, then its schedule."""
    return lr_at(config.scheduler, config.lr, epoch, epochs=config.epochs, warmup_epochs=config.warmup_epochs)


def _make_optimizer(model: nn.Module, config: TrainConfig,
                    param_groups: Sequence[Mapping] | None = None) -> torch.optim.Optimizer:
    params = ([p for p in model.parameters() if p.requires_grad] if param_groups is None
              else check_param_groups(model, param_groups))
    return make_optimizer(config.optimizer, params, lr=config.lr, weight_decay=config.weight_decay,
                          momentum=config.momentum)


def _start(model, train, config, *, loss_fn, metrics, forward, callbacks, param_groups) -> _Run:
    """Seed, place the model, build the optimiser and the state of a new run."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model.to(device)
    optimizer = _make_optimizer(model, config, param_groups)
    autocast, scaler = autocast_for(device, config.amp)
    state = FitState(model, optimizer, History(), config, device, train=train)
    return _Run(state, loss_fn or nn.CrossEntropyLoss(), {"accuracy": accuracy} if metrics is None else dict(metrics),
                forward or default_forward, tuple(callbacks), autocast, scaler, max_steps())


def _resume(run: _Run) -> int:
    """Load ``config.checkpoint`` when asked and present; the 0-based epoch to start from."""
    state, config = run.state, run.state.config
    if not (config.checkpoint and config.resume and Path(config.checkpoint).exists()):
        return 0
    ckpt = load_checkpoint(config.checkpoint, map_location=state.device)
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    state.history.records = list(ckpt["history"])
    for cb, cb_state in zip(run.callbacks, ckpt.get("callbacks", [])):
        cb.load_state_dict(cb_state)
    state.stop = bool(ckpt.get("stopped", False))
    return ckpt["epoch"] + 1


def _train_step(run: _Run, batch, meter: MeanMeter) -> None:
    """One optimiser step on ``batch``: forward under autocast, backward (scaled), clip, step."""
    state = run.state
    model, optimizer, config = state.model, state.optimizer, state.config
    with run.autocast():
        out, y = run.forward(model, batch, state.device)
        loss = run.loss_fn(out, y)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at epoch {state.epoch + 1}; lower lr={config.lr}?")
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(optimizer)
    else:
        loss.backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    if run.scaler is not None:
        run.scaler.step(optimizer)
        run.scaler.update()
    else:
        optimizer.step()
    state.steps += 1
    state.last_loss = meter.add(loss, out, y)


def _train_epoch(run: _Run, lr: float) -> dict:
    """The optimiser steps of epoch ``state.epoch`` at learning rate ``lr``; the train_* means."""
    state, config = run.state, run.state.config
    torch.manual_seed(epoch_seed(config.seed, state.epoch))  # dropout, augmentation: same draws on resume
    for group in state.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    state.model.train()
    meter, taken = MeanMeter(run.metrics), 0
    batches = make_loader(state.train, batch_size=config.batch_size, shuffle=True, seed=config.seed,
                          epoch=state.epoch, num_workers=config.num_workers, device=state.device)
    for batch in batches:
        state.optimizer.zero_grad(set_to_none=True)
        if batch_size_of(batch) == 0:  # Poisson sampling (DP-SGD) can draw an empty batch: no step
            continue
        for cb in run.callbacks:
            cb.on_step_start(state)
        _train_step(run, batch, meter)
        for cb in run.callbacks:
            cb.on_step_end(state)
        taken += 1
        if run.cap is not None and taken >= run.cap:
            break
    return {f"train_{k}": v for k, v in meter.means().items()}


def _end_epoch(run: _Run, val, record: dict, t0: float, bar) -> None:
    """Evaluate on ``val``, append the record, call back, report and checkpoint."""
    state, config = run.state, run.state.config
    if val is not None:
        val_logs = evaluate(state.model, val, loss_fn=run.loss_fn, metrics=run.metrics, device=state.device,
                            batch_size=config.batch_size, forward=run.forward, amp=config.amp)
        record.update({f"val_{k}": v for k, v in val_logs.items()})
    record["time_s"] = time.perf_counter() - t0
    state.history.records.append(record)
    for cb in run.callbacks:
        cb.on_epoch_end(state)
    if config.progress:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("epoch", "lr", "time_s"))
        bar.write(f"epoch {state.epoch + 1:>3}/{config.epochs}: {shown} ({record['time_s']:.1f}s)")
    if config.checkpoint:
        save_checkpoint(config.checkpoint, {
            "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "epoch": state.epoch, "history": state.history.records, "stopped": state.stop,
            "callbacks": [cb.state_dict() for cb in run.callbacks],
            "config": dataclasses.asdict(config),
        })


def _epochs(run: _Run, start_epoch: int):
    """The epochs to run (at most the dry-run cap) as a tqdm bar."""
    from facekit.progress import tqdm

    config = run.state.config
    last = config.epochs if run.cap is None else min(config.epochs, run.cap)
    return tqdm(range(start_epoch, last), desc="fit", unit="epoch", initial=start_epoch, total=last,
                disable=not config.progress, mininterval=1.0)


def fit(model: nn.Module, train, val=None, *, config: TrainConfig | Mapping | None = None,
        loss_fn: Callable | None = None, metrics: Mapping[str, Callable] | None = None,
        callbacks: Sequence[Callback] = (), forward: Callable | None = None,
        param_groups: Sequence[Mapping] | None = None, **overrides) -> History:
    """Train `model` on `train`; evaluate on `val` after each epoch.

    Args:
        model: the network; moved to the chosen device.
        train, val: datasets of ``(input, target)`` or ready DataLoaders; ``train`` may also be a
            function ``epoch -> batches`` (0-based epoch) that sets each epoch's order itself. With
            datasets, fit shuffles with a generator seeded from (seed, epoch), so a resumed run is identical.
        config: a :class:`TrainConfig` or mapping; keyword `overrides` replace its fields
            (a mistyped key or a bad value is a ConfigError naming it).
        loss_fn: ``loss_fn(outputs, targets)``; cross-entropy by default.
        metrics: name -> ``fn(outputs, targets) -> float``; top-1 accuracy by default.
        callbacks: :class:`Callback` objects (early stopping, plots, DP-SGD's ``MakePrivate``).
        forward: ``forward(model, batch, device) -> (outputs, targets)`` for batches that are
            not ``(x, y)``.
        param_groups: optimizer groups, dicts with ``params`` and ``lr_scale`` (the group's learning
            rate is ``lr(epoch) * lr_scale``, warm-up and schedule included), e.g. from
            :func:`facekit.train.param_groups`; None = every trainable parameter at ``lr``. Parameters
            left out of every group are not trained.

    With ``$FACEKIT_MAX_STEPS`` set (:func:`facekit.profiles.max_steps`, a dry run), at most that many
    epochs run, each with at most that many optimiser steps, and evaluation reads at most that many batches.

    Returns:
        The :class:`History`, one record per epoch.
    """
    base = config if isinstance(config, TrainConfig) else make_config(TrainConfig, config or {})
    config = make_config(TrainConfig, dataclasses.asdict(base), **overrides)
    run = _start(model, train, config, loss_fn=loss_fn, metrics=metrics, forward=forward, callbacks=callbacks,
                 param_groups=param_groups)
    state = run.state
    start_epoch = _resume(run)
    for cb in run.callbacks:
        cb.on_fit_start(state)
    bar = _epochs(run, start_epoch)
    for epoch in bar:
        if state.stop:
            break
        state.epoch = epoch
        t0 = time.perf_counter()
        lr = _lr_at(config, epoch)
        record = {"epoch": epoch + 1, "lr": lr, **_train_epoch(run, lr)}
        _end_epoch(run, val, record, t0, bar)
    bar.close()
    if state.stop and state.history.records and state.history.records[-1]["epoch"] < config.epochs:
        state.history.stopped_epoch = state.history.records[-1]["epoch"]
    for cb in run.callbacks:
        cb.on_fit_end(state)
    return state.history
