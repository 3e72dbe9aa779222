"""The course in a real browser: JupyterLab on localhost, Debian's Chromium driven by Playwright.

Starts JupyterLab (127.0.0.1, a random token, a free port) on a temporary copy of one course notebook, opens it in
headless Chromium, runs all its cells (``FACEKIT_PROFILE=smoke``), waits for the exploration widget, moves one of
its sliders with the keyboard, checks that the figure changed (the image element's pixels, before and after), and
saves screenshots. Nothing is downloaded: Playwright drives the system's ``/usr/bin/chromium``.

    .venv/bin/python scripts/browser_test.py [--notebook notebooks/00_data_tour.ipynb] [--out build/browser]
                                             [--slider person] [--readme-shot docs/img/exploration_jupyterlab.png]

Exit status: 0 passed; 1 failed; 2 skipped (no Chromium or no Playwright), which is a failure when ``CI=true``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FACEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SKIP, FAIL = 2, 1
VIEWPORT = {"width": 1200, "height": 900}
README_SHOT_MAX_BYTES = 150_000


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing() -> str:
    """Why the browser test cannot run here, or '' when it can."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return (f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium; or set FACEKIT_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; its browsers are not needed)"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(workdir: Path, port: int, token: str, log) -> subprocess.Popen:
    env = dict(os.environ, FACEKIT_PROFILE="smoke", JUPYTER_CONFIG_DIR=str(workdir / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(workdir / ".runtime"))
    env.pop("FACEKIT_STATIC", None)
    env.pop("MPLBACKEND", None)  # the kernel uses the inline backend, as for a learner
    config = workdir / ".jupyter"
    config.mkdir(exist_ok=True)
    (config / "jupyter_server_config.json").write_text(json.dumps({"LabApp": {  # nothing fetched from the network
        "news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate", "extension_manager": "readonly"}}))
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--ServerApp.port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workdir}",
           "--ServerApp.port_retries=0"] + (["--allow-root"] if os.geteuid() == 0 else [])
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_lab(port: int, token: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                json.load(r)
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer on port {port} within {timeout:.0f} s")


def image_of(locator) -> bytes:
    return locator.screenshot(animations="disabled")


def pixel_change(a: bytes, b: bytes) -> float:
    """Fraction of pixels that differ between two PNG screenshots (1.0 if the sizes differ)."""
    import io

    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.int16)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        return 1.0
    return float((np.abs(x - y).max(-1) > 8).mean())


