"""Resumable, checksummed downloads and the LFW download helper. Nothing here runs at import time.

Archive checksums: the UMass archives have no published sha256 and none could be verified
here, so they are fetched with ``sha256=None`` and checked by *structure* after extraction
(every image named in ``pairs.txt`` must exist). The figshare mirrors carry the sha256 that
scikit-learn's LFW loader checks for those exact files; the three pairs files carry the
sha256 verified against our copies.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import facekit
from facekit.config import choice
from facekit.data.registry import DATA_ENV, REPO_ROOT, is_lfw_people
from facekit.io import file_sha256  # one digest helper for the package

CHUNK_BYTES = 1 << 16
USER_AGENT = f"facekit/{facekit.__version__} (+python urllib)"
HTTP_PARTIAL_CONTENT = 206
HTTP_RANGE_NOT_SATISFIABLE = 416
ACCEPTED_SCHEMES = ("http", "https", "file")
LFW_SITE = "http://vis-www.cs.umass.edu/lfw/"
FIGSHARE = "https://ndownloader.figshare.com/files/"


class DownloadError(RuntimeError):
    """A download or extraction that failed; the message says what to do by hand."""


@dataclass(frozen=True)
class Mirror:
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class LFWArchive:
    filename: str
    folder: str  # the top-level folder the archive extracts to
    mirrors: tuple[Mirror, ...]


LFW_ARCHIVES = {
    "deepfunneled": LFWArchive(
        "lfw-deepfunneled.tgz", "lfw-deepfunneled", (Mirror(LFW_SITE + "lfw-deepfunneled.tgz"),)
    ),
    "funneled": LFWArchive(
        "lfw-funneled.tgz",
        "lfw_funneled",
        (
            Mirror(LFW_SITE + "lfw-funneled.tgz"),
            Mirror(FIGSHARE + "5976015", "b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a"),
        ),
    ),
    "original": LFWArchive(
        "lfw.tgz",
        "lfw",
        (
            Mirror(LFW_SITE + "lfw.tgz"),
            Mirror(FIGSHARE + "5976018", "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"),
        ),
    ),
}
_PAIRS_SHA256 = {
    "pairs.txt": ("ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592", "5976006"),
    "pairsDevTrain.txt": ("1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa", "5976012"),
    "pairsDevTest.txt": ("7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c", "5976009"),
}
LFW_PAIRS = {
    name: (Mirror(LFW_SITE + name, sha), Mirror(FIGSHARE + figshare_id, sha))
    for name, (sha, figshare_id) in _PAIRS_SHA256.items()
}


def _by_hand(url: str, dest: Path) -> str:
    return (
        f"download {url} by hand on a machine with internet, copy it to {dest} (extract archives "
        f"beside it), then set {DATA_ENV} to the folder holding the datasets, or pass root=... to the loader."
    )


def _offline_message(url: str, dest: Path, reason) -> str:
    return f"could not download {url} ({reason}). If this machine is offline, {_by_hand(url, dest)}"


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _range_total(content_range: str | None) -> int | None:
    """Total size from ``Content-Range: bytes a-b/total`` or ``bytes */total``."""
    try:
        return int(content_range.rsplit("/", 1)[1])
    except (AttributeError, IndexError, ValueError):
        return None


def _stream(response, part: Path, offset: int, dest: Path, progress: bool, url: str) -> int | None:
    """Write the body to ``part`` (appending on a 206 that starts at ``offset``); return the expected size."""
    from facekit.progress import tqdm

    status = getattr(response, "status", None) or 200
    content_range = response.headers.get("Content-Range", "")
    appending = offset > 0 and status == HTTP_PARTIAL_CONTENT and content_range.startswith(f"bytes {offset}-")
    if not appending:
        offset = 0  # the server ignored or mangled the Range request: start again
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length and length.isdigit() else None
    written = offset
    with open(part, "ab" if appending else "wb") as out, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
    ) as bar:
        try:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"download of {url} interrupted after {written} bytes ({err}); run again to resume "
                f"from {part}"
            ) from err
    return total


def fetch(url: str, dest, *, sha256=None, resume=True, timeout=30, progress=True) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed with HTTP Range), verify, rename.

    Args:
        url: http(s) or file URL.
        dest: the final file; if it exists (and matches ``sha256`` when given) nothing is downloaded.
        sha256: expected hex digest; a mismatch removes the download and raises.
        resume: continue an existing ``.part`` file (servers that ignore Range restart it).
        timeout: seconds for connecting and for each read.
        progress: show a tqdm bar.

    Raises:
        DownloadError: network failure (with what to do offline), HTTP error, short or wrong file.

    >>> try:  # port 9 (discard) is closed: this is what offline looks like
    ...     fetch("http://127.0.0.1:9/x", "/tmp/x", progress=False, timeout=1)
    ... except DownloadError as err:
    ...     print(str(err)[:36])
    could not download http://127.0.0.1:
    """
    dest = Path(dest).expanduser()
    part = dest.with_name(dest.name + ".part")
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ACCEPTED_SCHEMES:
        raise DownloadError(f"cannot download {url!r}: scheme {scheme!r} is not one of {ACCEPTED_SCHEMES}")
    if dest.is_file() and (sha256 is None or file_sha256(dest) == sha256.lower()):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        part.unlink(missing_ok=True)
    for _attempt in range(2):  # a second try only after a rejected Range request
        offset = part.stat().st_size if part.is_file() else 0
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as err:
            if err.code == HTTP_RANGE_NOT_SATISFIABLE and offset:
                if _range_total(err.headers.get("Content-Range")) == offset:
                    break  # the .part file is already complete
                part.unlink()
                continue
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; {_by_hand(url, dest)}") from err
        except (urllib.error.URLError, socket.gaierror, TimeoutError, ConnectionError) as err:
            raise DownloadError(_offline_message(url, dest, getattr(err, "reason", err))) from err
        with response:
            total = _stream(response, part, offset, dest, progress, url)
        size = part.stat().st_size
        if total is not None and size != total:
            raise DownloadError(
                f"download of {url} is incomplete ({size} of {total} bytes); run again to resume"
            )
        break
    if sha256 is not None:
        _check_sha256(part, dest, url, sha256)
    os.replace(part, dest)
    return dest


