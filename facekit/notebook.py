"""What every chapter does before its first idea, in one call, and the small helpers chapters share.

A chapter starts with::

    ctx = fk.notebook.setup(profile, smoke=Sizes(...), cpu=Sizes(...), gpu=Sizes(...), data_root=data_root, seed=seed)
    S, DEVICE = ctx.sizes, ctx.device

which sets up plotting, seeds every generator, resolves the profile and the device, finds the real datasets on
disk, records the profile for the report and shows the sizes of all three profiles as one compact table.

Result sentences are rendered from computed values with :func:`say`; exercises are checked with :func:`check`,
which prints a friendly verdict and the expected value.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

WIDE_TABLE = 8  # more sizes than this: one row per size, one column per profile

__all__ = ["Context", "setup", "say", "check", "ExerciseFailed", "sizes_table", "committed_durations",
           "durations_sentence"]


@dataclass
class Context:
    """What :func:`setup` found: the profile, its sizes, the device, the data on disk and the start time."""

    profile: str
    sizes: Any
    device: Any
    root: str | None
    found: dict
    seed: int
    t0: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since :func:`setup` ran."""
        return time.perf_counter() - self.t0

    def has(self, name: str) -> bool:
        """Whether the real dataset `name` ("lfw", "orl", "dlib") is on disk."""
        return self.found.get(name) is not None


def sizes_table(chosen: str, **sizes: Any):
    """One row per profile, one column per size; the chosen profile is marked with an arrow.

    >>> from dataclasses import make_dataclass
    >>> S = make_dataclass("S", ["epochs"])
    >>> int(sizes_table("cpu", smoke=S(1), cpu=S(5), gpu=S(9)).loc["cpu ←", "epochs"])
    5
    """
    import pandas as pd

    rows = {}
    for name, value in sizes.items():
        row = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else dict(value)
        rows[name + (" ←" if name == chosen else "")] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def setup(profile: str = "auto", *, smoke: Any, cpu: Any, gpu: Any, data_root: str | None = "", seed: int = 0,
          device: str = "auto", show: bool = True) -> Context:
    """Plotting, seeds, profile, device, real datasets on disk and the profile record, in one call.

    Args:
        profile: ``smoke``, ``cpu``, ``gpu`` or ``auto`` (see :mod:`facekit.profiles`).
        smoke, cpu, gpu: the sizes of each profile (usually one frozen dataclass per profile).
        data_root: folder holding ``lfw/``, ``att_faces/``, ``dlib_faces/``; empty: the default search.
        seed: seeds Python, NumPy and torch.
        device: ``auto``, ``cpu``, ``cuda``, ...
        show: display the compact sizes table and one line of context.
    """
    from facekit import profiles, viz
    from facekit.data import available_datasets
    from facekit.reports import record
    from facekit.train import resolve_device, seed_everything

    viz.setup_notebook()
    name, chosen = profiles.pick(profile, smoke=smoke, cpu=cpu, gpu=gpu)
    seed_everything(seed)
    root = data_root or None
    ctx = Context(profile=name, sizes=chosen, device=resolve_device(device), root=root,
                  found=available_datasets(root), seed=seed)
    record("profile", name)
    if show:
        real = [k for k, v in ctx.found.items() if v] or "none"
        print(f"profile={name}, device={ctx.device}, seed={seed}, real data found: {real}")
        table = sizes_table(name, smoke=smoke, cpu=cpu, gpu=gpu)
        _display(table.T if table.shape[1] > WIDE_TABLE else table)  # many sizes read better as rows
    return ctx


def _display(obj: Any) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(obj)
        return
    if get_ipython() is None:
        print(obj)
    else:
        display(obj)


def say(text: str) -> None:
    """Show a result sentence rendered from computed values as Markdown (plain print outside Jupyter).

    Use it with an f-string, so the numbers in the prose are the numbers the code computed::

        fk.notebook.say(f"The test accuracy is **{acc:.3f}**.")
    """
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


