"""Verify a pair list with any model: the one LFW evaluator, the course's metrics and intervals, and a record
of every photo's face-finding stage and every bad input.

:func:`verify_pairs` reads the pairs (:func:`facekit.verify.read_pair_list`), checks every image opens,
embeds each distinct image once (:func:`facekit.verify.make_embedder`, cached by content), then runs
:func:`facekit.data.lfw.evaluate_pairs` (the k-fold rule: each fold's threshold chosen on the other
folds) and :func:`facekit.metrics.verification_report` (ROC, AUC, EER, TAR@FAR). Intervals come from
:mod:`facekit.stats`, resampling *people* (the folder of each pair's first image), never pairs as if
independent. A pair whose photo has no face (``fallback="none"``) is left out and counted.

>>> result = verify_pairs("pairs.csv", model="dlib", images="photos/")  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from facekit.config import choice
from facekit.data.lfw import PairSubset, evaluate_pairs
from facekit.metrics.verification import KFoldResult, VerificationReport, held_out_correct, verification_report
from facekit.pretrained.finding import STAGES
from facekit.verify.models import GIVEN_STAGE, make_embedder
from facekit.verify.pairs import ON_ERROR, InputError, PairList, PairListError, read_pair_list

REPORT_FARS = (1e-1, 1e-2, 1e-3)  # TAR@FAR rows of the report (a FAR below 1 / impostor pairs is flagged)
INTERVAL_FAR = 1e-2  # the TAR@FAR given an interval
N_BOOT = 1000  # bootstrap resamples of each interval
STAGE_ORDER = (*STAGES, GIVEN_STAGE)
NO_FACE_WARN = 0.02  # warn when more than this share of photos fell back to the centred box


class NoFaceWarning(UserWarning):
    """Many photos had no detected face and were cut by the centred fallback box."""


@dataclass(frozen=True)
class VerifyResult:
    """A verified pair list: scores, decisions, metrics with intervals, face-finding stages and bad inputs."""

    pairs: PairList  # the usable pairs (after leaving out unreadable images)
    scores: np.ndarray  # (P,) -distance (higher = more alike); NaN where a photo has no face
    kept: np.ndarray  # (P,) bool: both photos embedded; the metrics use these pairs
    correct: np.ndarray  # (P,) bool: the held-out decision (fold threshold chosen on the other folds) is right
    kfold: KFoldResult
    folds: list  # index arrays into the P pairs (kept pairs only): the folds of the k-fold rule
    report: VerificationReport  # ROC, AUC, EER, TAR@FAR on the kept pairs
    intervals: dict  # name -> facekit.stats.Interval ("accuracy", "auc", "eer", "tar@far=0.01")
    images: list  # distinct images, in first-use order
    image_stages: np.ndarray  # (I,) str: the stage that found each image's face
    pair_stages: np.ndarray  # (P,) str: the later stage (in chain order) of the pair's two photos
    errors: list  # InputError: every line, image or face left out
    model: str
    distance: str

    @property
    def is_same(self) -> np.ndarray:
        return self.pairs.subset.is_same

    def stage_table(self):
        """One row per stage: photos found there, their share, pairs whose later photo it found, their accuracy."""
        import pandas as pd

        rows = []
        for stage in STAGE_ORDER:
            n_img = int((self.image_stages == stage).sum())
            on = (self.pair_stages == stage) & self.kept
            if n_img == 0 and not on.any():
                continue
            rows.append({"stage": stage, "images": n_img, "share of images": n_img / max(len(self.images), 1),
                         "pairs": int(on.sum()), "accuracy": float(self.correct[on].mean()) if on.any() else np.nan})
        return pd.DataFrame(rows)

    def error_table(self):
        """Bad inputs counted by kind, with the first example of each."""
        import pandas as pd

        kinds: dict[str, list] = {}
        for e in self.errors:
            kinds.setdefault(e.kind, []).append(e)
        return pd.DataFrame([{"kind": k, "count": len(v), "first": f"{Path(v[0].file).name}, line {v[0].line}: "
                              f"{v[0].reason}"} for k, v in kinds.items()], columns=["kind", "count", "first"])

    def hardest(self, genuine: bool, n: int = 4) -> np.ndarray:
        """Indices of the ``n`` hardest kept pairs: lowest-scoring genuine or highest-scoring impostor ones."""
        idx = np.flatnonzero(self.kept & (self.is_same == genuine))
        order = np.argsort(self.scores[idx], kind="stable")
        return idx[order[:n]] if genuine else idx[order[::-1][:n]]

    def summary(self) -> str:
        """A few lines for a log or a notebook."""
        acc = self.intervals.get("accuracy")
        lines = [f"{self.model}: {int(self.kept.sum())} of {len(self.kept)} pairs scored, {len(self.errors)} input(s) "
                 f"left out", f"{len(self.kfold.accuracies)}-fold accuracy "
                 f"{acc if acc is not None else f'{self.kfold.mean:.3f}'} (+- {self.kfold.std:.3f} over folds)"]
        lines += [f"{name}: {iv}" for name, iv in self.intervals.items() if name != "accuracy"]
        return "\n".join(lines)


def _drop(pairs: PairList, keep: np.ndarray) -> PairList:
    """The pair list without the pairs where ``keep`` is False (fold indices renumbered)."""
    sub = pairs.subset
    new = np.cumsum(keep) - 1
    folds = [new[f[keep[f]]] for f in sub.folds]
    subset = PairSubset([p for p, k in zip(sub.paths_a, keep) if k], [p for p, k in zip(sub.paths_b, keep) if k],
                        sub.is_same[keep], [f for f in folds if len(f)], sub.images_dir)
    return replace(pairs, subset=subset, lines=pairs.lines[keep])


def _check_images(pairs: PairList, on_error: str) -> PairList:
    """Open every image once (header and decode check); unreadable ones raise or drop their pairs, recorded."""
    from facekit.data.images import ImageReadError, read_image

    sub, bad = pairs.subset, {}
    for path in sub.images:
        try:
            read_image(path)
        except ImageReadError as err:
            bad[path] = err.reason
    if not bad:
        return pairs
    hit = np.array([a in bad or b in bad for a, b in zip(sub.paths_a, sub.paths_b)])
    for i in np.flatnonzero(hit):
        path = sub.paths_a[i] if sub.paths_a[i] in bad else sub.paths_b[i]
        error = InputError("unreadable image", str(pairs.source), int(pairs.lines[i]), f"image {path}: {bad[path]}")
        if on_error == "raise":
            raise PairListError(f"{error.file}, line {error.line}: {error.reason}; fix or remove it, or pass "
                                f"on_error='skip'")
        pairs.errors.append(error)
    return _drop(pairs, ~hit)


def _intervals(scores, is_same, correct, people, far: float, n_boot: int) -> dict:
    import facekit.stats as st

    out = {}
    groups = people if len(np.unique(people)) >= 2 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a FAR below 1 / impostor pairs: flagged in the report instead
        for name, fn in (("accuracy", lambda: st.bootstrap(np.mean, correct, groups=groups, n_boot=n_boot)),
                         ("auc", lambda: st.auc_interval(scores, is_same, groups, n_boot=n_boot)),
                         ("eer", lambda: st.eer_interval(scores, is_same, groups, n_boot=n_boot)),
                         (f"tar@far={far:g}", lambda: st.tar_at_far_interval(scores, is_same, far, groups,
                                                                             n_boot=n_boot))):
            try:
                out[name] = fn()
            except ValueError as err:  # too few people or pairs for a bootstrap: said, not hidden
                warnings.warn(f"no interval for {name}: {err}", stacklevel=3)
    return out


def verify_pairs(pairs, model="dlib", *, images=None, on_error: str = "raise", folds: int = 10,
                 distance: str | None = None, far_targets: Sequence[float] = REPORT_FARS, n_boot: int = N_BOOT,
                 **model_options) -> VerifyResult:
    """Verify a pair list with a model and report metrics, intervals, stages and bad inputs.

    Args:
        pairs: a pair list path (LFW's ``pairs.txt`` or a CSV/TSV, see :mod:`facekit.verify.pairs`) or a
            :class:`PairList`.
        model: "dlib", "facenet" or a callable ``paths -> (N, D)`` embeddings.
        images: the folder the pair list's paths are relative to.
        on_error: "raise" (a clear error naming the file and line) or "skip" (left out, counted in ``errors``).
        folds: folds to make when the list gives none.
        distance: "euclidean" (default for the built-in models) or "cosine" (default for a callable).
        far_targets: TAR@FAR rows of ``report``.
        n_boot: bootstrap resamples of each interval.
        model_options: the model's options (e.g. ``detectors=("hog", "cnn")``, ``select="largest"``,
            ``device="cuda"``; see :data:`facekit.verify.MODEL_OPTIONS`).
    """
    on_error = choice(on_error, ON_ERROR, name="on_error")
    pair_list = pairs if isinstance(pairs, PairList) else read_pair_list(pairs, images, on_error=on_error, folds=folds)
    pair_list = _check_images(pair_list, on_error)
    embed = make_embedder(model, **model_options)
    distance = distance or ("cosine" if callable(model) else "euclidean")
    sub = pair_list.subset
    seen = {}

    def embedding_fn(paths):
        seen["e"] = embed(paths)
        return seen["e"].embeddings

    result = evaluate_pairs(sub, embedding_fn, distance=distance)
    emb, images_list = seen["e"], sub.images
    stage_of = dict(zip(images_list, emb.stages))
    for path, stage in stage_of.items():
        if stage == "none":
            pair_list.errors.append(InputError("no face", str(pair_list.source), 0, f"no face found in {path}"))
    fallback = float(np.mean(emb.stages == "center")) if len(images_list) else 0.0
    if fallback > NO_FACE_WARN:
        warnings.warn(f"no face was detected in {int((emb.stages == 'center').sum())} of {len(images_list)} photos "
                      f"({fallback:.1%}); they were cut by a centred box, right only for photos centred on one "
                      f"face. Add detectors (detectors=('hog', 'mtcnn', 'cnn')) or pass fallback='none' to leave "
                      f"them out",
                      NoFaceWarning, stacklevel=2)
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    pair_stages = np.array([max(stage_of[a], stage_of[b], key=rank.get) for a, b in zip(sub.paths_a, sub.paths_b)])
    kept, scores = result.kept, result.scores
    kept_index = np.flatnonzero(kept)
    kept_folds = [kept_index[f] for f in _renumbered_folds(sub.folds, kept)]
    correct = held_out_correct(np.where(kept, scores, -np.inf), sub.is_same, kept_folds, result.kfold.thresholds)
    report = verification_report(scores[kept], sub.is_same[kept], far_targets=far_targets)
    people = pair_list.people[kept]
    intervals = _intervals(scores[kept], sub.is_same[kept], correct[kept], people, INTERVAL_FAR, n_boot)
    return VerifyResult(pair_list, scores, kept, correct & kept, result.kfold, kept_folds, report, intervals,
                        images_list, np.array([stage_of[p] for p in images_list]), pair_stages, pair_list.errors,
                        model if isinstance(model, str) else getattr(model, "__name__", "custom"), distance)


def _renumbered_folds(folds: list, kept: np.ndarray) -> list:
    """The folds evaluate_pairs used (indices into the kept pairs), in the same order."""
    new = np.cumsum(kept) - 1
    out = [new[f[kept[f]]] for f in folds]
    return [f for f in out if len(f)] if len([f for f in out if len(f)]) > 1 else \
        np.array_split(np.arange(int(kept.sum())), 10)


__all__ = ["VerifyResult", "verify_pairs", "REPORT_FARS", "INTERVAL_FAR", "NoFaceWarning", "NO_FACE_WARN"]
