"""LFW's pair lists: the parser of ``pairs.txt``, ``pairsDevTrain.txt`` and ``pairsDevTest.txt``.

The first line is ``folds<TAB>n`` (``pairs.txt``: ``10 300``) or ``n`` (``pairsDevTrain.txt``: 1100,
``pairsDevTest.txt``: 500, one fold). Each fold is ``n`` same-person lines ``name i j`` then ``n``
different-person lines ``name1 i name2 j``; image ``i`` of ``name`` is ``<images_dir>/<name>/<name>_%04d.jpg``
(Huang et al., 2007). The dataset and the protocol built on it are in :mod:`facekit.data.lfw`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facekit.config import choice
from facekit.data.registry import DatasetNotFound, find_data_root

PAIRS_FILES = {"pairs": "pairs.txt", "dev_train": "pairsDevTrain.txt", "dev_test": "pairsDevTest.txt"}
ON_MISSING_CHOICES = ("raise", "skip")
SAME_FIELDS, DIFFERENT_FIELDS = 3, 4
IMAGE_NAME = "{name}_{index:04d}.jpg"


class PairsFileError(ValueError):
    """A malformed LFW pairs file; the message names the file and line."""


class PairImageMissing(PairsFileError, FileNotFoundError):
    """A pairs-file line naming an image that is not on disk."""


@dataclass(frozen=True)
class Pair:
    """One verification pair: two image paths, whether they show the same person, fold and line number."""

    path_a: Path
    path_b: Path
    is_same: bool
    fold: int
    line: int


@dataclass
class PairsFile:
    """A parsed pairs file: ``folds[k]`` is the list of pairs of fold ``k`` (same ones first)."""

    folds: list[list[Pair]]
    skipped: list[tuple[int, str]]
    path: Path
    images_dir: Path | None = field(default=None)

    @property
    def pairs(self) -> list[Pair]:
        return [p for fold in self.folds for p in fold]

    def __len__(self) -> int:
        return sum(len(f) for f in self.folds)


def lfw_image_path(images_dir, name: str, index: int) -> Path:
    """``<images_dir>/<name>/<name>_%04d.jpg``."""
    return Path(images_dir) / name / IMAGE_NAME.format(name=name, index=index)


def _parse_header(path: Path, line_no: int, fields: list[str]) -> tuple[int, int]:
    try:
        values = [int(f) for f in fields]
    except ValueError:
        values = []
    if len(values) == 1:
        values = [1, *values]
    if len(values) != 2 or min(values) < 1:
        raise PairsFileError(
            f"{path}, line {line_no}: header {' '.join(fields)!r} is neither 'folds<TAB>pairs_per_class' "
            f"(pairs.txt: '10 300') nor 'pairs_per_class' (pairsDevTrain.txt: '1100')"
        )
    return values[0], values[1]


def _parse_pair(path: Path, line_no: int, fields: list[str], want_same: bool, images_dir: Path):
    where = f"{path}, line {line_no}"
    if len(fields) not in (SAME_FIELDS, DIFFERENT_FIELDS):
        raise PairsFileError(
            f"{where}: expected 3 fields 'name i j' or 4 fields 'name1 i name2 j', "
            f"got {len(fields)}: {' '.join(fields)!r}"
        )
    is_same = len(fields) == SAME_FIELDS
    if is_same != want_same:
        kind, expected = ("same", "different") if is_same else ("different", "same")
        raise PairsFileError(
            f"{where}: a {kind}-person pair where the header's layout expects a {expected}-person pair"
        )
    names = (fields[0], fields[0]) if is_same else (fields[0], fields[2])
    raw = (fields[1], fields[2]) if is_same else (fields[1], fields[3])
    indices = []
    for value in raw:
        if not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise PairsFileError(f"{where}: image number {value!r} is not a positive integer")
        indices.append(int(value))
    return is_same, [lfw_image_path(images_dir, n, i) for n, i in zip(names, indices)]


def read_pairs(pairs_file, images_dir=None, *, on_missing: str = "raise") -> PairsFile:
    """Parse an LFW pairs file and check that every image it names exists.

    Args:
        pairs_file: ``pairs.txt``, ``pairsDevTrain.txt`` or ``pairsDevTest.txt``.
        images_dir: the folder holding the person folders; default: found from the pairs file's folder.
        on_missing: "raise" (:class:`PairImageMissing`, naming file, line and image) or "skip"
            (the line goes to ``skipped`` as ``(line_no, reason)``).

    Raises:
        PairsFileError: a malformed header or line, or a header that disagrees with the line count.

    >>> pf = read_pairs(find_data_root("lfw") / "pairs.txt")  # doctest: +SKIP
    >>> len(pf.folds), len(pf), sum(p.is_same for p in pf.pairs)  # doctest: +SKIP
    (10, 6000, 3000)
    """
    on_missing = choice(on_missing, ON_MISSING_CHOICES, name="on_missing")
    path = Path(pairs_file)
    if not path.is_file():
        raise DatasetNotFound(f"LFW pairs file {path} not found")
    images_dir = Path(images_dir) if images_dir is not None else find_data_root("lfw", path.parent)
    numbered = [(no, line.split()) for no, line in enumerate(path.read_text().splitlines(), 1)]
    numbered = [(no, fields) for no, fields in numbered if fields]
    if not numbered:
        raise PairsFileError(f"{path} is empty")
    (header_no, header), lines = numbered[0], numbered[1:]
    n_folds, per_class = _parse_header(path, header_no, header)
    per_fold = 2 * per_class
    if len(lines) != n_folds * per_fold:
        raise PairsFileError(
            f"{path}: the header (line {header_no}) says {n_folds} fold(s) x ({per_class} same + "
            f"{per_class} different) = {n_folds * per_fold} pairs, but the file has {len(lines)} pair lines"
        )
    folds: list[list[Pair]] = [[] for _ in range(n_folds)]
    skipped: list[tuple[int, str]] = []
    exists: dict[Path, bool] = {}
    for k, (line_no, fields) in enumerate(lines):
        fold, position = divmod(k, per_fold)
        is_same, paths = _parse_pair(path, line_no, fields, position < per_class, images_dir)
        missing = [p for p in paths if not exists.setdefault(p, p.is_file())]
        if missing:
            reason = f"image {missing[0]} not found"
            if on_missing == "raise":
                raise PairImageMissing(
                    f"{path}, line {line_no}: {reason} (images folder {images_dir}); check that it is "
                    f"the right LFW variant, or pass on_missing='skip'"
                )
            skipped.append((line_no, reason))
            continue
        folds[fold].append(Pair(paths[0], paths[1], is_same, fold, line_no))
    return PairsFile(folds, skipped, path, images_dir)


def find_pairs_file(split: str = "pairs", root=None) -> Path:
    """The pairs file of ``split`` ("pairs", "dev_train", "dev_test"): beside the person folders, or in root."""
    choice(split, PAIRS_FILES, name="split")
    images_dir = find_data_root("lfw", root)
    places = [images_dir, *([Path(root)] if root is not None else []), images_dir.parent]
    for place in dict.fromkeys(places):
        candidate = place / PAIRS_FILES[split]
        if candidate.is_file():
            return candidate
    raise DatasetNotFound(
        f"LFW pairs file {PAIRS_FILES[split]} not found in {', '.join(map(str, dict.fromkeys(places)))}; "
        f"put it beside the person folders (facekit.data.download_lfw() does)"
    )
