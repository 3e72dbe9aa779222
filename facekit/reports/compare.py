"""``facekit compare RUN_A RUN_B``: two report runs, metric by metric, for regression checks.

For each notebook and metric: A, B, the ratio B/A and the change (B - A)/|A|. Whether a larger value
is better is not known in general, so a change is only a change; a metric is flagged as a
**regression** when its direction is known and it moved the wrong way by more than the tolerance.
The direction comes, in order, from the caller (``higher``/``lower`` names), the unit, then the name:

- higher is better: units ending in ``/s`` (``img/s``, ``it/s``, ``FLOP/s``, ``TFLOP/s``, ``GB/s``);
  names with ``per_s`` (``train_images_per_s``), ``ap50``, ``iou`` or containing accuracy, auc, tar, ap, map, recall, precision, f1, throughput, speedup, mfu, psnr.
- lower is better: units ``s``, ``ms``, ``us``, ``min``, ``h``, ``B``, ``KiB``, ``MiB``, ``GiB``,
  ``MB``, ``GB``; names containing loss, eer, error, far, frr, latency, time, duration, memory.

A notebook that passed in A and not in B is a regression too. Strings and bools are compared for
equality (a difference is a change, not a regression). Durations of whole notebooks are compared only
with ``include_durations`` (they depend on the machine's load more than on the code).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from facekit.config import ConfigError
from facekit.reports.summary import RunSummary, _cell, describe_device, describe_software, load_summary

HIGHER, LOWER = "higher", "lower"
DEFAULT_TOLERANCE = 0.05
_LOWER_UNITS = {"s", "sec", "ms", "us", "µs", "ns", "min", "h", "b", "kib", "mib", "gib", "kb", "mb", "gb", "bytes"}
_HIGHER_NAMES = ("accuracy", "acc", "auc", "tar", "ap", "map", "recall", "precision", "f1", "throughput",
                 "speedup", "mfu", "psnr", "ips", "fps", "iou")
_LOWER_NAMES = ("loss", "eer", "error", "err", "far", "frr", "latency", "time", "duration", "memory",
                "seconds", "ms")


def metric_direction(name: str, unit: str | None, *, higher: Iterable[str] = (), lower: Iterable[str] = ()) -> str | None:
    """``'higher'``, ``'lower'`` (which way is better) or None when unknown.

    >>> metric_direction("train_throughput", "img/s"), metric_direction("latency_p95", "ms")
    ('higher', 'lower')
    >>> metric_direction("val_accuracy", None), metric_direction("eer", None), metric_direction("n_pairs", None)
    ('higher', 'lower', None)
    """
    if name in set(higher):
        return HIGHER
    if name in set(lower):
        return LOWER
    if unit:
        u = unit.strip().lower()
        if u.endswith("/s") or u.endswith("/sec") or u in ("img/s", "fps", "it/s"):
            return HIGHER
        if u in _LOWER_UNITS:
            return LOWER
    if re.search(r"(^|_)per_s(ec)?($|_)", name.lower()):  # images_per_s, steps_per_sec
        return HIGHER
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    if any(w in _HIGHER_NAMES or re.fullmatch(r"(ap|map|iou)\d*", w) for w in words):  # ap50, map75, iou
        return HIGHER
    if any(w in _LOWER_NAMES for w in words):
        return LOWER
    return None


@dataclass
class Row:
    notebook: str
    metric: str
    a: object = None
    b: object = None
    unit: str | None = None
    ratio: float | None = None  # b / a
    change: float | None = None  # (b - a) / |a|
    direction: str | None = None
    flag: str = ""  # '', 'regression', 'improved', 'changed', 'only in A', 'only in B', 'unit differs'

    @property
    def regression(self) -> bool:
        return self.flag == "regression"


@dataclass
class Comparison:
    """What :func:`compare_runs` returns; :meth:`to_markdown` is what ``facekit compare`` prints."""

    a: RunSummary
    b: RunSummary
    tolerance: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # different devices, profiles, parameters...
    status_rows: list[tuple[str, str, str, bool]] = field(default_factory=list)  # notebook, A, B, regression

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.regression]

    @property
    def status_regressions(self) -> list[str]:
        return [n for n, _, _, bad in self.status_rows if bad]

    @property
    def has_regression(self) -> bool:
        return bool(self.regressions or self.status_regressions)

    def to_markdown(self) -> str:
        return render_markdown(self)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_values(a, b, *, direction: str | None, tolerance: float) -> tuple[float | None, float | None, str]:
    """(ratio B/A, change (B-A)/|A|, flag) of two values of one metric.

    >>> compare_values(100.0, 90.0, direction="higher", tolerance=0.05)
    (0.9, -0.1, 'regression')
    >>> compare_values(8.0, 8.25, direction="lower", tolerance=0.05)
    (1.03125, 0.03125, '')
    """
    if not (_is_number(a) and _is_number(b)):
        return None, None, "" if a == b else "changed"
    if math.isnan(a) or math.isnan(b):
        return None, None, "" if (math.isnan(a) and math.isnan(b)) else "changed"
    if a == b:
        return (1.0 if a != 0 else None), 0.0, ""
    if a == 0 or not math.isfinite(a) or not math.isfinite(b):
        ratio = change = None
        moved = b - a  # an absolute move when there is no scale to divide by
        size = abs(moved) if math.isfinite(moved) else math.inf
    else:
        ratio, change = b / a, (b - a) / abs(a)
        moved, size = change, abs(change)
    if size <= tolerance:
        return ratio, change, ""
    if direction is None:
        return ratio, change, "changed"
    worse = moved < 0 if direction == HIGHER else moved > 0
    return ratio, change, "regression" if worse else "improved"


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, *, tolerance: float = DEFAULT_TOLERANCE,
                 higher: Iterable[str] = (), lower: Iterable[str] = (), include_durations: bool = False) -> Comparison:
    """Compare two run folders (each holding ``summary.json``) notebook by notebook, metric by metric.

    Args:
        run_a, run_b: the baseline and the new run.
        tolerance: a relative change up to this (0.05 = 5 %) is not flagged.
        higher, lower: metric names whose better direction you know (override the unit/name hints).
        include_durations: also compare each notebook's duration (unit s, lower is better).
    """
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise ConfigError(f"tolerance={tolerance!r} is not accepted; give a relative change >= 0, e.g. 0.05")
    summaries = []
    for arg in (run_a, run_b):
        path = Path(arg)
        if not (path / "summary.json").is_file():
            raise ConfigError(f"{str(path)!r} is not a report run: no summary.json there")
        try:
            summaries.append(load_summary(path))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path / 'summary.json'} cannot be read: {exc}") from exc
    a, b = summaries
    out = Comparison(a=a, b=b, tolerance=float(tolerance))
    if a.profile != b.profile:
        out.notes.append(f"different profiles: A ran `{a.profile}`, B ran `{b.profile}`: sizes differ")
    if describe_device(a.device) != describe_device(b.device):
        out.notes.append(f"different devices: A on {describe_device(a.device)}, B on {describe_device(b.device)}")
    if describe_software(a.device) != describe_software(b.device):
        out.notes.append(f"different software: A {describe_software(a.device)}; B {describe_software(b.device)}")
    if a.parameters != b.parameters:
        out.notes.append(f"different parameters: A {a.parameters or 'defaults'}, B {b.parameters or 'defaults'}")
    ea, eb = {e.name: e for e in a.entries}, {e.name: e for e in b.entries}
    names = list(ea) + [n for n in eb if n not in ea]
    for name in names:
        x, y = ea.get(name), eb.get(name)
        sa, sb = (x.status if x else "absent"), (y.status if y else "absent")
        if sa != sb:
            out.status_rows.append((name, sa, sb, sa == "ok" and sb != "absent"))
        if x is None or y is None:
            continue
        pairs = [(k, x.metrics.get(k, _MISSING), y.metrics.get(k, _MISSING), x.units.get(k), y.units.get(k))
                 for k in list(x.metrics) + [k for k in y.metrics if k not in x.metrics]]
        if include_durations:
            pairs.append(("(duration)", _opt(x.duration_s), _opt(y.duration_s), "s", "s"))
        for metric, va, vb, ua, ub in pairs:
            row = Row(name, metric, None if va is _MISSING else va, None if vb is _MISSING else vb, unit=ua or ub)
            if va is _MISSING or vb is _MISSING:
                row.flag = "only in B" if va is _MISSING else "only in A"
            elif ua != ub and ua and ub:
                row.flag = "unit differs"
                row.unit = f"{ua} / {ub}"
            else:
                row.direction = metric_direction(metric, row.unit, higher=higher, lower=lower)
                row.ratio, row.change, row.flag = compare_values(va, vb, direction=row.direction, tolerance=tolerance)
            out.rows.append(row)
    return out


_MISSING = object()


def _opt(value):
    return _MISSING if value is None else value


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_markdown(c: Comparison) -> str:
    """The comparison as Markdown: the two runs, notes, status changes, then one row per metric."""
    arrow = {HIGHER: "↑", LOWER: "↓", None: ""}
    lines = [
        f"# Comparison: `{c.a.name}` (A) vs `{c.b.name}` (B)",
        "",
        f"- **A**: {c.a.run_dir}: profile {c.a.profile}, {describe_device(c.a.device)}, commit "
        f"{(c.a.git or {}).get('commit', '?')}, started {c.a.started}",
        f"- **B**: {c.b.run_dir}: profile {c.b.profile}, {describe_device(c.b.device)}, commit "
        f"{(c.b.git or {}).get('commit', '?')}, started {c.b.started}",
        f"- **tolerance**: {c.tolerance:.3g} (relative change; ↑ higher is better, ↓ lower is better, "
        "no arrow: direction unknown, change only)",
        f"- **regressions**: {len(c.regressions)} metric(s), {len(c.status_regressions)} notebook(s)",
    ]
    lines += [f"- **note**: {n}" for n in c.notes]
    if c.status_rows:
        lines += ["", "| notebook | status A | status B | |", "|---|---|---|---|"]
        lines += [f"| {_cell(n)} | {sa} | {sb} | {'**regression**' if bad else ''} |" for n, sa, sb, bad in c.status_rows]
    lines += ["", "| notebook | metric | unit | A | B | B/A | change | |", "|---|---|---|---:|---:|---:|---:|---|"]
    for r in c.rows:
        change = "" if r.change is None else f"{r.change:+.1%}"
        flag = f"**{r.flag}**" if r.regression else r.flag
        metric = f"{_cell(r.metric)} {arrow[r.direction]}".rstrip()
        lines.append(f"| {_cell(r.notebook)} | {metric} | {_cell(r.unit or '')} | "
                     f"{_cell(_fmt(r.a))} | {_cell(_fmt(r.b))} | {_fmt(r.ratio)} | {change} | {flag} |")
    if not c.rows:
        lines.append("| | (no metrics in common) | | | | | | |")
    return "\n".join(lines) + "\n"


__all__ = ["Comparison", "Row", "compare_runs", "compare_values", "metric_direction", "DEFAULT_TOLERANCE"]
