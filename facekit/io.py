"""Files: atomic writes (a reader sees the old file or the whole new one, never half of it), the cache
and artifact folders, and file digests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

_DIGEST_CHUNK = 1 << 20  # bytes read per step by file_sha256


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> target.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = _DIGEST_CHUNK) -> str:
    """Hex sha256 of a file's bytes, read in chunks (the whole 64-digit digest; slice it for a short key).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = f.write_bytes(b"abc")
    >>> file_sha256(f)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


CACHE_ENV = "FACEKIT_CACHE"
ARTIFACTS_ENV = "FACEKIT_ARTIFACTS"


def cache_dir(*parts: str) -> Path:
    """``$FACEKIT_CACHE/<parts>`` (default ``~/.cache/facekit``); not created here.

    The one resolver of the cache folder: surrounding whitespace in the variable is ignored, an empty
    or blank value means the default, and ``~`` is expanded. Converted weights and cached
    descriptors live there, never in the repository.

    >>> cache_dir("dlib", "x.npz").parts[-2:]
    ('dlib', 'x.npz')
    """
    root = os.environ.get(CACHE_ENV, "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "facekit"
    return base.joinpath(*parts)


def artifact_path(name: str, profile: str) -> Path:
    """Where a notebook leaves a file (a checkpoint) for a later notebook of the same `profile`.

    ``$FACEKIT_ARTIFACTS/<profile>/<name>`` when that variable is set (the report runner may point it
    into a run), else ``$FACEKIT_CACHE/artifacts/<profile>/<name>``. The producer writes it atomically
    (:func:`facekit.train.save_checkpoint`); a notebook that needs it declares the producer in its
    ``facekit.depends_on`` metadata so that ``facekit report`` runs the producer first.

    >>> artifact_path("encoder.pt", "smoke").parts[-2:]
    ('smoke', 'encoder.pt')
    """
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"artifact name {name!r} is not accepted; give a relative file name such as 'mae_vit.pt'")
    from facekit.profiles import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not accepted for artifacts; use one of {PROFILES} (resolve 'auto' first)")
    root = os.environ.get(ARTIFACTS_ENV, "").strip()
    base = Path(root).expanduser() if root else cache_dir("artifacts")
    return base / profile / name
