"""A small on-disk store of per-image arrays keyed by the image's *content* (its file digest), written atomically.

One ``.npz`` per pipeline setting holds ``keys`` (N,) and one stacked array per field; an entry is
``{field: array}`` with the same shapes in every entry. Keys are content digests, so a file replaced
under the same name is looked up anew and never gets another image's result, while moved or copied
data keeps its cache. A damaged file is ignored (recomputed), never trusted.

>>> import tempfile, pathlib
>>> where = pathlib.Path(tempfile.mkdtemp()) / "x.npz"
>>> save_entries(where, {"ab12": {"v": np.zeros(2)}})
>>> load_entries(where)["ab12"]["v"].tolist()
[0.0, 0.0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facekit.io import atomic_path, file_sha256

KEY_DIGITS = 16  # hex digits of the sha256 kept as the key (64 bits: no collision among billions of photos)


def image_key(path) -> str:
    """The cache key of a file: the first 16 hex digits of the sha256 of its bytes.

    Raises:
        facekit.data.images.ImageReadError: the file is missing or is not a file (named).
    """
    from facekit.data.images import ImageReadError

    path = Path(path)
    try:
        return file_sha256(path)[:KEY_DIGITS]
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image file") from None


def load_entries(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{key: {field: array}}`` from ``path`` ({} when it is missing or damaged)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = data["keys"].tolist()
            fields = {k: data[k] for k in data.files if k != "keys"}
    except (OSError, ValueError, KeyError):  # a damaged cache is recomputed, never trusted
        return {}
    if any(len(v) != len(keys) for v in fields.values()):
        return {}
    return {key: {k: v[i] for k, v in fields.items()} for i, key in enumerate(keys)}


def save_entries(path: Path, entries: dict[str, dict[str, np.ndarray]]) -> None:
    """Write ``entries`` to ``path`` atomically (every entry must have the same fields and shapes)."""
    keys = sorted(entries)
    fields = {k: np.stack([np.asarray(entries[n][k]) for n in keys]) for k in entries[keys[0]]} if keys else {}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, keys=np.array(keys, dtype=str), **fields)


__all__ = ["image_key", "load_entries", "save_entries"]
