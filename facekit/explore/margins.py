"""Chapter 4: SphereFace, CosFace and ArcFace margins on the 2-D toy's decision regions.

A normalised 2-D feature at angle phi *meets the margin* of class k when the head's penalised target logit
``psi(theta_k)`` still beats the plain cosine of every other class, ``psi(theta_k) > max_{j != k} cos(theta_j)``.
Without a margin (``psi = cos``) the circle splits into sectors with no gap; a margin carves empty gaps between
them, the wider the larger m. The heads are the package's own (:mod:`facekit.losses.margins`).

>>> import torch
>>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
>>> r0 = margin_regions(w, make_head("ArcFace", 0.0))
>>> r5 = margin_regions(w, make_head("ArcFace", 0.5))
>>> r0.gap_fraction, round(r5.gap_fraction, 2)  # ArcFace: each of the 4 boundaries opens a gap of m: 4m / 2pi
(0.0, 0.32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from facekit.config import ConfigError
from facekit.explore.core import Exploration, Slider, one_thread

__all__ = ["HEADS", "MarginCache", "MarginRegions", "make_head", "margin_regions", "meets_margin", "draw_margins", "explore_margins"]

RESOLUTION = 1440  # angles sampled around the circle (a quarter degree)
HEADS = {  # name: (its margin argument, slider range lo, hi, step, the package default)
    "SphereFace": ("m", 1.0, 4.0, 0.05, 1.35),
    "CosFace": ("margin", 0.0, 0.8, 0.01, 0.35),
    "ArcFace": ("margin_rad", 0.0, 1.0, 0.01, 0.5),
}


def make_head(name: str, m: float):
    """The facekit margin head ``name`` (SphereFace, CosFace or ArcFace) with margin ``m`` and scale 1."""
    from facekit.losses.margins import ArcFace, CosFace, SphereFace

    classes = {"SphereFace": SphereFace, "CosFace": CosFace, "ArcFace": ArcFace}
    if name not in classes:
        raise ConfigError(f"head={name!r} is not accepted; use one of: {', '.join(classes)}")
    return classes[name](s=1.0, **{HEADS[name][0]: float(m)})


@dataclass(frozen=True)
class MarginRegions:
    angles: np.ndarray  # (R,) feature directions, radians in [0, 2 pi)
    winner: np.ndarray  # (R,) the class whose margin that direction meets, -1 where none does (the gap)
    nearest: np.ndarray  # (R,) the class of largest cosine (the plain softmax decision)
    gap_fraction: float  # share of the circle where no class meets its margin


def _unit(x) -> np.ndarray:
    x = torch.as_tensor(x).detach().cpu().to(torch.float64).numpy()
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected (K, 2) class directions or (N, 2) features, got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _meets(cos: np.ndarray, head, k: np.ndarray) -> np.ndarray:
    """(N, K) cosines, head, (N,) class -> (N,) bool: psi(theta_k) > max over the other classes' cosines.

    Only the head's target logit runs in torch (elementwise, the package's own formula); the rest is NumPy,
    which small arrays pay no thread start-up for.
    """
    rows = np.arange(len(k))
    with torch.no_grad():
        target = head.target_logit(torch.from_numpy(np.ascontiguousarray(cos[rows, k]))).numpy()  # (N,)
    others = cos.copy()
    others[rows, k] = -np.inf
    return target > others.max(1)


def margin_regions(class_directions, head, resolution: int = RESOLUTION) -> MarginRegions:
    """Which class's margin each direction on the unit circle meets, for class weight directions (K, 2)."""
    w = _unit(class_directions)  # (K, 2)
    angles = np.arange(resolution) * (2 * np.pi / resolution)
    cos = np.stack([np.cos(angles), np.sin(angles)], 1) @ w.T  # (R, K)
    nearest = cos.argmax(1)
    winner = np.where(_meets(cos, head, nearest), nearest, -1)
    return MarginRegions(angles, winner, nearest, float((winner < 0).mean()))


def meets_margin(features, labels, class_directions, head) -> np.ndarray:
    """(N,) bool: whether each (N, 2) feature meets the margin of its own class (labels (N,))."""
    cos = _unit(features) @ _unit(class_directions).T  # (N, K)
    return _meets(cos, head, torch.as_tensor(labels).long().numpy())


def _runs(values: np.ndarray):
    """(start, stop, value) of each run of equal values, wrapping around the circle."""
    edges = np.flatnonzero(values != np.roll(values, 1))
    if len(edges) == 0:
        return [(0, len(values), values[0])]
    return [(a, b if b > a else b + len(values), values[a]) for a, b in zip(edges, np.roll(edges, -1))]


