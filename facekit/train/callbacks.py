"""Callbacks: the way notebooks add plots, early stopping and logging to `fit`."""

from __future__ import annotations

import copy
import math

from facekit.config import choice


class Callback:
    """Hooks called by :func:`facekit.train.fit`. ``state`` is the loop's :class:`FitState`.

    ``on_fit_start`` runs once the optimiser exists (and a checkpoint is resumed); it may replace
    ``state.model``, ``state.optimizer`` and ``state.train`` with wrapped ones (DP-SGD does).
    ``on_step_start`` runs before each optimiser step (it may set ``state.optimizer``'s learning rates,
    e.g. a per-step warm-up); ``on_step_end`` after it, with ``state.last_loss`` and ``state.steps``.
    ``on_epoch_end`` sees the epoch's record as ``state.history.records[-1]`` and may add to it or set
    ``state.stop``. ``state_dict``/``load_state_dict`` travel in fit's checkpoints.
    """

    def on_fit_start(self, state) -> None: ...

    def on_step_start(self, state) -> None: ...

    def on_step_end(self, state) -> None: ...

    def on_epoch_end(self, state) -> None: ...

    def on_fit_end(self, state) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs.

    With ``restore_best=True`` the model gets back the weights of its best epoch at the end.

    >>> EarlyStopping(monitor="val_loss", patience=3).mode
    'min'
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 3, mode: str | None = None,
                 min_delta: float = 0.0, restore_best: bool = True):
        self.monitor = monitor
        self.patience = patience
        self.mode = choice(mode or ("min" if "loss" in monitor else "max"), ("min", "max"), name="mode")
        self.min_delta = min_delta
        self.restore_best = restore_best
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.wait = 0
        self.best_weights = None
        self.stopped_epoch = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, state) -> None:
        logs = state.history.records[-1]
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, but the history has only {sorted(logs)}")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, logs["epoch"], 0
            if self.restore_best:
                self.best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in state.model.state_dict().items()})
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop = True
                self.stopped_epoch = logs["epoch"]

    def on_fit_end(self, state) -> None:
        if self.restore_best and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class PlotHistory(Callback):
    """Draw learning curves (loss and each metric, train vs val) when training ends.

    Args:
        metrics: names without the ``train_``/``val_`` prefix, e.g. ``("loss", "accuracy")``.
        title: figure title.
        ax: optional sequence of matplotlib axes, one per metric.
    """

    def __init__(self, metrics=("loss", "accuracy"), title: str | None = None, axes=None):
        self.metrics, self.title, self.axes, self.figure = tuple(metrics), title, axes, None

    def on_fit_end(self, state) -> None:
        from facekit.viz.history import plot_history

        self.figure = plot_history(state.history, self.metrics, title=self.title, axes=self.axes)
