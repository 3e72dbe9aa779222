"""fetch and download_lfw against a local HTTP server on 127.0.0.1 (never the internet)."""

import hashlib
import io
import socket
import tarfile

import pytest

from conftest_data import LFW_PAIRS_LINES, write_lfw
from facekit.data import download
from facekit.data.download import DownloadError, Mirror, extract_tgz, fetch

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_fetch_with_checksum(http_server, tmp_path):
    http_server.files["f.bin"] = PAYLOAD
    dest = fetch(http_server.url("f.bin"), tmp_path / "f.bin", sha256=_sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    served = http_server.bytes_served
    fetch(http_server.url("f.bin"), dest, sha256=_sha(PAYLOAD), progress=False)  # already there: no download
    assert http_server.bytes_served == served


def test_checksum_mismatch_removes_the_file(http_server, tmp_path):
    http_server.files["f.bin"] = PAYLOAD
    with pytest.raises(DownloadError) as info:
        fetch(http_server.url("f.bin"), tmp_path / "f.bin", sha256="0" * 64, progress=False)
    message = str(info.value)
    assert "f.bin" in message and "0" * 64 in message and _sha(PAYLOAD) in message
    assert list(tmp_path.iterdir()) == []


def test_resume_downloads_only_the_rest(http_server, tmp_path):
    http_server.files["f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:30000])
    dest = fetch(http_server.url("f.bin"), tmp_path / "f.bin", sha256=_sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.bytes_served == len(PAYLOAD) - 30000
    assert http_server.requests[-1]["range"] == "bytes=30000-"


def test_server_ignoring_range_restarts(http_server, tmp_path):
    http_server.files["f.bin"] = PAYLOAD
    http_server.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"x" * 1000)
    dest = fetch(http_server.url("f.bin"), tmp_path / "f.bin", sha256=_sha(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and http_server.bytes_served == len(PAYLOAD)


def test_complete_part_file_is_accepted(http_server, tmp_path):
    http_server.files["f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    assert fetch(http_server.url("f.bin"), tmp_path / "f.bin", progress=False).read_bytes() == PAYLOAD
    assert http_server.bytes_served == 0


def test_http_error_and_unreachable_server(http_server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(http_server.url("absent"), tmp_path / "absent", progress=False)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        fetch(f"http://127.0.0.1:{port}/x", tmp_path / "x", progress=False, timeout=2)
    message = str(info.value)
    assert "offline" in message and "by hand" in message and "FACEKIT_DATA" in message


def _tgz(entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs/evil.txt", "lfw/../../evil.txt"])
def test_unsafe_archives_are_refused(tmp_path, bad):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(_tgz({"lfw/ok.txt": b"ok", bad: b"evil"}))
    with pytest.raises(DownloadError, match="unsafe"):
        extract_tgz(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "lfw").exists()


def test_download_lfw_from_a_local_mirror(http_server, tmp_path, monkeypatch):
    source = write_lfw(tmp_path / "src" / "lfw-deepfunneled")
    pairs = (source / "pairs.txt").read_bytes()
    (source / "pairs.txt").unlink()
    entries = {str(p.relative_to(tmp_path / "src")): p.read_bytes() for p in sorted(source.rglob("*.jpg"))}
    http_server.files["lfw.tgz"] = _tgz(entries)
    http_server.files["pairs.txt"] = pairs
    spec = download.LFWArchive("lfw-deepfunneled.tgz", "lfw-deepfunneled", (Mirror(http_server.url("gone.tgz")), Mirror(http_server.url("lfw.tgz"))))
    monkeypatch.setitem(download.LFW_ARCHIVES, "deepfunneled", spec)
    monkeypatch.setattr(download, "LFW_PAIRS", {"pairs.txt": (Mirror(http_server.url("pairs.txt"), _sha(pairs)),)})
    images_dir = download.download_lfw(tmp_path / "data", progress=False)
    assert images_dir == tmp_path / "data" / "lfw-deepfunneled"
    assert (images_dir / "pairs.txt").read_bytes() == pairs and not (tmp_path / "data" / "lfw-deepfunneled.tgz").exists()
    served = http_server.bytes_served
    assert download.download_lfw(tmp_path / "data", progress=False) == images_dir  # idempotent
    assert http_server.bytes_served == served
    # structure check: a pairs file naming an image the archive lacks
    bad = ("\n".join(LFW_PAIRS_LINES).replace("Bob_Ray\t1\t3", "Bob_Ray\t1\t9") + "\n").encode()
    http_server.files["bad.txt"] = bad
    monkeypatch.setattr(download, "LFW_PAIRS", {"pairsDevTest.txt": (Mirror(http_server.url("bad.txt")),)})
    with pytest.raises(DownloadError, match="structure check.*Bob_Ray_0009.jpg"):
        download.download_lfw(tmp_path / "data", progress=False)
