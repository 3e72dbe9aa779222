"""DP-SGD: per-sample gradient clipping and Gaussian noise (Abadi et al. 2016), trained with Opacus.

One DP-SGD step on a batch ``B`` (Poisson-sampled: each example joins with probability ``q``):

    g_i  = grad of loss(x_i)                      per-sample gradients
    g~_i = g_i * min(1, C / ||g_i||)              clip each to L2 norm <= C   (max_grad_norm)
    g    = (sum_i g~_i + N(0, (sigma C)^2 I)) / E[|B|]    add noise, sigma = noise_multiplier

Clipping bounds what one person's image can change; the noise hides it. The privacy cost of
``steps`` such steps at sampling rate ``q`` is accounted with Renyi DP and reported as
``(epsilon, delta)``. :func:`clipped_noisy_gradient` is the step written out (``torch.func``);
:func:`train_private` is the same with Opacus; :func:`epsilon_for` is Opacus's RDP accountant.

>>> round(epsilon_for(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5), 4)  # Opacus's own test value
7.3291
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from facekit.config import ConfigError, choice
from facekit.train.callbacks import Callback
from facekit.train.optim import OPTIMIZERS


@dataclass(frozen=True)
class DPConfig:
    noise_multiplier: float = 1.0  # sigma: noise std as a multiple of max_grad_norm; 0 = clipping only (no privacy)
    max_grad_norm: float = 1.0  # C: every per-sample gradient is clipped to this L2 norm
    delta: float | None = None  # the delta of (epsilon, delta); None = 1 / N (N training examples)
    epochs: int = 10  # passes over the data (in expectation, with Poisson sampling)
    batch_size: int = 64  # expected batch size; sample rate q = batch_size / N
    lr: float = 1e-3  # learning rate
    optimizer: str = "adam"  # one of facekit.train.optim.OPTIMIZERS (no weight decay)
    momentum: float = 0.9  # sgd only
    seed: int = 0  # seeds the model's sampling and noise (Opacus's secure_mode stays off: not for production)
    device: str = "auto"  # 'auto', 'cpu', 'cuda', ...

    def __post_init__(self):
        choice(self.optimizer, OPTIMIZERS, name="DPConfig.optimizer")
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise ConfigError(f"DPConfig.noise_multiplier={self.noise_multiplier!r} must be a finite number >= 0")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"DPConfig.max_grad_norm={self.max_grad_norm!r} must be > 0")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"DPConfig.delta={self.delta!r} must be in (0, 1) or None (= 1/N)")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"DPConfig.epochs={self.epochs!r} and batch_size={self.batch_size!r} must be >= 1")


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """``model`` with the layers DP-SGD cannot use replaced (BatchNorm -> GroupNorm), via Opacus.

    BatchNorm mixes the examples of a batch, so a per-sample gradient is not defined; Opacus's
    ``ModuleValidator.fix`` swaps it for GroupNorm. In-place activations (``ReLU(inplace=True)``)
    are made out-of-place: Opacus's backward hooks cannot see through them. Raises ConfigError naming
    the layers that remain.

    >>> from facekit.models.cnn import SmallResNet
    >>> fixed = make_dp_compatible(SmallResNet(num_classes=3, widths=(8, 16)))
    >>> any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    False
    """
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)
    for module in fixed.modules():  # Opacus's backward hooks forbid in-place ops on hooked outputs
        if getattr(module, "inplace", False):
            module.inplace = False
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise ConfigError(f"model still has layers Opacus cannot train privately: {errors}")
    return fixed


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at ``delta``, by Opacus's RDP accountant.

    ``noise_multiplier == 0`` means no noise: epsilon is infinite.
    """
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample_rate={sample_rate!r} must be in (0, 1]")
    if not 0 < delta < 1:
        raise ConfigError(f"delta={delta!r} must be in (0, 1)")
    if noise_multiplier == 0 or steps == 0:
        return math.inf if steps else 0.0
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(float(noise_multiplier), float(sample_rate), int(steps))]  # what `steps` calls to step() add
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "optimal order is the largest alpha" for tiny epsilons
        return float(accountant.get_epsilon(delta=delta))


