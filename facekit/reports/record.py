"""Record a notebook's key metrics as outputs that the report runner reads back.

A metric is one ``display_data`` output with two representations: ``text/plain``
(what a reader sees) and :data:`MIMETYPE` (what :func:`read_metrics` parses), the way
scrapbook glues values into a notebook. Nothing goes through files or environment
variables, so the executed ``.ipynb`` is the whole record.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

MIMETYPE = "application/vnd.facekit.metric+json"
MAX_STRING = 200  # a metric is a number, a bool or a short label, not a log


def _to_python(name: str, value: Any) -> Any:
    """Return `value` as a JSON-friendly Python scalar, or raise TypeError naming `name`."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        out = value.item()
    elif value is None or isinstance(value, (bool, int, float, str)):
        out = value
    else:
        shape = getattr(value, "shape", None)
        what = f"{type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")
        raise TypeError(
            f"metric {name!r}: cannot record a {what}; record a number, a bool, a short string "
            "or None (call .item() on a one-element array, or record each element under its own name)"
        )
    for kind in (bool, int, float, str):  # subclasses (IntEnum, np.str_) become the plain type
        if isinstance(out, kind):
            out = out if type(out) is kind else kind(out)
            break
    if not (out is None or isinstance(out, (bool, int, float, str))):  # e.g. a complex .item()
        raise TypeError(f"metric {name!r}: cannot record a {type(out).__name__}")
    if isinstance(out, str) and len(out) > MAX_STRING:
        raise ValueError(f"metric {name!r}: a string metric is at most {MAX_STRING} characters, got {len(out)}")
    return out


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if isinstance(value, str) else str(value)


def _bundle(name: str, value: Any, unit: str | None, notebook_key: str | None, key: bool = False) -> dict:
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise ValueError(f"a metric name is a non-empty one-line string, got {name!r}")
    if unit is not None and not isinstance(unit, str):
        raise TypeError(f"metric {name!r}: unit must be a string, got {type(unit).__name__}")
    value = _to_python(name, value)
    payload: dict[str, Any] = {"name": name, "value": value, "unit": unit}
    if isinstance(value, float) and not math.isfinite(value):
        payload["value"] = str(value)  # 'nan', 'inf', '-inf': strict JSON has no such numbers
        payload["nonfinite"] = True
    if notebook_key is not None:
        payload["notebook_key"] = str(notebook_key)
    if key:
        payload["key"] = True
    text = f"metric {name} = {_format(value)}" + (f" {unit}" if unit else "")
    return {"text/plain": text, MIMETYPE: payload}


def _ipython_shell():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of ipykernel
        return None
    return get_ipython()


def record(name: str, value, *, unit: str | None = None, notebook_key: str | None = None, key: bool = False):
    """Show a key metric in the notebook, in a form the report summary picks up.

    Args:
        name: the metric's name, e.g. ``"heldout_accuracy"``.
        value: a number, a bool, a short string or None; numpy and torch scalars are
            turned into Python ones. Anything else raises TypeError.
        unit: optional unit shown after the value (``"s"``, ``"%"``).
        notebook_key: optional tag stored with the metric (e.g. the notebook's stem);
            ``read_metrics(nb, notebook_key=...)`` keeps only the metrics with that tag.
        key: one of the chapter's headline numbers: the course page (``facekit report --course-page``)
            shows the first three key metrics of each chapter (without any, its first three metrics).

    Returns:
        ``value`` unchanged, so ``acc = record("acc", evaluate(model))`` reads naturally.

    >>> record("heldout_accuracy", 0.8731)
    metric heldout_accuracy = 0.8731
    0.8731
    """
    bundle = _bundle(name, value, unit, notebook_key, key)
    if _ipython_shell() is not None:
        from IPython.display import display

        display(bundle, raw=True)
    else:
        print(bundle["text/plain"])
    return value


def record_many(mapping: Mapping[str, Any], *, unit: str | None = None, notebook_key: str | None = None,
                key: bool = False) -> dict:
    """Record every ``name: value`` of `mapping` (all checked before any is shown).

    >>> record_many({"eer": 0.05, "epochs": 3})
    metric eer = 0.05
    metric epochs = 3
    {'eer': 0.05, 'epochs': 3}
    """
    bundles = [_bundle(k, v, unit, notebook_key, key) for k, v in mapping.items()]
    shell = _ipython_shell()
    for bundle in bundles:
        if shell is not None:
            from IPython.display import display

            display(bundle, raw=True)
        else:
            print(bundle["text/plain"])
    return dict(mapping)


def _iter_payloads(nb):
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") not in ("display_data", "execute_result", "update_display_data"):
                continue
            payload = output.get("data", {}).get(MIMETYPE)
            if isinstance(payload, str):  # nbformat < 4.x may keep JSON mimetypes as text
                import json

                payload = json.loads(payload)
            if isinstance(payload, dict) and "name" in payload:
                yield payload


def read_metrics(notebook, *, notebook_key: str | None = None, with_units: bool = False) -> dict:
    """Return ``{name: value}`` of the metrics recorded in an executed notebook (last value wins).

    Args:
        notebook: a notebook node (a dict as read by nbformat) or the path of an ``.ipynb``.
        notebook_key: keep only the metrics recorded with this ``notebook_key``.
        with_units: return ``{name: {"value": ..., "unit": ...}}`` instead.

    >>> nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data",
    ...       "data": {MIMETYPE: {"name": "acc", "value": 0.9, "unit": None}}}]}]}
    >>> read_metrics(nb)
    {'acc': 0.9}
    """
    if isinstance(notebook, (str, os.PathLike)):
        import nbformat

        notebook = nbformat.read(Path(notebook), as_version=4)
    metrics: dict[str, Any] = {}
    for payload in _iter_payloads(notebook):
        if notebook_key is not None and payload.get("notebook_key") != notebook_key:
            continue
        value = payload.get("value")
        if payload.get("nonfinite"):
            value = float(value)
        metrics[payload["name"]] = {"value": value, "unit": payload.get("unit")} if with_units else value
    return metrics


def key_metric_names(notebook) -> list[str]:
    """The names of the metrics recorded with ``key=True``, in recording order (each once).

    >>> nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data",
    ...       "data": {MIMETYPE: {"name": "auc", "value": 0.9, "unit": None, "key": True}}}]}]}
    >>> key_metric_names(nb)
    ['auc']
    """
    if isinstance(notebook, (str, os.PathLike)):
        import nbformat

        notebook = nbformat.read(Path(notebook), as_version=4)
    return list(dict.fromkeys(p["name"] for p in _iter_payloads(notebook) if p.get("key")))