def _check_sha256(part: Path, dest: Path, url: str, sha256: str) -> None:
    """Remove ``part`` and raise DownloadError when its digest is not ``sha256``."""
    actual = file_sha256(part)
    if actual != sha256.lower():
        part.unlink()
        raise DownloadError(f"checksum mismatch for {dest} (from {url}): expected sha256 {sha256.lower()}, "
                            f"got {actual}; the file was removed")


def fetch_first(mirrors, dest, **kwargs) -> Path:
    """:func:`fetch` from the first mirror that works; DownloadError listing every failure otherwise."""
    failures = []
    for mirror in mirrors:
        try:
            return fetch(mirror.url, dest, sha256=mirror.sha256, **kwargs)
        except DownloadError as err:
            failures.append(f"  - {mirror.url}: {err}")
    raise DownloadError(f"could not download {Path(dest).name} from any mirror:\n" + "\n".join(failures))


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DownloadError(f"{archive}: refusing unsafe member path {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise DownloadError(
            f"{archive}: refusing member {member.name!r} (links and devices are not extracted)"
        )


def extract_tgz(archive, dest) -> list[Path]:
    """Extract a (gzipped) tar archive safely into ``dest``; return the top-level paths created.

    Members with absolute paths, ``..``, links or devices are refused (DownloadError) before anything
    is written; extraction goes to a hidden staging folder first, so an interrupted run leaves no half
    dataset behind. Existing top-level folders are not overwritten.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
            try:
                tar.extractall(staging, members=members, filter="data")
                created = []
                for top in sorted(staging.iterdir()):
                    target = dest / top.name
                    if target.exists():
                        raise DownloadError(f"{target} already exists; remove it to extract {archive} again")
                    os.replace(top, target)
                    created.append(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DownloadError(f"cannot extract {archive}: {err}; delete it and download again") from err
    return created


def default_data_dir() -> Path:
    """Default download folder: the first ``$FACEKIT_DATA`` folder, else ``<repo>/data`` (git-ignored)."""
    env = [p for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p.strip()]
    return Path(env[0]).expanduser() if env else REPO_ROOT / "data"


def download_lfw(
    dest=None, *, variant="deepfunneled", include_pairs=True, progress=True, keep_archive=False
) -> Path:
    """Download and extract LFW and its protocol files; return the folder holding the person folders.

    Args:
        dest: where to put it (default :func:`default_data_dir`); the images land in
            ``dest/<lfw-deepfunneled | lfw_funneled | lfw>/`` with the pairs files beside them.
        variant: "deepfunneled" (what facekit's tests use), "funneled" or "original".
        include_pairs: also fetch ``pairs.txt``, ``pairsDevTrain.txt``, ``pairsDevTest.txt`` (sha256-checked)
            and check that every image they name exists.
        progress: tqdm bars. keep_archive: keep the ``.tgz`` after extraction.

    Raises:
        DownloadError: offline (with manual instructions), bad checksum, unsafe archive, bad structure.

    >>> images_dir = download_lfw()  # doctest: +SKIP
    """
    from facekit.data.lfw import PairsFileError, read_pairs

    spec = LFW_ARCHIVES[choice(variant, LFW_ARCHIVES, name="variant")]
    dest = Path(dest).expanduser() if dest is not None else default_data_dir()
    images_dir = dest / spec.folder
    if not is_lfw_people(images_dir):
        archive = fetch_first(spec.mirrors, dest / spec.filename, progress=progress)
        extract_tgz(archive, dest)
        if not keep_archive:
            archive.unlink()
        if not is_lfw_people(images_dir):
            raise DownloadError(f"{archive} did not extract to {images_dir}/<Name>/<Name>_0001.jpg")
    if include_pairs:
        for name, mirrors in LFW_PAIRS.items():
            fetch_first(mirrors, images_dir / name, progress=progress)
            try:
                read_pairs(images_dir / name, images_dir)
            except (PairsFileError, FileNotFoundError) as err:
                raise DownloadError(f"structure check of {images_dir} failed: {err}") from err
    return images_dir
