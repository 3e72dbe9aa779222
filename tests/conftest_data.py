"""Fixtures for the data tests: tiny image folders, an LFW look-alike and a local HTTP server.

Everything is made in ``tmp_path``; the HTTP server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_SIZE = (20, 24)  # (W, H) as PIL wants it


def save_image(path, mode: str = "RGB", size=TINY_SIZE, seed: int = 0) -> Path:
    """Write a small random image in ``mode``; the format follows the extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    if mode in ("RGB", "RGBA"):
        im = Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8), mode)
    elif mode == "P":
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").quantize(8)
    elif mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").convert(mode)
    im.save(path)
    return path


@pytest.fixture
def make_image():
    """``make_image(path, mode="RGB", size=(W, H), seed=0) -> Path``."""
    return save_image


@pytest.fixture
def face_folder(tmp_path) -> Path:
    """``faces/{s1,s2,s10}/`` with 3 images each (jpg, png, pgm), plus files that must be ignored."""
    root = tmp_path / "faces"
    for k, who in enumerate(("s10", "s2", "s1")):
        for i, ext in enumerate((".jpg", ".png", ".pgm")):
            save_image(root / who / f"{i + 1}{ext}", mode="L" if ext == ".pgm" else "RGB", seed=10 * k + i)
    (root / "README").write_text("not an image")
    (root / "s1" / "notes.txt").write_text("not an image")
    (root / "s1" / ".hidden.jpg").write_bytes(b"junk")
    (root / ".cache").mkdir()
    return root


LFW_PEOPLE = {"Ann_Lee": 4, "Bob_Ray": 3, "Cy_Tan": 2, "Dee_Oh": 1, "Eve_Ash": 2}
# 2 folds x (2 same + 2 different)
LFW_PAIRS_LINES = [
    "2\t2",
    "Ann_Lee\t1\t2",
    "Bob_Ray\t1\t3",
    "Ann_Lee\t3\tCy_Tan\t1",
    "Dee_Oh\t1\tEve_Ash\t2",
    "Cy_Tan\t1\t2",
    "Ann_Lee\t2\t4",
    "Bob_Ray\t2\tEve_Ash\t1",
    "Cy_Tan\t2\tDee_Oh\t1",
]


def write_lfw(folder: Path, pairs_lines=LFW_PAIRS_LINES) -> Path:
    """An LFW look-alike in ``folder``: person folders ``Name/Name_000k.jpg`` and ``pairs.txt`` beside them."""
    for n, (name, count) in enumerate(LFW_PEOPLE.items()):
        for i in range(1, count + 1):
            save_image(folder / name / f"{name}_{i:04d}.jpg", seed=100 * n + i)
    (folder / "pairs.txt").write_text("\n".join(pairs_lines) + "\n")
    return folder


@pytest.fixture
def lfw_dir(tmp_path) -> Path:
    return write_lfw(tmp_path / "lfw")


class RangeServer:
    """A threaded HTTP server for ``files`` (name -> bytes) that honours ``Range: bytes=a-`` unless told not to."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.bytes_served = 0
        self.requests: list[dict] = []
        self.honour_range = True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                data = server.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                wanted = self.headers.get("Range")
                if wanted and server.honour_range:
                    start = int(wanted.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                server.bytes_served += len(body)  # counted before writing: the client may finish first
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def http_server():
    server = RangeServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)
