"""Pair lists for verification: LFW's ``pairs.txt`` or any CSV/TSV of ``path1, path2, same[, fold]``.

A CSV/TSV pair list has a header row naming its columns (any order; extra columns are ignored):

- ``path1``, ``path2``: image paths, relative to ``images`` (default: the pair list's folder) or absolute;
- ``same``: 1/0, true/false, yes/no or same/different;
- ``fold`` (optional): an integer per pair; the k-fold rule then uses these folds. Without it (or with one
  fold only, as in LFW's ``pairsDevTest.txt``), pairs are
  put into ``DEFAULT_FOLDS`` folds balanced in genuine and impostor pairs and, as far as the people
  allow, disjoint in people (scikit-learn's ``StratifiedGroupKFold``; the person of an image is its
  folder's name).

Every problem names the file and line: a malformed line, a ``same`` or ``fold`` value that is not
accepted, a missing image, a list with one class only. With ``on_error="skip"`` a bad line is left out
and recorded in ``PairList.errors`` (never silently).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("a.jpg", "b.jpg", "c.jpg"): _ = (d / name).write_bytes(b"")
>>> _ = (d / "pairs.csv").write_text("path1,path2,same\\na.jpg,b.jpg,1\\na.jpg,c.jpg,0\\n")
>>> pl = read_pair_list(d / "pairs.csv", folds=2)
>>> len(pl), pl.subset.is_same.tolist(), [e.kind for e in pl.errors]
(2, [True, False], [])
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit.config import choice
from facekit.data.lfw import PairSubset, PairsFileError, read_pairs

DEFAULT_FOLDS = 10
ON_ERROR = ("raise", "skip")
TRUE_WORDS = {"1", "true", "yes", "same", "y", "t", "genuine"}
FALSE_WORDS = {"0", "false", "no", "different", "n", "f", "impostor"}
REQUIRED = ("path1", "path2", "same")


class PairListError(ValueError):
    """A pair list that cannot be used as it is; the message names the file and the line."""


@dataclass(frozen=True)
class InputError:
    """One bad input: its kind, where (file, line; 0 = not a line), and what."""

    kind: str  # "malformed line", "missing image", "unreadable image", "no face"
    file: str
    line: int
    reason: str


@dataclass
class PairList:
    """The usable pairs of a pair list and what was left out."""

    subset: PairSubset  # paths, is_same, folds (index arrays into the pairs)
    lines: np.ndarray  # (P,) line of each pair in the file
    source: Path
    errors: list = field(default_factory=list)  # InputError, one per line left out
    folds_given: bool = False  # the file gave the folds (LFW's, or a fold column)

    def __len__(self) -> int:
        return len(self.subset.is_same)

    @property
    def people(self) -> np.ndarray:
        """(P,) the person of each pair's first image (its folder name): the unit a bootstrap resamples."""
        return np.array([Path(p).parent.name for p in self.subset.paths_a])


def _is_lfw_pairs(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().split()
    return 1 <= len(first) <= 2 and all(x.isdigit() for x in first)


def _same(value: str):
    v = value.strip().lower()
    return True if v in TRUE_WORDS else False if v in FALSE_WORDS else None


def _dialect(path: Path, sample: str):
    if path.suffix.lower() in (".tsv", ".tab") or ("\t" in sample.splitlines()[0] if sample else False):
        return "excel-tab"
    return "excel"


def _fail_or_record(on_error: str, errors: list, error: InputError):
    if on_error == "raise":
        raise PairListError(f"{error.file}, line {error.line}: {error.reason}")
    errors.append(error)


def _read_table(path: Path, images: Path, on_error: str):
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(text.splitlines(), dialect=_dialect(path, text)))
    if not rows:
        raise PairListError(f"{path} is empty; expected a header row with columns {', '.join(REQUIRED)}[, fold]")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise PairListError(f"{path}, line 1: the header {rows[0]!r} lacks column(s) {', '.join(missing)}; "
                            f"expected {', '.join(REQUIRED)} and optionally fold (CSV, or TSV for .tsv files)")
    col = {name: header.index(name) for name in (*REQUIRED, "fold") if name in header}
    a, b, same, fold, lines, errors = [], [], [], [], [], []
    exists: dict[Path, bool] = {}
    for line_no, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        where = dict(file=str(path), line=line_no)
        if len(row) < len(header):
            _fail_or_record(on_error, errors, InputError("malformed line", reason=f"{len(row)} field(s) where the "
                                                         f"header has {len(header)}: {row!r}", **where))
            continue
        is_same = _same(row[col["same"]])
        if is_same is None:
            _fail_or_record(on_error, errors, InputError("malformed line", reason=f"same={row[col['same']]!r} is not "
                                                         "accepted; use 1/0, true/false, yes/no or same/different",
                                                         **where))
            continue
        k = None
        if "fold" in col:
            text_fold = row[col["fold"]].strip()
            if not text_fold.lstrip("-").isdigit():
                _fail_or_record(on_error, errors, InputError("malformed line", reason=f"fold={text_fold!r} is not "
                                                             "an integer", **where))
                continue
            k = int(text_fold)
        paths = [Path(row[col[c]].strip()) for c in ("path1", "path2")]
        paths = [p if p.is_absolute() else images / p for p in paths]
        gone = [p for p in paths if not exists.setdefault(p, p.is_file())]
        if gone:
            _fail_or_record(on_error, errors, InputError("missing image", reason=f"image {gone[0]} not found (images "
                                                         f"folder {images})", **where))
            continue
        a.append(paths[0])
        b.append(paths[1])
        same.append(is_same)
        fold.append(k)
        lines.append(line_no)
    return a, b, same, fold, lines, errors


