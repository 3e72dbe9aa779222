"""Evaluation loops: :func:`evaluate` (mean loss and metrics) and :func:`predict` (all outputs).

Both honour the dry-run cap (:func:`facekit.profiles.max_steps`): at most that many batches.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from facekit.device import resolve_device
from facekit.train.batches import autocast_for, capped, default_forward, make_loader


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy of (B, K) logits against (B,) labels.

    >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    0.5
    """
    return (outputs.argmax(dim=1) == targets).float().mean().item()


class MeanMeter:
    """Batch-size-weighted running means of the loss and metrics of one pass."""

    def __init__(self, metrics: Mapping[str, Callable]):
        self.metrics, self.totals, self.n = metrics, {}, 0

    @torch.no_grad()
    def add(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Add one batch; returns its loss as a float."""
        b, value = targets.shape[0], loss.item()
        self.n += b
        self.totals["loss"] = self.totals.get("loss", 0.0) + value * b
        for name, fn in self.metrics.items():
            self.totals[name] = self.totals.get(name, 0.0) + fn(outputs.detach().float(), targets) * b
        return value

    def means(self) -> dict:
        return {k: v / max(self.n, 1) for k, v in self.totals.items()}


@torch.no_grad()
def evaluate(model: nn.Module, data, *, loss_fn=None, metrics: Mapping[str, Callable] | None = None,
             device="auto", batch_size: int = 256, forward: Callable | None = None, amp: str = "off") -> dict:
    """Mean loss and metrics of `model` on `data` (a Dataset or DataLoader), weighted by batch size.

    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.eye(2), torch.tensor([0, 1]))
    >>> evaluate(torch.nn.Identity(), data, device="cpu")["accuracy"]
    1.0
    """
    device = resolve_device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    forward = forward or default_forward
    meter = MeanMeter({"accuracy": accuracy} if metrics is None else metrics)
    autocast, _ = autocast_for(device, amp)
    for batch in capped(make_loader(data, batch_size=batch_size, shuffle=False, device=device)):
        with autocast():
            out, y = forward(model, batch, device)
            loss = loss_fn(out, y)
        meter.add(loss, out, y)
    model.train(was_training)
    return meter.means()


@torch.no_grad()
def predict(model: nn.Module, data, *, device="auto", batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) outputs and (N,) targets of `model` over `data`, on the CPU."""
    device = resolve_device(device)
    model = model.to(device).eval()
    outs, ys = [], []
    for x, y, *_ in capped(make_loader(data, batch_size=batch_size, shuffle=False, device=device)):
        outs.append(model(x.to(device)).float().cpu())
        ys.append(y)
    return torch.cat(outs), torch.cat(ys)


__all__ = ["accuracy", "evaluate", "predict", "MeanMeter"]
