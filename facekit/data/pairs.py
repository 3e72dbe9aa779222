"""Genuine and impostor verification pairs drawn from labelled images (open-set evaluation, pair training).

LFW ships its pairs (``pairs.txt``); for any other labelled set, :func:`make_pairs` draws them:
``num_same`` genuine pairs uniformly among all pairs of two different images of one person, and
``num_diff`` impostor pairs uniformly among all pairs of images of two different people. Every
pair is unordered (``a < b``) and appears at most once; the genuine and impostor pairs come in
one shuffled order, so contiguous k-fold splits (``kfold_accuracy(..., folds=10)``) mix both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DRAW_BATCH = 4096  # at most this many candidate pairs drawn at a time by the rejection sampler


@dataclass(frozen=True)
class Pairs:
    """Index pairs into a set of images: ``(a[i], b[i])`` shows the same person iff ``is_same[i]``."""

    a: np.ndarray  # (N,) int64 index of the first image of each pair
    b: np.ndarray  # (N,) int64 index of the second image, a < b
    is_same: np.ndarray  # (N,) bool: genuine (same person) or impostor

    def __len__(self) -> int:
        return len(self.is_same)

    @property
    def num_genuine(self) -> int:
        return int(self.is_same.sum())

    @property
    def num_impostor(self) -> int:
        return int((~self.is_same).sum())


def _as_labels(labels) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one label per image, shape (N,), got shape {y.shape}")
    return y


def count_pairs(labels) -> tuple[int, int]:
    """``(genuine, impostor)``: how many distinct unordered pairs of each kind the labels allow.

    >>> count_pairs([0, 0, 0, 1, 1])  # 3 + 1 same-person pairs, 3 * 2 different-person pairs
    (4, 6)
    """
    y = _as_labels(labels)
    _, counts = np.unique(y, return_counts=True)
    genuine = int((counts * (counts - 1) // 2).sum())
    n = len(y)
    return genuine, n * (n - 1) // 2 - genuine


def _check_count(name: str, wanted: int, available: int, what: str) -> int:
    if isinstance(wanted, bool) or not isinstance(wanted, (int, np.integer)) or wanted < 0:
        raise ValueError(f"{name}={wanted!r} must be an int >= 0")
    if wanted > available:
        raise ValueError(f"{name}={wanted} but these labels allow only {available} distinct {what} pairs; "
                         f"ask for fewer or add images")
    return int(wanted)


def _unique_pairs(rng, wanted: int, total: int, draw, enumerate_all) -> np.ndarray:
    """(wanted, 2) distinct unordered pairs, a uniform sample without replacement of the `total` valid ones.

    Dense requests (more than half of all pairs) enumerate every pair and choose; sparse ones draw
    candidates with ``draw(rng, n) -> (n, 2) sorted pairs`` and keep the first unseen ones.
    """
    if wanted == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if 2 * wanted > total:
        every = enumerate_all()  # (total, 2)
        return every[np.sort(rng.choice(len(every), size=wanted, replace=False))]
    seen: dict[tuple[int, int], None] = {}  # insertion-ordered: the result does not depend on hashing
    while len(seen) < wanted:
        for a, b in draw(rng, min(DRAW_BATCH, 2 * (wanted - len(seen)) + 8)).tolist():
            seen.setdefault((a, b))
            if len(seen) == wanted:
                break
    return np.array(list(seen), dtype=np.int64).reshape(-1, 2)


def _impostor_draws(y: np.ndarray):
    """``(draw(rng, k), all())`` of impostor pairs ``a < b`` of labels ``y``: k random draws (pairs of one
    person dropped), or every such pair."""
    n = len(y)

    def draw_diff(r, k):
        ab = r.integers(n, size=(k, 2))
        ab = ab[y[ab[:, 0]] != y[ab[:, 1]]]
        return np.sort(ab, axis=1)

    def all_diff():
        a, b = np.triu_indices(n, 1)
        keep = y[a] != y[b]
        return np.stack([a[keep], b[keep]], 1)

    return draw_diff, all_diff


def make_pairs(labels, num_same: int, num_diff: int, seed: int = 0) -> Pairs:
    """Draw `num_same` genuine and `num_diff` impostor pairs of images, each pair at most once.

    Args:
        labels: (N,) identity of each image (a list, numpy array or tensor).
        num_same: genuine pairs (two different images of one person), uniform over all such pairs.
        num_diff: impostor pairs (images of two different people), uniform over all such pairs.
        seed: the same seed and labels give the same pairs.

    Returns:
        :class:`Pairs` with (num_same + num_diff,) arrays ``a < b`` and ``is_same``, in a shuffled order.

    Raises:
        ValueError: more pairs asked for than the labels allow (:func:`count_pairs`).

    >>> p = make_pairs([0, 0, 1, 1, 2], num_same=2, num_diff=3, seed=0)
    >>> len(p), p.num_genuine, bool((p.a < p.b).all())
    (5, 2, True)
    >>> sorted(zip(p.a[p.is_same].tolist(), p.b[p.is_same].tolist()))  # the only two genuine pairs
    [(0, 1), (2, 3)]
    """
    y = _as_labels(labels)
    total_same, total_diff = count_pairs(y)
    num_same = _check_count("num_same", num_same, total_same, "genuine (same-person)")
    num_diff = _check_count("num_diff", num_diff, total_diff, "impostor (different-person)")
    rng = np.random.default_rng(seed)

    order = np.argsort(y, kind="stable")  # image indices grouped by identity
    _, start, counts = np.unique(y[order], return_index=True, return_counts=True)
    weights = counts * (counts - 1) / 2.0  # genuine pairs per identity

    def draw_same(r, k):
        ident = r.choice(len(counts), size=k, p=weights / weights.sum())  # identity of each pair
        m = counts[ident]
        i = np.floor(r.random(k) * m).astype(np.int64)  # two different positions within the identity
        j = np.floor(r.random(k) * (m - 1)).astype(np.int64)
        j += j >= i
        a, b = order[start[ident] + i], order[start[ident] + j]
        return np.sort(np.stack([a, b], 1), axis=1)

    def all_same():
        out = [np.stack(np.triu_indices(c, 1), 1) for c in counts]
        return np.sort(np.concatenate([order[s + p] for s, p in zip(start, out)]), axis=1).reshape(-1, 2)

    same = _unique_pairs(rng, num_same, total_same, draw_same, all_same)  # (num_same, 2)
    diff = _unique_pairs(rng, num_diff, total_diff, *_impostor_draws(y))  # (num_diff, 2)
    ab = np.concatenate([same, diff]).astype(np.int64)
    is_same = np.r_[np.ones(len(same), bool), np.zeros(len(diff), bool)]
    perm = rng.permutation(len(ab))
    return Pairs(ab[perm, 0], ab[perm, 1], is_same[perm])


__all__ = ["Pairs", "make_pairs", "count_pairs"]
