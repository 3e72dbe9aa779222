"""Chapter 9: DP-SGD's noise multiplier, clipping norm and epochs against epsilon and the measured accuracy.

Epsilon comes from the RDP accountant that :func:`facekit.privacy.epsilon_for` uses (Opacus's), evaluated once on a
grid of noise multipliers and epochs with the sampling of :func:`facekit.privacy.train_private` (Poisson sampling
at ``q = 1 / ceil(N / batch_size)``, ``ceil(N / batch_size)`` steps per epoch). The Renyi divergence of one step is
computed once per noise multiplier; ``k`` steps compose to ``k`` times it, and each grid cell converts that to
(epsilon, delta) exactly as the accountant does (the tests check every cell against ``epsilon_for``). The clipping norm C does not enter
epsilon: it bounds each example's gradient and sets the noise's size, ``sigma * C`` on the summed gradient,
so it moves the signal-to-noise ratio and the accuracy, not the privacy. The accuracies drawn are the ones the
chapter measured (at its C and epochs); nothing is interpolated.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.explore.core import Exploration, Slider

__all__ = ["EpsilonGrid", "epsilon_grid", "draw_privacy", "explore_privacy"]

SIGMAS = tuple(float(s) for s in np.round(np.arange(0.3, 4.01, 0.1), 2))  # the noise multipliers of the slider


@dataclass(frozen=True)
class EpsilonGrid:
    sigmas: np.ndarray  # (S,) noise multipliers
    epochs: np.ndarray  # (E,) 1..max_epochs
    epsilon: np.ndarray  # (S, E) epsilon at delta
    sample_rate: float
    steps_per_epoch: int
    delta: float

    def at(self, sigma: float, epochs: int) -> float:
        """Epsilon at the grid's nearest noise multiplier and exactly ``epochs`` epochs."""
        i = int(np.argmin(np.abs(self.sigmas - sigma)))
        if not 1 <= epochs <= self.epochs[-1]:
            raise ConfigError(f"epochs={epochs!r} is outside the grid's 1..{int(self.epochs[-1])}")
        return float(self.epsilon[i, int(epochs) - 1])