class MarginCache:
    """Regions and per-feature verdicts of every (head, margin) computed once, so a moved slider only redraws."""

    def __init__(self, class_directions, features=None, labels=None):
        self.w, self.features, self.labels, self._done = class_directions, features, labels, {}

    def __call__(self, name: str, m: float):
        key = (name, round(float(m), 9))
        if key not in self._done:
            head = make_head(name, m)
            ok = None if self.features is None else meets_margin(self.features, self.labels, self.w, head)
            self._done[key] = (margin_regions(self.w, head), ok)
        return self._done[key]


def draw_margins(fig, class_directions, features, labels, margins: dict, cache: MarginCache | None = None) -> dict:
    """One disc per head: coloured sectors where a class meets its margin, white gaps, the toy's features on top
    (filled where a feature meets its own class's margin, hollow where not).

    Returns, per head, the gap share of the circle and the share of features meeting their class's margin.
    """
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.patches import Circle, Wedge

    w = _unit(class_directions)
    k = len(w)
    colors = [colormaps["tab10"](i % 10) for i in range(k)]
    cache = cache or MarginCache(w, features, labels)
    feats = _unit(features) if features is not None else None
    axes = fig.subplots(1, len(margins))
    out = {}
    for ax, (name, m) in zip(np.atleast_1d(axes), margins.items()):
        regions, ok = cache(name, m)
        step = 360.0 / len(regions.angles)
        sectors = [(Wedge((0, 0), 1.0, a * step, b * step), colors[cls]) for a, b, cls in _runs(regions.winner)
                   if cls >= 0]
        if sectors:  # one collection per disc: far cheaper to draw than one patch per sector
            ax.add_collection(PatchCollection([w_ for w_, _ in sectors], facecolors=[c for _, c in sectors],
                                              alpha=0.35, linewidths=0))
        ax.add_collection(LineCollection([[(0, 0), (1.15 * w[j, 0], 1.15 * w[j, 1])] for j in range(k)],
                                         colors=colors, linewidths=1))
        share = math.nan
        if feats is not None:
            lab = np.asarray(labels)
            share = float(ok.mean())
            radius = 1.0 + 0.05 * np.sin(np.arange(len(feats)) * 12.9898)  # a fixed spread, to see overlaps
            xy = feats * radius[:, None]
            c = np.array([colors[i] for i in lab])
            ax.scatter(xy[ok, 0], xy[ok, 1], s=7, c=c[ok], linewidths=0)  # filled: meets its class's margin
            ax.scatter(xy[~ok, 0], xy[~ok, 1], s=9, facecolors="none", edgecolors=c[~ok], linewidths=0.6)
        ax.add_patch(Circle((0, 0), 1.0, fill=False, color="grey", lw=0.6))
        ax.set(xlim=(-1.25, 1.25), ylim=(-1.25, 1.25), aspect="equal", xticks=[], yticks=[])
        meeting = f", {share:.0%} of faces meet it" if feats is not None else ""
        ax.set_title(f"{name} {HEADS[name][0]}={m:.2f}\ngap {regions.gap_fraction:.0%}{meeting}", fontsize=8)
        out[name] = {"gap_fraction": regions.gap_fraction, "features_meeting_margin": share}
    return out


def explore_margins(class_weights, features=None, labels=None, **margins) -> Exploration:
    """Three sliders, SphereFace m, CosFace m and ArcFace m (radians), over the 2-D toy's decision regions.

    Args:
        class_weights: (K, 2) class weight vectors of a 2-D margin classifier (their directions are used).
        features, labels: optional (N, 2) features of faces and their (N,) classes, drawn on the circle.
        **margins: starting margins, e.g. ``ArcFace=0.5`` (defaults: the package's defaults).
    """
    w = _unit(class_weights)
    if features is not None:
        features = _unit(features)
        labels = None if labels is None else torch.as_tensor(labels).detach().cpu().long().numpy()
        if labels is None or len(labels) != len(features):
            raise ConfigError("features need labels of the same length")
        if labels.min() < 0 or labels.max() >= len(w):
            raise ConfigError(f"labels go up to {int(np.max(labels))} but there are {len(w)} class weights")
    unknown = set(margins) - set(HEADS)
    if unknown:
        raise ConfigError(f"unknown margin(s) {sorted(unknown)}; use {', '.join(HEADS)}")
    controls = {name: Slider(lo, hi, step, float(margins.get(name, default)), description=f"{name} {arg}")
                for name, (arg, lo, hi, step, default) in HEADS.items()}
    cache = MarginCache(w, features, labels)
    with one_thread():
        for name in HEADS:  # every slider position of every head, now: ~250 small evaluations
            for m in controls[name].values():
                cache(name, m)
    return Exploration(
        lambda fig, **m: draw_margins(fig, w, features, labels, m, cache),
        controls, figsize=(9.0, 3.5),
        static_grid=[{n: HEADS[n][1] for n in HEADS}, {"SphereFace": 2.0, "CosFace": 0.5, "ArcFace": 0.8}],
        grid_title="no margin (left) and larger margins (right)",
    )
