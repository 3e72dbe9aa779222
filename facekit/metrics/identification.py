"""Closed-set identification and the one normalise/cosine helper of facekit.

Embeddings are compared by cosine similarity: :func:`l2_normalize` rows, then inner products.
:func:`identification` ranks gallery identities per probe (rank-1, CMC); :func:`enrol` builds one
template per person (the normalised mean of their normalised embeddings) and :func:`identify` names
each probe by its nearest template.

>>> l2_normalize([[3.0, 4.0]]).tolist()
[[0.6, 0.8]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

NORM_EPS = 1e-12  # rows shorter than this are divided by it instead (a zero row stays zero)


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def l2_normalize(x, dtype=np.float64) -> np.ndarray:
    """(N, D) rows scaled to unit length (numpy ``dtype``; tensors and lists accepted).

    >>> l2_normalize(np.zeros((1, 2))).tolist()
    [[0.0, 0.0]]
    """
    arr = _to_numpy(x).astype(dtype)
    return arr / np.maximum(np.linalg.norm(arr, axis=-1, keepdims=True), NORM_EPS).astype(dtype)


def cosine_scores(emb_a, emb_b) -> np.ndarray:
    """(N, D), (N, D) embeddings of the two sides of N pairs -> (N,) float64 cosine similarities.

    >>> cosine_scores([[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [-1.0, 1.0]]).tolist()
    [1.0, 0.0]
    """
    a, b = _to_numpy(emb_a), _to_numpy(emb_b)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (N, D) arrays of the same shape, got {a.shape} and {b.shape}")
    return (l2_normalize(a) * l2_normalize(b)).sum(1)


@dataclass(frozen=True)
class IdentificationResult:
    rank1: float  # fraction of probes whose identity is ranked first
    cmc: np.ndarray  # (R,) cumulative match characteristic: cmc[r - 1] = fraction identified within rank r
    at_ranks: dict  # {rank: identification rate} for the requested ranks (ranks > R give 1.0)
    probe_ranks: np.ndarray  # (P,) 1-based rank of each probe's true identity
    num_probes: int  # P
    num_gallery_identities: int  # R


def identification(gallery_emb, gallery_labels, probe_emb, probe_labels,
                   ranks: Sequence[int] = (1, 5, 10)) -> IdentificationResult:
    """Closed-set identification: rank the gallery identities by cosine similarity for each probe.

    An identity's score for a probe is the highest cosine over its gallery images; the rank of
    the probe's true identity counts the identities scoring at least as high (ties count
    against the probe). Every probe identity must be in the gallery.

    Args:
        gallery_emb: (G, D) gallery embeddings; gallery_labels: (G,) their identities.
        probe_emb: (P, D) probe embeddings; probe_labels: (P,) their identities.
        ranks: ranks to report in ``at_ranks``.

    >>> g = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
    >>> r = identification(g, [0, 1, 2], [[0.9, 0.2], [0.6, 0.5]], [0, 1], ranks=(1, 2))
    >>> r.rank1, r.probe_ranks.tolist(), r.at_ranks
    (0.5, [1, 2], {1: 0.5, 2: 1.0})
    """
    g = torch.as_tensor(_to_numpy(gallery_emb), dtype=torch.float64)
    p = torch.as_tensor(_to_numpy(probe_emb), dtype=torch.float64)
    g_lab, p_lab = _to_numpy(gallery_labels).reshape(-1), _to_numpy(probe_labels).reshape(-1)
    if g.ndim != 2 or p.ndim != 2 or g.shape[1] != p.shape[1] or len(g_lab) != len(g) or len(p_lab) != len(p):
        raise ValueError(f"expected (G, D), (G,), (P, D), (P,), got {tuple(g.shape)}, {g_lab.shape}, "
                         f"{tuple(p.shape)}, {p_lab.shape}")
    identities, g_idx = np.unique(g_lab, return_inverse=True)  # (R,), (G,) identity index of each image
    missing = ~np.isin(p_lab, identities)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} probe(s) have identities absent from the gallery (e.g. "
                         f"{p_lab[missing][0]!r}); closed-set identification needs every probe identity in it")
    sim = torch.from_numpy(l2_normalize(p) @ l2_normalize(g).T)  # (P, G) cosine
    index = torch.as_tensor(g_idx, dtype=torch.long).expand(len(p), -1)
    per_identity = torch.full((len(p), len(identities)), -math.inf, dtype=torch.float64)
    per_identity = per_identity.scatter_reduce(1, index, sim, reduce="amax").numpy()  # (P, R) best image per identity
    true_col = np.searchsorted(identities, p_lab)  # (P,)
    true_score = per_identity[np.arange(len(p)), true_col][:, None]
    probe_ranks = (per_identity >= true_score).sum(1)  # 1 = first; ties with other identities count against
    cmc = np.array([(probe_ranks <= r).mean() for r in range(1, len(identities) + 1)])
    at_ranks = {int(r): float(cmc[min(r, len(cmc)) - 1]) for r in ranks}
    return IdentificationResult(float(cmc[0]), cmc, at_ranks, probe_ranks, len(p), len(identities))


@dataclass(frozen=True)
class Gallery:
    templates: np.ndarray  # (C, D) unit-length mean embedding of each enrolled person
    labels: np.ndarray  # (C,) their identities
    shots: np.ndarray  # (C,) images enrolled per person


def enrol(embeddings, labels) -> Gallery:
    """One template per person: the normalised mean of their (normalised) enrolment embeddings."""
    emb = _to_numpy(embeddings).astype(np.float64)
    labels = np.asarray(labels)
    if emb.ndim != 2 or len(emb) != len(labels) or len(emb) == 0:
        raise ValueError(f"expected (N, D) embeddings and (N,) labels, N > 0; got {emb.shape} and {labels.shape}")
    emb = l2_normalize(emb)
    people, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(people), emb.shape[1]))
    np.add.at(sums, inverse, emb)
    return Gallery(l2_normalize(sums), people, counts)


def identify(gallery: Gallery, probes) -> tuple[np.ndarray, np.ndarray]:
    """Nearest template by cosine: ``(predicted labels (P,), best cosine (P,))``."""
    p = _to_numpy(probes).astype(np.float64)
    if p.ndim != 2 or p.shape[1] != gallery.templates.shape[1]:
        raise ValueError(f"expected probes (P, {gallery.templates.shape[1]}), got {p.shape}")
    p = l2_normalize(p)
    cos = p @ gallery.templates.T  # (P, C)
    best = cos.argmax(1)
    return gallery.labels[best], cos[np.arange(len(p)), best]


__all__ = ["NORM_EPS", "l2_normalize", "cosine_scores", "IdentificationResult", "identification", "Gallery", "enrol",
           "identify"]
