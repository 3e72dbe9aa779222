"""Chapter 0: the synthetic generator's difficulty and nuisance knobs, redrawing a grid of one identity.

Every slider is a field of :class:`facekit.data.synthetic.Difficulty` (the range each image draws its nuisance
from); the grid shows images ``0..n-1`` of one person exactly as ``SyntheticFaces`` renders them, so the same
seed, person and knobs give the same pictures as the dataset.

>>> grid = identity_grid(person=2, images=4, image_size=32)
>>> tuple(grid.shape)
(4, 3, 32, 32)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from facekit.explore.core import Exploration, Slider

__all__ = ["KNOBS", "identity_grid", "draw_generator", "explore_generator"]

KNOBS = {  # Difficulty field: (slider lo, hi, step)
    "rotation_deg": (0.0, 45.0, 1.0),
    "yaw": (0.0, 60.0, 1.0),
    "lighting": (0.0, 1.0, 0.05),
    "expression": (0.0, 1.0, 0.05),
    "occlusion_prob": (0.0, 1.0, 0.05),
    "blur_sigma": (0.0, 0.05, 0.002),
    "noise_std": (0.0, 0.2, 0.005),
    "clutter": (0.0, 1.0, 0.05),
}


def identity_grid(person: int = 0, images: int = 8, image_size: int = 64, *, seed: int = 0,
                  difficulty="medium", **knobs) -> torch.Tensor:
    """(images, 3, S, S) images of one synthetic person under ``difficulty`` with ``knobs`` overriding its fields.

    Image ``j`` is the dataset's ``SyntheticFaces(..., seed=seed, difficulty=...)`` image ``j`` of that person.
    """
    from facekit.data.synthetic import render_face, resolve_difficulty, sample_identity, sample_nuisance

    d = dataclasses.replace(resolve_difficulty(difficulty), **knobs)  # a typo is a TypeError naming the field
    who = sample_identity(seed, int(person), d.identity_spread)
    imgs = [render_face(who, sample_nuisance(seed, int(person), j, d), image_size)[0] for j in range(images)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


def draw_generator(fig, person: int, seed: int, images: int, image_size: int, **knobs) -> None:
    """One row (or two) of images of ``person`` under the knobs."""
    from torchvision.utils import make_grid

    grid = identity_grid(person, images, image_size, seed=seed, **knobs)
    nrow = images if images <= 8 else (images + 1) // 2
    ax = fig.subplots()
    ax.imshow(make_grid(grid, nrow=nrow, padding=2, pad_value=1.0).permute(1, 2, 0).numpy())
    ax.set_axis_off()
    medium = _preset("medium")
    changed = [f"{k} {v:.3g}" for k, v in knobs.items() if not np.isclose(v, medium[k])]
    ax.set_title(f"person {person}, images 0-{images - 1}; "
                 + (f"changed from medium: {', '.join(changed)}" if changed else "the medium preset"), fontsize=8)


def _preset(name: str) -> dict:
    from facekit.data.synthetic import Difficulty

    p = Difficulty.preset(name)
    return {k: float(getattr(p, k)) for k in KNOBS}


def explore_generator(*, person: int = 0, seed: int = 0, images: int = 8, image_size: int = 64,
                      num_people: int = 20) -> Exploration:
    """Sliders for each difficulty knob (starting at the "medium" preset) and the person; a grid of their images.

    Args:
        person: the starting person; num_people: the person slider's range.
        seed: the population (as ``SyntheticFaces(seed=...)``); images, image_size: the grid.
    """
    start = _preset("medium")
    controls = {"person": Slider(0, num_people - 1, 1, person, integer=True, description="person")}
    controls.update({k: Slider(lo, hi, step, min(max(start[k], lo), hi), description=k.replace("_", " "))
                     for k, (lo, hi, step) in KNOBS.items()})
    return Exploration(
        lambda fig, person, **knobs: draw_generator(fig, person, seed, images, image_size, **knobs),
        controls,
        figsize=(1.1 * min(images, 8) + 0.2, 1.5 if images <= 8 else 2.6),
        static_grid=[_preset("easy"), _preset("hard")],
        grid_title="the easy (left) and the hard (right) presets",
    )
