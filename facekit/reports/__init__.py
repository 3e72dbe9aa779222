"""Reports: record a notebook's key metrics, execute notebooks into ``reports/<run>/``.

``record`` is what a notebook calls; ``run_reports`` (or ``facekit report``) is what runs
the notebooks. The runner and Papermill are imported only when first used, so a notebook's
``from facekit.reports import record`` stays cheap::

    >>> from facekit.reports import record
    >>> _ = record("answer", 42)
    metric answer = 42
"""

from importlib import import_module as _import_module

from facekit.reports.record import MIMETYPE, read_metrics, record, record_many

_LAZY = {
    "run_reports": "facekit.reports.runner",
    "select_notebooks": "facekit.reports.runner",
    "notebook_parameters": "facekit.reports.runner",
    "available_notebooks": "facekit.reports.runner",
    "RunSummary": "facekit.reports.summary",
    "NotebookEntry": "facekit.reports.summary",
    "load_summary": "facekit.reports.summary",
    "update_index": "facekit.reports.index",
    "device_info": "facekit.reports.device",
    "rerun_failed": "facekit.reports.rerun",
    "compare_runs": "facekit.reports.compare",
    "Comparison": "facekit.reports.compare",
    "notebook_meta": "facekit.reports.order",
}

__all__ = ["MIMETYPE", "record", "record_many", "read_metrics", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(_import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facekit.reports' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
