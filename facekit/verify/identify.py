"""Identification on your own photos: enrol a folder of people, query another, rank-1 / CMC and open-set rejection.

Both folders are ImageFolder layouts (``root/<person>/<image>``). Probes of people in the gallery are
*known*: closed-set identification ranks the gallery people for them (:func:`facekit.metrics.identification`,
rank-1 and the CMC). Probes of people not in the gallery are *unknown*: a watch-list system must reject
them. The threshold for a target false alarm rate is set on half of the unknown *people* and measured on
the other half (:func:`facekit.metrics.dir_at_far`), so it is never fitted on the people it is tested on.

>>> result = identify_folders("gallery/", "probes/", model="dlib")  # doctest: +SKIP
>>> result.closed_set.rank1, result.open_set.false_alarm_rate  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekit.metrics.identification import IdentificationResult, enrol, identification, identify
from facekit.metrics.openset import OpenSetResult, dir_at_far
from facekit.verify.models import make_embedder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp")
OPEN_SET_FAR = 0.01


def folder_images(root) -> tuple[list[Path], np.ndarray]:
    """``(paths, person of each)`` of an ImageFolder layout ``root/<person>/<image>`` (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {root} not found; expected root/<person>/<image> (one folder per person)")
    paths = sorted(p for d in root.iterdir() if d.is_dir() for p in d.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{root} holds no images in person folders (root/<person>/<image>, "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return paths, np.array([p.parent.name for p in paths])


@dataclass(frozen=True)
class IdentifyResult:
    closed_set: IdentificationResult | None  # known probes ranked against the gallery people (None: no known probe)
    open_set: OpenSetResult | None  # at the threshold for ``far`` set on other unknown people (None: too few)
    far: float  # the target false alarm rate
    gallery_people: int
    known_probes: int
    unknown_probes: int
    unknown_people: int
    threshold_people: int  # unknown people used to set the threshold (the others test it)


def identify_folders(gallery, probes, model="dlib", *, far: float = OPEN_SET_FAR, seed: int = 0,
                     **model_options) -> IdentifyResult:
    """Enrol ``gallery`` (one template per person), query ``probes``, measure closed- and open-set identification.

    Args:
        gallery, probes: ImageFolder layouts ``root/<person>/<image>``.
        model, model_options: as in :func:`facekit.verify.verify_pairs`.
        far: target false alarm rate of the open-set threshold.
        seed: which unknown people set the threshold (half of them, at random).
    """
    if not 0 < far < 1:
        raise ValueError(f"far={far} must be in (0, 1)")
    embed = make_embedder(model, **model_options)
    g_paths, g_people = folder_images(gallery)
    p_paths, p_people = folder_images(probes)
    g, p = embed(g_paths), embed(p_paths)
    g_ok, p_ok = np.isfinite(g.embeddings).all(1), np.isfinite(p.embeddings).all(1)  # no face: left out
    g_emb, g_people = g.embeddings[g_ok], g_people[g_ok]
    p_emb, p_people = p.embeddings[p_ok], p_people[p_ok]
    templates = enrol(g_emb, g_people)
    known = np.isin(p_people, templates.labels)
    closed = identification(g_emb, g_people, p_emb[known], p_people[known]) if known.any() else None
    names, best = identify(templates, p_emb)
    unknown_people = np.unique(p_people[~known])
    open_set, n_cal = None, 0
    if known.any() and len(unknown_people) >= 2:
        rng = np.random.default_rng(seed)
        cal_people = rng.permutation(unknown_people)[:len(unknown_people) // 2]
        n_cal = len(cal_people)
        cal = ~known & np.isin(p_people, cal_people)
        test = ~known & ~cal
        open_set = dir_at_far(best[known], names[known] == p_people[known], best[test], far,
                              calibration_scores=best[cal])
    return IdentifyResult(closed, open_set, far, len(templates.labels), int(known.sum()), int((~known).sum()),
                          len(unknown_people), n_cal)


__all__ = ["IdentifyResult", "identify_folders", "folder_images", "OPEN_SET_FAR"]
