"""A face gallery: enrol embeddings with identities, then search probes by cosine similarity (top-k).

Embeddings are L2-normalised, so the inner product is the cosine similarity. Two backends return the
same neighbours: ``faiss`` (``faiss.IndexFlatIP``, exact inner-product search in C++, the library
production systems use, with approximate indexes for millions of faces) and ``torch`` (one matrix
product and ``topk``). ``backend="auto"`` takes faiss when it is installed.

>>> index = FaceIndex(2, backend="torch")
>>> index.add([[1.0, 0.0], [0.0, 1.0]], ["ann", "bob"])
>>> hits = index.search([[0.9, 0.1]], k=2)
>>> hits.labels.tolist(), hits.indices.tolist()
([['ann', 'bob']], [[0, 1]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facekit.config import choice
from facekit.metrics.identification import l2_normalize

BACKENDS = ("auto", "faiss", "torch")


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _unit_rows(x, dim: int, what: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must be (N, {dim}) embeddings, got shape {arr.shape}")
    return np.ascontiguousarray(l2_normalize(arr, np.float32))


@dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # (Q, k) cosine similarity, best first
    indices: np.ndarray  # (Q, k) row of each neighbour in the gallery (enrolment order)
    labels: np.ndarray  # (Q, k) identity of each neighbour


class FaceIndex:
    """An enrolment gallery of L2-normalised embeddings with identities.

    Args:
        dim: embedding width D.
        backend: "faiss", "torch" or "auto" (faiss if installed).
    """

    def __init__(self, dim: int, backend: str = "auto"):
        choice(backend, BACKENDS, name="backend")
        if dim < 1:
            raise ValueError(f"dim={dim} must be >= 1")
        if backend == "faiss" and not faiss_available():
            raise ImportError("backend='faiss' needs faiss: pip install faiss-cpu (or use backend='torch')")
        self.dim = int(dim)
        self.backend = ("faiss" if faiss_available() else "torch") if backend == "auto" else backend
        self._labels: list = []
        self._vectors = np.zeros((0, self.dim), np.float32)  # (G, D), torch backend
        if self.backend == "faiss":
            import faiss

            self._faiss = faiss.IndexFlatIP(self.dim)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> np.ndarray:
        return np.array(self._labels)

    def add(self, embeddings, labels) -> None:
        """Enrol (N, D) embeddings with their N identities (several images per person are fine)."""
        vectors = _unit_rows(embeddings, self.dim, "embeddings")
        labels = list(np.asarray(labels).reshape(-1).tolist())
        if len(labels) != len(vectors):
            raise ValueError(f"got {len(vectors)} embeddings but {len(labels)} labels")
        if self.backend == "faiss":
            self._faiss.add(vectors)
        else:
            self._vectors = np.concatenate([self._vectors, vectors])
        self._labels += labels

    def search(self, queries, k: int = 1) -> SearchResult:
        """The `k` most similar gallery entries of each (Q, D) query, best first."""
        if len(self) == 0:
            raise ValueError("the index is empty; add() embeddings first")
        if not 1 <= k <= len(self):
            raise ValueError(f"k={k} must be between 1 and the gallery size {len(self)}")
        q = _unit_rows(queries, self.dim, "queries")
        if self.backend == "faiss":
            scores, indices = self._faiss.search(q, k)
        else:
            sims = torch.from_numpy(q) @ torch.from_numpy(self._vectors).T  # (Q, G)
            top = sims.topk(k, dim=1)
            scores, indices = top.values.numpy(), top.indices.numpy()
        return SearchResult(scores.astype(np.float32), indices.astype(np.int64), self.labels[indices])


__all__ = ["FaceIndex", "SearchResult", "faiss_available", "BACKENDS"]