def small_png(data: bytes, path: Path, max_bytes: int = README_SHOT_MAX_BYTES) -> int:
    """Write a screenshot as a palette PNG, halving its width until it is under ``max_bytes``."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    while True:
        buf = io.BytesIO()
        img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_bytes or img.width < 400:
            break
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return buf.tell()


def run(notebook: Path, out: Path, slider: str, readme_shot: Path | None, timeout: float) -> dict:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="facekit-browser-"))
    shutil.copy(notebook, work / notebook.name)
    token, port = secrets.token_hex(16), free_port()
    timings = {}
    t0 = time.monotonic()
    with open(out / "jupyterlab.log", "w") as log:
        lab = start_lab(work, port, token, log)
        try:
            wait_for_lab(port, token, lab)
            timings["lab_started_s"] = time.monotonic() - t0
            with sync_playwright() as pw:
                profile = tempfile.mkdtemp(prefix="facekit-chromium-")  # a new, empty user data dir
                context = pw.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT)
                try:
                    page = context.new_page()
                    page.set_default_timeout(60_000)
                    page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}")
                    page.wait_for_function(  # the notebook rendered and its kernel started
                        "() => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length > 3 &&"
                        " /\\|\\s*Idle/.test(document.getElementById('jp-main-statusbar')"
                        "?.innerText || '')", timeout=180_000)
                    no_news = page.get_by_role("button", name="No", exact=True)
                    if no_news.count():  # JupyterLab's "get notified of news?" toast
                        no_news.first.click()
                    page.screenshot(path=str(out / "1_notebook_open.png"))
                    timings["notebook_open_s"] = time.monotonic() - t0
                    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
                    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
                    widget = page.locator(".facekit-exploration").first
                    widget.wait_for(state="attached", timeout=timeout * 1000)
                    figure = widget.locator("img").first
                    figure.wait_for(state="visible", timeout=60_000)
                    timings["widget_shown_s"] = time.monotonic() - t0
                    wait_idle(page, timeout)
                    timings["all_cells_run_s"] = time.monotonic() - t0
                    widget.scroll_into_view_if_needed()
                    page.wait_for_timeout(500)
                    src_before, before = figure.get_attribute("src"), image_of(figure)
                    cell = page.locator(".jp-Cell", has=widget).first
                    page.screenshot(path=str(out / "2_widget_before.png"))
                    handle = widget.locator(f".facekit-control-{slider} .noUi-handle").first
                    handle.focus()
                    t_move = time.monotonic()
                    for _ in range(3):
                        handle.press("ArrowRight")
                    page.wait_for_function("([img, src]) => img.getAttribute('src') !== src",
                                           arg=[figure.element_handle(), src_before], timeout=30_000)
                    page.wait_for_timeout(1500)  # the last of the three moves
                    timings["slider_to_new_figure_s"] = time.monotonic() - t_move
                    after = image_of(figure)
                    page.screenshot(path=str(out / "3_widget_after.png"))
                    (out / "figure_before.png").write_bytes(before)
                    (out / "figure_after.png").write_bytes(after)
                    changed = pixel_change(before, after)
                    readout = widget.locator(f".facekit-control-{slider} .widget-readout").first.inner_text()
                    shot = None
                    if readme_shot is not None:
                        shot = small_png(cell.screenshot(animations="disabled"), readme_shot)
                finally:
                    context.close()
                    shutil.rmtree(profile, ignore_errors=True)
        finally:
            stop(lab)
            shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.monotonic() - t0
    return {"pixels_changed": changed, "slider": slider, "readout_after": readout, "readme_shot_bytes": shot,
            **{k: round(v, 1) for k, v in timings.items()}}


def stop(proc: subprocess.Popen) -> None:
    """End the JupyterLab server we started (its own process group: the server and its kernels)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_idle(page, timeout: float) -> None:
    """Until no cell shows the running prompt ``[*]`` (every queued cell has run)."""
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll('.jp-InputArea-prompt')];"
        " return p.length > 0 && !p.some(e => e.textContent.includes('*')); }", timeout=timeout * 1000)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default=str(ROOT / "notebooks" / "00_data_tour.ipynb"))
    parser.add_argument("--out", default=str(ROOT / "build" / "browser"), help="screenshots and the server log")
    parser.add_argument("--slider", default="person", help="the control of the notebook's first exploration to move")
    parser.add_argument("--readme-shot", default="", help="also save the exploration's cell here (small PNG)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the notebook's cells to run")
    args = parser.parse_args(argv)
    why = missing()
    if why:
        if in_ci():
            print(f"FAILED: the browser test cannot run in CI: {why}", file=sys.stderr)
            return FAIL
        print(f"SKIPPED: {why}", file=sys.stderr)
        return SKIP
    notebook = Path(args.notebook)
    if not notebook.is_file():
        print(f"FAILED: notebook {notebook} not found", file=sys.stderr)
        return FAIL
    try:
        result = run(notebook, Path(args.out), args.slider, Path(args.readme_shot) if args.readme_shot else None,
                     args.timeout)
    except Exception as e:  # noqa: BLE001 - any failure is reported with the server log's location
        print(f"FAILED: {type(e).__name__}: {e} (screenshots and jupyterlab.log in {args.out})", file=sys.stderr)
        return FAIL
    print(json.dumps(result, indent=1))
    if result["pixels_changed"] < 0.01:
        print(f"FAILED: moving {args.slider!r} changed only {result['pixels_changed']:.1%} of the figure's pixels",
              file=sys.stderr)
        return FAIL
    print(f"PASSED: moving {args.slider!r} redrew the figure ({result['pixels_changed']:.1%} of its pixels changed); "
          f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