def clipped_noisy_gradient(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor, *,
                           max_grad_norm: float, noise_multiplier: float, expected_batch_size: int | None = None,
                           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One DP-SGD gradient written out: per-sample grads (``torch.func``), clip, sum, noise, divide.

    Args:
        model: any module without batch-mixing layers; loss_fn(outputs, targets) -> scalar mean loss.
        x, y: one batch (B, ...), (B,).
        expected_batch_size: the divisor (Opacus uses q N); default B.
    Returns:
        name -> gradient, shaped like the parameters.
    """
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi[None],))
        return loss_fn(out, yi[None])

    per_sample = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)  # name -> (B, *param shape)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_sample.values()))  # (B,) per-sample L2 norms
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # Opacus's clip factor, same epsilon guard
    divisor = expected_batch_size or len(x)
    out = {}
    for name, g in per_sample.items():
        summed = torch.einsum("b,b...->...", factor, g)
        noise = torch.normal(0.0, noise_multiplier * max_grad_norm, summed.shape, generator=generator) \
            if noise_multiplier > 0 else torch.zeros_like(summed)
        out[name] = (summed + noise) / divisor
    return out


@dataclass
class DPResult:
    model: nn.Module  # the trained network (unwrapped from Opacus's GradSampleModule)
    epsilon: float  # spent at `delta` (inf without noise)
    delta: float
    sample_rate: float  # q = batch_size / N
    steps: int  # optimizer steps taken
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss, epsilon
    engine_epsilon: float = math.nan  # the PrivacyEngine's own count (its accountant saw each optimizer step)


class MakePrivate(Callback):
    """A :func:`facekit.train.fit` hook that trains with DP-SGD through Opacus's ``PrivacyEngine``.

    At the start of ``fit`` it batches the training dataset (expected batch ``config.batch_size``),
    hands model, optimiser and loader to ``PrivacyEngine.make_private`` (Poisson sampling, the sampling
    the accountant assumes) and gives ``fit`` the wrapped three. Sampling and noise draw from their own
    generators seeded with ``config.seed``, so they do not depend on ``fit``'s per-epoch seeding. After
    every epoch it adds the ``epsilon`` spent so far (at ``delta``) to the epoch's record.

    Attributes set during ``fit``: ``engine``, ``private`` (the GradSampleModule), ``sample_rate``,
    ``steps`` (optimiser steps taken; empty Poisson batches take none).
    """

    def __init__(self, config: DPConfig, delta: float):
        self.config, self.delta = config, delta
        self.engine = self.private = None
        self.sample_rate = math.nan
        self._batches = self.steps = 0

    def on_fit_start(self, state) -> None:
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader

        cfg = self.config
        loader = DataLoader(state.train, batch_size=cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(cfg.seed))
        self.engine = PrivacyEngine(accountant="rdp")
        noise = torch.Generator(device=state.device).manual_seed(cfg.seed)
        self.private, state.optimizer, state.train = self.engine.make_private(
            module=state.model, optimizer=state.optimizer, data_loader=loader, noise_multiplier=cfg.noise_multiplier,
            max_grad_norm=cfg.max_grad_norm, poisson_sampling=True, noise_generator=noise)
        state.model = self.private
        self._batches = len(state.train)
        self.sample_rate = 1.0 / self._batches

    def epsilon(self, epochs: int) -> float:
        """Epsilon after ``epochs`` full epochs (each ``1 / sample_rate`` Poisson-sampled steps) at ``delta``."""
        return epsilon_for(self.config.noise_multiplier, self.sample_rate, self._batches * epochs, self.delta)

    def on_epoch_end(self, state) -> None:
        state.history.records[-1]["epsilon"] = self.epsilon(state.epoch + 1)

    def on_fit_end(self, state) -> None:
        self.steps = state.steps


def train_private(model: nn.Module, dataset, config: DPConfig = DPConfig(), *,
                  loss_fn: Callable | None = None, progress: bool = False) -> DPResult:
    """Train ``model`` on ``dataset`` (of ``(x, y)``) with DP-SGD: :func:`facekit.train.fit` with :class:`MakePrivate`.

    The model is first made Opacus-compatible (:func:`make_dp_compatible`); batches are Poisson-sampled
    (the sampling the accountant assumes); the optimiser comes from fit's registry, without weight
    decay and in full precision. Returns the trained module and the epsilon spent.
    """
    from facekit.device import resolve_device
    from facekit.train import TrainConfig, fit

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = make_dp_compatible(model).to(device)
    delta = config.delta if config.delta is not None else 1.0 / len(dataset)
    hook = MakePrivate(config, delta)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               optimizer=config.optimizer, momentum=config.momentum, seed=config.seed,
                               device=str(device), amp="off", progress=progress)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
        warnings.filterwarnings("ignore", message=".*Optimal order.*")
        history = fit(model, dataset, config=train_config, loss_fn=loss_fn, metrics={}, callbacks=[hook])
        engine_eps = float(hook.engine.get_epsilon(delta)) if config.noise_multiplier > 0 else math.inf
    records = [{k: r[k] for k in ("epoch", "train_loss", "epsilon") if k in r} for r in history.records]
    inner = hook.private._module if hasattr(hook.private, "_module") else hook.private
    return DPResult(inner, hook.epsilon(config.epochs), delta, hook.sample_rate, hook.steps, records, engine_eps)


def accountant_epsilon_matches(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> tuple:
    """(epsilon from :func:`epsilon_for`, epsilon from ``opacus.accountants.analysis.rdp`` called directly)."""
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    from opacus.accountants.rdp import RDPAccountant

    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=orders)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        eps, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return epsilon_for(noise_multiplier, sample_rate, steps, delta), float(eps)


def gaussian_epsilon(noise_multiplier: float, steps: int, delta: float, orders=None) -> float:
    """Epsilon of ``steps`` full-batch (q = 1) Gaussian steps, from the formulas, no library.

    RDP of the Gaussian mechanism at order a: ``a / (2 sigma^2)`` per step, adding over steps;
    converted to (epsilon, delta) with the bound Opacus uses (Balle et al. 2020):
    ``eps = rdp - (log delta + log a) / (a - 1) + log((a - 1) / a)``, minimised over a.
    """
    from opacus.accountants.rdp import RDPAccountant

    a = np.asarray(RDPAccountant.DEFAULT_ALPHAS if orders is None else orders, dtype=np.float64)
    rdp = steps * a / (2 * noise_multiplier**2)
    eps = rdp - (np.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)
    return float(np.min(eps))


__all__ = ["DPConfig", "DPResult", "MakePrivate", "make_dp_compatible", "epsilon_for", "clipped_noisy_gradient", "train_private",
           "accountant_epsilon_matches", "gaussian_epsilon"]