def _make_folds(is_same: np.ndarray, people: np.ndarray, k: int) -> list[np.ndarray]:
    """k folds balanced in classes and, where the people allow, disjoint in people (StratifiedGroupKFold)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    smallest = min(int(is_same.sum()), int((~is_same).sum()))
    k = min(k, smallest) if smallest >= 2 else 2
    index = np.zeros(len(is_same))
    if len(np.unique(people)) >= k:
        splits = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0).split(index, is_same, people)
    else:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=0).split(index, is_same)
    return [np.sort(test) for _, test in splits]


def read_pair_list(path, images=None, *, on_error: str = "raise", folds: int = DEFAULT_FOLDS) -> PairList:
    """Read LFW's ``pairs.txt`` (recognised by its numeric header) or a CSV/TSV pair list (module docstring).

    Args:
        path: the pair list.
        images: the folder image paths are relative to (default: the pair list's folder; for an LFW
            pairs file, the person folders found from it).
        on_error: "raise" (:class:`PairListError` naming the file and line) or "skip" (the line is left
            out and recorded in ``errors``).
        folds: folds to make when the file gives none.

    Raises:
        PairListError: a malformed list, or one whose usable pairs are of one class only.
    """
    on_error = choice(on_error, ON_ERROR, name="on_error")
    path = Path(path)
    if not path.is_file():
        raise PairListError(f"pair list {path} not found; give LFW's pairs.txt or a CSV/TSV with columns "
                            f"{', '.join(REQUIRED)}[, fold]")
    if _is_lfw_pairs(path):
        try:
            parsed = read_pairs(path, images, on_missing=on_error)
        except PairsFileError as err:
            raise PairListError(str(err)) from err
        pairs = parsed.pairs
        errors = [InputError("missing image", str(path), line, reason) for line, reason in parsed.skipped]
        a, b = [p.path_a for p in pairs], [p.path_b for p in pairs]
        same, fold, lines = [p.is_same for p in pairs], [p.fold for p in pairs], [p.line for p in pairs]
        images = parsed.images_dir
    else:
        images = Path(images) if images is not None else path.parent
        a, b, same, fold, lines, errors = _read_table(path, images, on_error)
    is_same = np.array(same, dtype=bool)
    if is_same.all() or not is_same.any():
        raise PairListError(f"{path}: {len(is_same)} usable pair(s), {int(is_same.sum())} genuine and "
                            f"{int((~is_same).sum())} impostor; verification needs both classes"
                            + (f" ({len(errors)} line(s) left out: first {errors[0].reason})" if errors else ""))
    given = all(k is not None for k in fold) and len(set(fold)) > 1  # one fold (LFW's dev files): make folds
    if given:
        fold_index = [np.flatnonzero(np.array(fold) == k) for k in sorted(set(fold))]
    else:
        fold_index = _make_folds(is_same, np.array([Path(p).parent.name for p in a]), folds)
    subset = PairSubset(a, b, is_same, fold_index, Path(images))
    return PairList(subset, np.array(lines, dtype=np.int64), path, errors, given)


def write_pair_list(subset: PairSubset, path, *, relative_to=None) -> Path:
    """Write ``subset`` as a CSV pair list (``path1,path2,same,fold``), atomically; returns the path.

    Args:
        relative_to: write image paths relative to this folder (default: ``subset.images_dir``).
    """
    from facekit.io import write_text

    base = Path(subset.images_dir if relative_to is None else relative_to)
    fold_of = np.zeros(len(subset.is_same), dtype=np.int64)
    for k, idx in enumerate(subset.folds):
        fold_of[np.asarray(idx)] = k
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path1", "path2", "same", "fold"])
    for a, b, s, k in zip(subset.paths_a, subset.paths_b, subset.is_same, fold_of):
        rel = [str(Path(p).relative_to(base)) if Path(p).is_relative_to(base) else str(p) for p in (a, b)]
        writer.writerow([rel[0], rel[1], int(s), int(k)])
    return write_text(path, out.getvalue())


def pairs_from_folder(root, num_same: int, num_diff: int, *, seed: int = 0, folds: int = DEFAULT_FOLDS) -> PairSubset:
    """Genuine and impostor pairs drawn from a folder of people ``root/<person>/<image>`` (no pair list needed).

    Pairs are drawn uniformly by :func:`facekit.data.pairs.make_pairs`; folds are balanced and, where the
    people allow, disjoint in people. Write them with :func:`write_pair_list` to keep them.

    >>> sub = pairs_from_folder("photos/", num_same=100, num_diff=100)  # doctest: +SKIP
    """
    from facekit.data.pairs import make_pairs
    from facekit.verify.identify import folder_images

    paths, people = folder_images(root)
    drawn = make_pairs(people, num_same, num_diff, seed=seed)
    a, b = [paths[i] for i in drawn.a], [paths[i] for i in drawn.b]
    return PairSubset(a, b, drawn.is_same, _make_folds(drawn.is_same, people[drawn.a], folds), Path(root))


__all__ = ["PairList", "PairListError", "InputError", "read_pair_list", "write_pair_list", "pairs_from_folder",
           "DEFAULT_FOLDS"]
