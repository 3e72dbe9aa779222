"""`fit` on several processes with DistributedDataParallel (DDP), launched by ``torchrun``.

:func:`fit_distributed` wraps :func:`facekit.train.fit` instead of copying it: it joins the process
group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``), puts one replica of the model on each process's device (``cuda:<local
rank>`` with the NCCL backend, or the CPU with gloo), shards the training set with a
:class:`~torch.utils.data.DistributedSampler` (re-seeded every epoch with ``set_epoch``), and calls ``fit``.

- **Same global batch.** ``batch_size`` is the global batch: each of the N processes takes
  ``batch_size / N`` samples per step and DDP averages the gradients, so a step is the step one process
  makes on the whole batch (checked in ``tests/test_distributed.py``). With one process the same sampler
  is used, so the batches of a one-process run and of an N-process run hold the same samples.
- **The model's own forward for evaluation.** Training batches go through the DDP wrapper (gradients are
  averaged during ``backward``); evaluation (``val``) runs the plain module on the whole validation set on
  every rank, so validation metrics are identical on all ranks (early stopping agrees everywhere) at the
  cost of N-fold redundant evaluation.
- **Global training metrics.** A callback averages each epoch's ``train_*`` figures over the ranks (each
  rank sees as many samples), so the history and the checkpoint hold the figures of the whole epoch.
- **Rank 0 logs and checkpoints.** The other ranks train silently; they resume from a private copy of
  rank 0's checkpoint (see :func:`fit_distributed`).
- **BatchNorm.** Each replica normalises with the statistics of its own part of the batch, so a model with
  BatchNorm does not give exactly the one-process result; ``sync_batchnorm=True`` (default on CUDA)
  converts it to :class:`torch.nn.SyncBatchNorm`, which only runs on GPUs.

Launch (``scripts/ddp_train.py`` is an example)::

    torchrun --standalone --nproc_per_node=4 scripts/ddp_train.py --epochs 5 --batch-size 256
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from facekit.config import ConfigError, make_config
from facekit.train.callbacks import Callback
from facekit.train.batches import default_forward
from facekit.train.config import TrainConfig
from facekit.train.loop import fit
from facekit.train.state import History


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine: the GPU it uses

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """This process's place in the group: from ``torch.distributed`` when initialised, else torchrun's env."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    env = os.environ
    return DistInfo(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def default_backend(device: torch.device | str | None = None) -> str:
    """``nccl`` for CUDA devices (or when CUDA is available), ``gloo`` otherwise."""
    if device is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(backend: str | None = None, *, init_method: str | None = None, rank: int | None = None,
                     world_size: int | None = None, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group (once); return this process's :class:`DistInfo`.

    Without arguments the group comes from torchrun's environment variables. Tests pass
    ``init_method`` (``tcp://127.0.0.1:<port>`` or ``file://...``), ``rank`` and ``world_size``.
    A single process (no ``WORLD_SIZE`` > 1 and no `world_size`) joins nothing.
    """
    import datetime

    if dist.is_initialized():
        return dist_info()
    info = dist_info()
    world = info.world_size if world_size is None else world_size
    if world <= 1:
        return DistInfo(0, 1, 0)
    backend = backend or default_backend()
    if backend == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    kwargs = {"timeout": datetime.timedelta(seconds=timeout_s)}
    if init_method is not None:
        kwargs.update(init_method=init_method, rank=info.rank if rank is None else rank, world_size=world)
    dist.init_process_group(backend, **kwargs)
    return dist_info()


def distributed_loader(data, batch_size: int, *, info: DistInfo | None = None, shuffle: bool = True,
                       seed: int = 0, num_workers: int = 0, pin_memory: bool = False,
                       drop_last: bool = False) -> DataLoader:
    """A loader over this rank's shard of `data`: ``batch_size`` is the global batch, split evenly.

    The :class:`DistributedSampler` pads the dataset (repeating a few samples) so that every rank
    gets as many batches; pass ``drop_last=True`` to drop the tail instead.
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"expected a torch Dataset, got {type(data).__name__} (fit_distributed builds the loader)")
    info = info or dist_info()
    if batch_size % info.world_size:
        raise ConfigError(f"batch_size={batch_size} (the global batch) must be a multiple of the number of "
                          f"processes, {info.world_size}")
    sampler = DistributedSampler(data, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last)
    return DataLoader(data, batch_size=batch_size // info.world_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=drop_last)


class _Distributed(Callback):
    """set_epoch on the sampler; average the epoch's ``train_*`` figures over the ranks."""

    def __init__(self, sampler: DistributedSampler, world_size: int, device: torch.device):
        self.sampler, self.world_size = sampler, world_size
        self.device = device if dist.is_initialized() and dist.get_backend() == "nccl" else torch.device("cpu")

    def on_fit_start(self, state) -> None:
        self.sampler.set_epoch(len(state.history.records))  # a resumed run continues the same sequence

    def on_epoch_end(self, state) -> None:
        record = state.history.records[-1]
        if self.world_size > 1:
            keys = sorted(k for k in record if k.startswith("train_"))
            values = torch.tensor([float(record[k]) for k in keys], dtype=torch.float64, device=self.device)
            dist.all_reduce(values)  # a sum; NCCL needs the tensor on this rank's GPU, gloo on the CPU
            record.update({k: v / self.world_size for k, v in zip(keys, values.cpu().tolist())})
        self.sampler.set_epoch(state.epoch + 1)


def _ddp_forward(ddp: nn.Module, inner: Callable):
    """Training batches through the DDP wrapper (gradient averaging); evaluation through the plain module."""

    def forward(model, batch, device):
        if model.training and torch.is_grad_enabled():
            return inner(ddp, batch, device)
        return inner(model, batch, device)

    return forward


@contextmanager
def _rank_checkpoint(path: str | None, info: DistInfo):
    """Rank 0 checkpoints to `path`; another rank resumes from, and writes to, a private temporary copy."""
    if path is None or info.is_main:
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix=f"facekit-rank{info.rank}-"))
    try:
        mine = folder / Path(path).name
        if Path(path).exists():
            shutil.copyfile(path, mine)
        yield str(mine)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fit_distributed(model: nn.Module, train: Dataset, val=None, *, config: TrainConfig | Mapping | None = None,
                    loss_fn: Callable | None = None, metrics: Mapping[str, Callable] | None = None,
                    callbacks: Sequence[Callback] = (), forward: Callable | None = None,
                    param_groups: Sequence[Mapping] | None = None, sync_batchnorm: bool | None = None,
                    find_unused_parameters: bool = False, **overrides) -> History:
    """:func:`facekit.train.fit` on every process of the group, with DDP and a sharded training set.

    Call it from each process (``torchrun`` starts them); with a single process it is ``fit`` with the
    same sampler. Arguments are those of ``fit`` (`train` must be a Dataset); ``batch_size`` is the global batch, ``device`` is
    replaced by this rank's device (``cuda:<local rank>`` when the config asks for CUDA or ``auto`` finds
    it, else the CPU). Returns the history (identical on every rank; on rank 0 it is what was logged).

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(64, 2); y = (x[:, 0] > 0).long()
    >>> h = fit_distributed(torch.nn.Linear(2, 2), TensorDataset(x, y), epochs=2, batch_size=16, progress=False)
    >>> len(h.records)
    2
    """
    base = config if isinstance(config, TrainConfig) else make_config(TrainConfig, config or {})
    config = make_config(TrainConfig, dataclasses.asdict(base), **overrides)
    if not isinstance(train, Dataset):
        raise TypeError(f"fit_distributed needs the training Dataset (it builds the sharded loader), "
                        f"got {type(train).__name__}")
    info = dist_info()
    wants_cuda = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{info.local_rank}") if wants_cuda else torch.device("cpu")
    loader = distributed_loader(train, config.batch_size, info=info, seed=config.seed, num_workers=config.num_workers,
                                pin_memory=device.type == "cuda")
    model.to(device)
    if sync_batchnorm is None:
        sync_batchnorm = device.type == "cuda" and info.world_size > 1
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
    inner = forward or default_forward
    if info.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters)
        inner = _ddp_forward(ddp, inner)
    sync = _Distributed(loader.sampler, info.world_size, device)
    extra = {} if param_groups is None else {"param_groups": param_groups}  # layer-wise lr (fine-tuning)
    with _rank_checkpoint(config.checkpoint, info) as checkpoint:
        history = fit(model, loader, val, config=config, loss_fn=loss_fn, metrics=metrics,
                      callbacks=[sync, *callbacks], forward=inner, device=str(device), checkpoint=checkpoint,
                      progress=config.progress and info.is_main, **extra)
    if info.world_size > 1:
        dist.barrier()  # rank 0's last checkpoint is written before anyone moves on
    return history


def cleanup_distributed() -> None:
    """Leave the process group (when one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistInfo", "dist_info", "default_backend", "init_distributed", "distributed_loader",
           "fit_distributed", "cleanup_distributed"]