def epsilon_grid(num_examples: int, batch_size: int, delta: float, sigmas=SIGMAS, max_epochs: int = 30) -> EpsilonGrid:
    """Epsilon for every noise multiplier in ``sigmas`` and every epoch count 1..max_epochs (the accountant, once).

    >>> g = epsilon_grid(1000, 100, 1e-5, sigmas=(1.0, 2.0), max_epochs=3)
    >>> bool(g.epsilon[0, 2] > g.epsilon[0, 0] > g.epsilon[1, 0])  # more epochs: more epsilon; more noise: less
    True
    """
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    from opacus.accountants.rdp import RDPAccountant

    if num_examples < 1 or batch_size < 1 or max_epochs < 1:
        raise ConfigError(f"num_examples={num_examples}, batch_size={batch_size} and max_epochs={max_epochs} "
                          "must be >= 1")
    steps = math.ceil(num_examples / batch_size)  # len(DataLoader) in train_private
    q = 1.0 / steps
    sig = np.asarray(sigmas, dtype=float)
    if not (np.all(sig > 0) and 0 < delta < 1):
        raise ConfigError(f"noise multipliers must be > 0 and delta in (0, 1), got {sig.tolist()} and {delta}")
    orders = RDPAccountant.DEFAULT_ALPHAS
    eps = np.empty((len(sig), max_epochs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "optimal order is the largest alpha" for tiny epsilons
        for i, s in enumerate(sig):
            one_step = compute_rdp(q=q, noise_multiplier=float(s), steps=1, orders=orders)  # (orders,)
            for e in range(1, max_epochs + 1):
                eps[i, e - 1] = get_privacy_spent(orders=orders, rdp=one_step * (steps * e), delta=delta)[0]
    return EpsilonGrid(sig, np.arange(1, max_epochs + 1), eps, q, steps, delta)


def draw_privacy(fig, grid: EpsilonGrid, sigma: float, clip_norm: float, epochs: int, *, batch_size: int,
                 measured=None, grad_norms=None) -> dict:
    """Epsilon against epochs for the chosen sigma (left), the measured accuracy against epsilon (middle) and,
    given per-example gradient norms, what clipping at C keeps of them (right)."""
    eps = grid.at(sigma, epochs)
    i = int(np.argmin(np.abs(grid.sigmas - sigma)))
    panels = 3 if grad_norms is not None else 2
    axes = fig.subplots(1, panels)
    ax = axes[0]
    for j in range(0, len(grid.sigmas), max(1, len(grid.sigmas) // 6)):
        ax.plot(grid.epochs, grid.epsilon[j], color="0.8", lw=0.8)
    ax.plot(grid.epochs, grid.epsilon[i], color="tab:purple", lw=1.8, label=f"sigma {grid.sigmas[i]:.1f}")
    ax.plot([epochs], [eps], "o", color="k")
    ax.set(yscale="log", xlabel="epochs", ylabel="epsilon (log)",
           title=f"epsilon {eps:.3g} at delta {grid.delta:.0e}, q {grid.sample_rate:.3f}")
    ax.legend(fontsize=7)
    ax.minorticks_off()  # a log axis's minor ticks cost more to draw than the rest of the panel
    ax = axes[1]
    noise_std = sigma * clip_norm / batch_size
    if measured:
        pts = sorted((e, a) for e, a in measured if math.isfinite(e))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:green", label="measured (DP-SGD)")
        for e, a in measured:
            if not math.isfinite(e):
                ax.axhline(a, color="grey", ls=":", lw=1, label="no noise (epsilon = inf)")
                break
        ax.legend(fontsize=7, loc="lower right")
    ax.axvline(eps, color="tab:purple", lw=1.5)
    finite = [e for e, _ in (measured or []) if math.isfinite(e) and e > 0] + [eps]
    ax.set(xscale="log", xlabel="epsilon (log)", ylabel="held-out accuracy", xlim=(min(finite) / 1.5, max(finite) * 1.5),
           title=f"noise std on the mean gradient sigma*C/B = {noise_std:.2g}")
    ax.minorticks_off()
    if panels == 3:
        ax = axes[2]
        norms = np.asarray(grad_norms, dtype=float)
        clipped = float((norms > clip_norm).mean())
        ax.hist(norms, bins=30, histtype="stepfilled", color="tab:blue", alpha=0.7)
        ax.axvline(clip_norm, color="k", lw=1.5)
        ax.set(xlabel="per-example gradient norm", ylabel="examples", title=f"C = {clip_norm:.2g}: {clipped:.0%} clipped")
    else:
        clipped = math.nan
    for a in axes:
        a.title.set_fontsize(8)
    return {"epsilon": eps, "noise_std": noise_std, "clipped_fraction": clipped}


def explore_privacy(num_examples: int, batch_size: int, delta: float, *, measured=None, grad_norms=None,
                    sigma: float = 1.0, clip_norm: float = 1.0, epochs: int = 10, max_epochs: int = 30) -> Exploration:
    """Sliders for the noise multiplier, clipping norm and epochs against epsilon and the chapter's accuracies.

    Args:
        num_examples, batch_size, delta: the training set size, expected batch size and delta of DP-SGD.
        measured: optional ``[(epsilon, accuracy), ...]`` the chapter measured (epsilon inf: no noise).
        grad_norms: optional per-example gradient norms (before clipping) to show what C clips.
        sigma, clip_norm, epochs: the starting values.
    """
    grid = epsilon_grid(num_examples, batch_size, delta, SIGMAS, max(max_epochs, epochs))
    sigma = min(max(float(sigma), SIGMAS[0]), SIGMAS[-1])  # the slider's range
    measured = None if measured is None else [(float(e), float(a)) for e, a in measured]
    if grad_norms is not None:  # a tensor that requires grad, a list or an array
        grad_norms = np.asarray(torch.as_tensor(grad_norms).detach().cpu(), dtype=float)
    top_c = 4.0 if grad_norms is None else max(4.0, float(np.ceil(np.max(grad_norms))))
    return Exploration(
        lambda fig, sigma, clip_norm, epochs: draw_privacy(fig, grid, sigma, clip_norm, epochs, batch_size=batch_size,
                                                           measured=measured, grad_norms=grad_norms),
        {"sigma": Slider(SIGMAS[0], SIGMAS[-1], 0.1, float(sigma), description="noise multiplier sigma"),
         "clip_norm": Slider(0.1, top_c, 0.1, float(clip_norm), description="clipping norm C"),
         "epochs": Slider(1, int(grid.epochs[-1]), 1, int(epochs), integer=True, description="epochs")},
        figsize=(10.5 if grad_norms is not None else 7.5, 3.0),
        static_grid=[{"sigma": 0.5}, {"sigma": 2.0}, {"sigma": 2.0, "epochs": int(grid.epochs[-1])}],
        grid_title="sigma 0.5, sigma 2, and sigma 2 for the most epochs",
    )
