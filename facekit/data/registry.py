"""Build any facekit dataset by name (:func:`load_dataset`).

Finding the real datasets on disk lives in :mod:`facekit.data.roots`; its names are re-exported
here (``find_data_root``, ``DatasetNotFound``, ...) for existing imports.
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import NamedTuple

from facekit.config import ConfigError
from facekit.data.folders import ImageFolderFaces
from facekit.data.roots import (DATA_ENV, DATA_FOLDERS, LFW_FOLDERS, REPO_ROOT, DatasetNotFound,  # noqa: F401
                                available_datasets, find_data_root, is_lfw_people, search_dirs)

class _Loader(NamedTuple):
    target: str  # "module:attribute", imported on first use
    takes_root: bool
    summary: str


_LOADERS: dict[str, _Loader] = {
    "synthetic": _Loader("facekit.data.synthetic:SyntheticFaces", False, "generated faces, no files"),
    "orl": _Loader("facekit.data.orl:load_orl", True, "AT&T/ORL, 40 people x 10 grey images"),
    "lfw": _Loader("facekit.data.lfw:lfw_people", True, "LFW people with >= min_images images"),
    "lfw_pairs": _Loader("facekit.data.lfw:LFWPairs", True, "LFW verification pairs (10 folds)"),
    "dlib": _Loader("facekit.data.detection:DlibFaceBoxes", True, "dlib face boxes (detection)"),
}
DATASET_NAMES = tuple(_LOADERS)


def _resolve(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def load_dataset(name_or_path, root=None, **kwargs):
    """Build a dataset by registered name, or an :class:`ImageFolderFaces` from a folder path.

    Args:
        name_or_path: one of :data:`DATASET_NAMES` or an existing ``root/<identity>/<image>`` folder
            (a registered name wins over a same-named folder; pass a ``Path`` to force a folder).
        root: where to look for a real dataset (see :func:`find_data_root`).
        **kwargs: passed to the dataset's constructor.

    Raises:
        ConfigError: unknown name that is not a directory either, or ``root`` for "synthetic"/a folder.

    >>> load_dataset("no_such_set")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    facekit.config.ConfigError: unknown dataset 'no_such_set' (and not an existing folder); accepted: synthetic, ...
    """
    if isinstance(name_or_path, str) and name_or_path in _LOADERS:
        loader = _LOADERS[name_or_path]
        if loader.takes_root:
            return _resolve(loader.target)(root=root, **kwargs)
        if root is not None:
            raise ConfigError(f"dataset {name_or_path!r} is generated and takes no root (got root={root!r})")
        return _resolve(loader.target)(**kwargs)
    if os.path.isdir(name_or_path):
        if root is not None:
            raise ConfigError(f"root={root!r} is not used with a folder path; pass the folder itself")
        return ImageFolderFaces(name_or_path, **kwargs)
    close = difflib.get_close_matches(str(name_or_path), _LOADERS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"unknown dataset {str(name_or_path)!r}{hint} (and not an existing folder); "
        f"accepted: {', '.join(_LOADERS)}, or a folder laid out as root/<identity>/<image>"
    )
