"""facekit: the helper package of the facekit course on deep face recognition.

Importing facekit downloads, creates and starts nothing. The subpackages are
imported on demand::

    >>> import facekit as fk
    >>> fk.profiles.resolve_profile("smoke")
    'smoke'
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

_SUBMODULES = ("config", "profiles", "io", "notebook", "data", "models", "train", "metrics", "losses", "reports", "viz", "cli", "bench", "detection", "pretrained", "pretrain", "compress", "search", "privacy", "fairness", "stats", "course", "explore", "verify", "device", "progress")


def __getattr__(name):  # lazy subpackages keep `import facekit` cheap
    if name in _SUBMODULES:
        return _import_module(f"facekit.{name}")
    raise AttributeError(f"module 'facekit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
