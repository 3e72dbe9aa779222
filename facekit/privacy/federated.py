"""Federated averaging (FedAvg, McMahan et al. 2017), written from scratch.

Each round every client starts from the global model, trains on its own data for a few local
epochs, and sends back only its weights; the server replaces the global model by the average of
the client models weighted by their numbers of examples ``n_k``:

    w  <-  sum_k (n_k / n) w_k

Images never leave a client. With identical clients (or one local full-batch gradient step) the
average equals centralised training; with clients holding *different people* (non-IID) the local
models drift apart and the average is worse: that gap is what :func:`split_by_identity` shows.

>>> import torch
>>> a, b = {"w": torch.tensor([0.0, 2.0])}, {"w": torch.tensor([4.0, 6.0])}
>>> weighted_average([a, b], [1, 3])["w"].tolist()
[3.0, 5.0]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from facekit.config import ConfigError, choice
from facekit.train.optim import OPTIMIZERS


def weighted_average(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict:
    """Average state dicts with ``weights`` (normalised to sum 1); non-float entries must agree and are copied."""
    if len(states) == 0 or len(states) != len(weights):
        raise ValueError(f"need one weight per state dict, got {len(states)} states and {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
    w = w / w.sum()
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys:
            raise ValueError("the state dicts have different keys: clients must share one architecture")
    out = {}
    for k in keys:
        first = states[0][k]
        if torch.is_floating_point(first):
            out[k] = sum(float(wi) * s[k].to(torch.float64) for wi, s in zip(w, states)).to(first.dtype)
        else:  # e.g. BatchNorm's num_batches_tracked: an integer counter, not a weight
            out[k] = first.clone()
    return out


def split_iid(num_examples: int, num_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Example indices dealt at random to ``num_clients`` clients of (nearly) equal size."""
    if not 1 <= num_clients <= num_examples:
        raise ConfigError(f"num_clients={num_clients} must be in [1, {num_examples}] (the number of examples)")
    order = np.random.default_rng(seed).permutation(num_examples)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def split_by_identity(labels, num_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Example indices grouped so that each person's images all go to one client (non-IID, disjoint people)."""
    y = np.asarray(labels)
    people = np.unique(y)
    if not 1 <= num_clients <= len(people):
        raise ConfigError(f"num_clients={num_clients} must be in [1, {len(people)}] (the number of people)")
    shuffled = np.random.default_rng(seed).permutation(people)
    return [np.flatnonzero(np.isin(y, part)) for part in np.array_split(shuffled, num_clients)]


@dataclass(frozen=True)
class FedConfig:
    rounds: int = 10  # communication rounds
    local_epochs: int = 1  # passes over its own data by each client per round
    lr: float = 1e-3  # learning rate of the local optimiser
    optimizer: str = "adam"  # local optimiser from facekit.train.optim.OPTIMIZERS (a fresh one each round)
    momentum: float = 0.9  # sgd only
    batch_size: int = 32  # local batch size
    seed: int = 0  # local shuffling
    device: str = "auto"

    def __post_init__(self):
        choice(self.optimizer, OPTIMIZERS, name="FedConfig.optimizer")
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"FedConfig rounds={self.rounds}, local_epochs={self.local_epochs}, "
                              f"batch_size={self.batch_size} must all be >= 1")


def local_train(model: nn.Module, dataset: Dataset, *, epochs: int, lr: float, batch_size: int,
                optimizer: str = "adam", momentum: float = 0.9, seed: int = 0, device="cpu",
                loss_fn: Callable | None = None, full_batch: bool = False) -> float:
    """Train ``model`` in place on ``dataset`` for ``epochs`` with :func:`facekit.train.fit`; the last epoch's mean loss.

    Epoch ``e`` shuffles with a generator seeded ``seed * 1000 + e``; the optimiser is a fresh one from
    fit's registry (no weight decay, full precision). ``full_batch`` uses one batch of the whole dataset
    (gradient descent; the FedSGD check).
    """
    from facekit.train import TrainConfig, fit

    def batches(epoch: int) -> DataLoader:  # the client's own data order, epoch by epoch
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        return DataLoader(dataset, batch_size=len(dataset) if full_batch else batch_size, shuffle=not full_batch,
                          generator=gen)

    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                         seed=seed, device=str(device), amp="off", progress=False)
    history = fit(model, batches, config=config, loss_fn=loss_fn, metrics={})
    return history.last("train_loss") if history.records else float("nan")


@dataclass
class FedResult:
    model: nn.Module  # the global model after the last round
    history: list[dict] = field(default_factory=list)  # per round: round, client_loss, and what `evaluate` returns


def fedavg(model: nn.Module, dataset: Dataset, client_indices: Sequence[Sequence[int]],
           config: FedConfig = FedConfig(), *, evaluate: Callable[[nn.Module], dict] | None = None,
           loss_fn: Callable | None = None, full_batch: bool = False) -> FedResult:
    """Federated averaging of ``model`` over clients holding ``dataset[client_indices[k]]``.

    Args:
        model: the initial global model (not modified; a trained copy is returned).
        dataset: all examples; client k only ever sees ``Subset(dataset, client_indices[k])``.
        config: rounds, local epochs and the local optimiser.
        evaluate: optional ``evaluate(global_model) -> dict`` run after every round (logged in history).
        full_batch: clients take full-batch gradient steps (FedSGD when local_epochs = 1).

    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(40, 3), torch.randint(0, 2, (40,)))
    >>> r = fedavg(nn.Linear(3, 2), data, [range(20), range(20, 40)], FedConfig(rounds=2, device="cpu"))
    >>> len(r.history)
    2
    """
    from facekit.device import resolve_device

    device = resolve_device(config.device)
    sizes = [len(ix) for ix in client_indices]
    if not sizes or min(sizes) == 0:
        raise ConfigError(f"every client needs at least one example; client sizes: {sizes}")
    global_model = copy.deepcopy(model).to(device)
    history = []
    for r in range(config.rounds):
        states, losses = [], []
        for k, ix in enumerate(client_indices):
            local = copy.deepcopy(global_model)
            losses.append(local_train(local, Subset(dataset, list(ix)), epochs=config.local_epochs, lr=config.lr,
                                      batch_size=config.batch_size, optimizer=config.optimizer,
                                      momentum=config.momentum, seed=config.seed + 7919 * r + k, device=device,
                                      loss_fn=loss_fn, full_batch=full_batch))
            states.append({k_: v.detach() for k_, v in local.state_dict().items()})
        global_model.load_state_dict(weighted_average(states, sizes))
        record = {"round": r + 1, "client_loss": float(np.average(losses, weights=sizes))}
        if evaluate is not None:
            record.update(evaluate(global_model))
        history.append(record)
    return FedResult(global_model, history)


__all__ = ["weighted_average", "split_iid", "split_by_identity", "FedConfig", "local_train", "FedResult", "fedavg"]