class ExerciseFailed(AssertionError):
    """An exercise's check did not pass; the message says what was expected."""


def _close(got: Any, expected: Any, rtol: float, atol: float) -> tuple[bool, str]:
    import numpy as np

    if isinstance(expected, (str, bool)) or expected is None:
        return got == expected, f"{expected!r}"
    try:
        g = np.asarray(_to_numpy(got), dtype=float)
        e = np.asarray(_to_numpy(expected), dtype=float)
    except (TypeError, ValueError):
        return got == expected, f"{expected!r}"
    if g.shape != e.shape:
        return False, f"an array of shape {e.shape} (got shape {g.shape})"
    ok = bool(np.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True))
    shown = f"{float(e):.6g}" if e.ndim == 0 else f"shape {e.shape}, first values {np.round(e.ravel()[:4], 4).tolist()}"
    return ok, shown


def _to_numpy(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


def check(name: str, got: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """Check an exercise's answer: print a pass line, or raise :class:`ExerciseFailed` naming the expected value.

    Numbers and arrays (numpy or torch) are compared with ``allclose(rtol, atol)``; strings, bools and None
    exactly.

    >>> check("two plus two", 2 + 2, 4)
    ✓ two plus two: correct
    True
    """
    if got is None or got is Ellipsis:
        raise ExerciseFailed(f"✗ {name}: no answer yet (the value is {got!r}); write your solution above and re-run")
    ok, shown = _close(got, expected, rtol, atol)
    if not ok:
        got_shown = got if not hasattr(got, "shape") else f"shape {tuple(got.shape)}"
        if isinstance(got, float) and math.isfinite(got):
            got_shown = f"{got:.6g}"
        raise ExerciseFailed(f"✗ {name}: expected {shown}, got {got_shown}; check your solution and re-run")
    print(f"✓ {name}: correct")
    return True


def committed_durations(stem: str, reports_dir=None) -> dict[str, tuple[float, str, str]]:
    """How long chapter `stem` took in the committed report runs: ``{profile: (seconds, run, started)}``.

    Reads every ``reports/<run>/summary.json`` (the project's own ``reports/`` unless `reports_dir` is given) and
    keeps, per profile, the newest run in which `stem` finished ``ok``. A dry run is not a duration of its
    profile and is left out.
    """
    import json
    from pathlib import Path

    root = Path(reports_dir) if reports_dir is not None else Path(__file__).resolve().parents[1] / "reports"
    latest: dict[str, tuple[float, str, str]] = {}
    for path in sorted(root.glob("*/summary.json")):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a broken summary is the report runner's business, not a chapter's
        if (run.get("options") or {}).get("max_steps"):  # a dry run (FACEKIT_MAX_STEPS)
            continue
        profile, started = run.get("profile", "?"), run.get("started") or ""
        for entry in run.get("notebooks", []):
            if entry.get("name") == stem and entry.get("status") == "ok" and entry.get("duration_s"):
                if started >= latest.get(profile, (0.0, "", ""))[2]:
                    latest[profile] = (float(entry["duration_s"]), path.parent.name, started)
    return latest


def durations_sentence(stem: str, reports_dir=None) -> str:
    """One sentence for a chapter's opening: its committed durations per profile, or that none exists yet.

    >>> durations_sentence("no_such_chapter", reports_dir="/nonexistent")
    'No committed run of this chapter yet.'
    """
    found = committed_durations(stem, reports_dir)
    if not found:
        return "No committed run of this chapter yet."
    order = {"smoke": 0, "cpu": 1, "gpu": 2}
    parts = [f"**{prof}** {sec / 60:.1f} min (run `{run}`)"
             for prof, (sec, run, _) in sorted(found.items(), key=lambda kv: order.get(kv[0], 9))]
    return "Committed runs of this chapter: " + "; ".join(parts) + "."
