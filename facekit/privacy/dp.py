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

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class DPConfig:
    noise_multiplier: float = 1.0  # sigma: noise std as a multiple of max_grad_norm; 0 = clipping only (no privacy)
    max_grad_norm: float = 1.0  # C: every per-sample gradient is clipped to this L2 norm
    delta: float | None = None  # the delta of (epsilon, delta); None = 1 / N (N training examples)
    epochs: int = 10  # passes over the data (in expectation, with Poisson sampling)
    batch_size: int = 64  # expected batch size; sample rate q = batch_size / N
    lr: float = 1e-3  # learning rate
    optimizer: str = "adam"  # one of OPTIMIZERS
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


def train_private(model: nn.Module, dataset, config: DPConfig = DPConfig(), *,
                  loss_fn: Callable | None = None, progress: bool = False) -> DPResult:
    """Train ``model`` on ``dataset`` (of ``(x, y)``) with DP-SGD through Opacus's ``PrivacyEngine``.

    The model is first made Opacus-compatible (:func:`make_dp_compatible`); batches are Poisson-sampled
    (the sampling the accountant assumes). Returns the trained module and the epsilon spent.
    """
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader

    from facekit.device import resolve_device

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = make_dp_compatible(model).to(device)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (torch.optim.Adam(params, lr=config.lr) if config.optimizer == "adam"
                 else torch.optim.SGD(params, lr=config.lr, momentum=config.momentum))
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))
    delta = config.delta if config.delta is not None else 1.0 / len(dataset)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        engine = PrivacyEngine(accountant="rdp")
        warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
        warnings.filterwarnings("ignore", message=".*Optimal order.*")
        return _train_loop(engine, model, optimizer, loader, loss_fn, config, delta, device, progress)


def _train_loop(engine, model, optimizer, loader, loss_fn, config, delta, device, progress) -> DPResult:
    private, optimizer, loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=config.noise_multiplier,
        max_grad_norm=config.max_grad_norm, poisson_sampling=True)
    sample_rate = 1.0 / len(loader)
    history, steps = [], 0
    private.train()
    for epoch in range(config.epochs):
        total, n = 0.0, 0
        for x, y in loader:
            if len(x) == 0:  # Poisson sampling can draw an empty batch; Opacus still counts the step
                optimizer.zero_grad(set_to_none=True)
                continue
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(private(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
            total, n = total + loss.item() * len(x), n + len(x)
        eps = epsilon_for(config.noise_multiplier, sample_rate, len(loader) * (epoch + 1), delta)
        history.append({"epoch": epoch + 1, "train_loss": total / max(n, 1), "epsilon": eps})
        if progress:
            print(f"  epoch {epoch + 1}: loss {total / max(n, 1):.3f}, epsilon {eps:.2f}")
    epsilon = epsilon_for(config.noise_multiplier, sample_rate, len(loader) * config.epochs, delta)
    inner = private._module if hasattr(private, "_module") else private
    engine_eps = float(engine.get_epsilon(delta)) if config.noise_multiplier > 0 else math.inf
    return DPResult(inner, epsilon, delta, sample_rate, steps, history, engine_eps)


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


__all__ = ["DPConfig", "DPResult", "make_dp_compatible", "epsilon_for", "clipped_noisy_gradient", "train_private",
           "accountant_epsilon_matches", "gaussian_epsilon"]
