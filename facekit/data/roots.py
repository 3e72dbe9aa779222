"""Find the real datasets on disk.

Search order for a real dataset (:func:`find_data_root`):

1. the ``root`` argument, when given (and then *only* it: a wrong explicit
   ``root`` is an error, never silently replaced by another copy);
2. every folder in ``$FACEKIT_DATA`` (several may be joined with ``os.pathsep``);
3. ``<repo>/data`` (git-ignored);
4. ``<repo>/../shared/datasets``;

where ``<repo>`` is the checkout holding the ``facekit`` package. In each place the
dataset is either the place itself or one of its sub-folders (:data:`DATA_FOLDERS`).
This module imports no dataset class, so every dataset module may import it.
"""

from __future__ import annotations

import difflib
import itertools
import os
from pathlib import Path
from typing import Callable

import facekit
from facekit.config import ConfigError

__all__ = ["DATA_ENV", "REPO_ROOT", "LFW_FOLDERS", "DATA_FOLDERS", "DatasetNotFound", "is_lfw_people",
           "search_dirs", "find_data_root", "available_datasets"]

DATA_ENV = "FACEKIT_DATA"
REPO_ROOT = Path(facekit.__file__).resolve().parents[1]
LFW_FOLDERS = ("lfw", "lfw-deepfunneled", "lfw_deepfunneled", "lfw_funneled", "lfw-funneled")
DATA_FOLDERS = {
    "lfw": LFW_FOLDERS,
    "orl": ("att_faces", "orl"),
    "dlib": ("dlib_faces",),
}
_SOURCES = {
    "lfw": "run facekit.data.download_lfw() (or get http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz "
    "and pairs*.txt by hand)",
    "orl": "copy the AT&T/ORL 'att_faces' folder (s1..s40/1..10.pgm) there",
    "dlib": "copy dlib's examples/faces folder (github.com/davisking/dlib) there as 'dlib_faces'",
}
_PEEK_ENTRIES = 64  # directory entries looked at to recognise an LFW folder


class DatasetNotFound(FileNotFoundError):
    """A dataset folder or file that is not where it was looked for; the message says where and how to fix it."""


def is_lfw_people(folder: Path) -> bool:
    """True if ``folder`` holds LFW person folders (``Name/Name_0001.jpg``)."""
    try:
        with os.scandir(folder) as entries:
            for entry in itertools.islice(entries, _PEEK_ENTRIES):
                if entry.is_dir() and os.path.isfile(os.path.join(entry.path, f"{entry.name}_0001.jpg")):
                    return True
    except OSError:
        return False
    return False


def _is_orl(folder: Path) -> bool:
    return next(folder.glob("s*/*.pgm"), None) is not None


def _is_dlib(folder: Path) -> bool:
    return (folder / "training.xml").is_file() or (folder / "testing.xml").is_file()


_MARKERS: dict[str, Callable[[Path], bool]] = {"lfw": is_lfw_people, "orl": _is_orl, "dlib": _is_dlib}


def search_dirs() -> list[Path]:
    """Default places, in order: ``$FACEKIT_DATA``, ``<repo>/data``, ``<repo>/../shared/datasets``."""
    env = os.environ.get(DATA_ENV, "")
    dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return dirs + [REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "datasets"]


def _check_name(name: str) -> str:
    if name not in DATA_FOLDERS:
        close = difflib.get_close_matches(str(name), DATA_FOLDERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown real dataset {name!r}{hint}; accepted: {', '.join(DATA_FOLDERS)}")
    return name


def find_data_root(name: str, root=None) -> Path:
    """Return the folder holding the real dataset ``name`` ("lfw", "orl" or "dlib").

    Args:
        name: the dataset; its folder is one of ``DATA_FOLDERS[name]`` or the searched place itself.
        root: a folder to look in (the dataset folder or its parent). When given, only it is searched.

    Raises:
        DatasetNotFound: listing every place searched and how to fix it.

    >>> try:
    ...     find_data_root("orl", root="/nonexistent")
    ... except DatasetNotFound as err:
    ...     print(str(err).splitlines()[0])
    dataset 'orl' not found. Searched:
    """
    _check_name(name)
    marker = _MARKERS[name]
    bases = [Path(root).expanduser()] if root is not None else search_dirs()
    searched = []
    for base in bases:
        for candidate in (base, *(base / sub for sub in DATA_FOLDERS[name])):
            if candidate.is_dir() and marker(candidate):
                return candidate
        searched.append(base)
    places = "\n".join(
        f"  - {b}  (itself, or {', '.join(DATA_FOLDERS[name])} inside it)"
        + ("" if b.is_dir() else "  [folder does not exist]")
        for b in searched
    )
    how = (
        f"pass root='/path/to/{DATA_FOLDERS[name][0]}'"
        if root is not None
        else f"set {DATA_ENV}=/path/to/datasets (currently {os.environ.get(DATA_ENV) or 'unset'}) "
        f"or pass root='/path/to/{DATA_FOLDERS[name][0]}'"
    )
    raise DatasetNotFound(
        f"dataset {name!r} not found. Searched:\n{places}\n"
        f"To fix: {how}; to get the data, {_SOURCES[name]}."
    )


def available_datasets(root=None) -> dict[str, Path | None]:
    """Which real datasets are on disk: ``{name: folder or None}`` for "lfw", "orl", "dlib".

    >>> sorted(available_datasets(root="/nonexistent").items())
    [('dlib', None), ('lfw', None), ('orl', None)]
    """
    found = {}
    for name in DATA_FOLDERS:
        try:
            found[name] = find_data_root(name, root)
        except DatasetNotFound:
            found[name] = None
    return found
