"""What ran a report: the machine, the accelerator and the git commit."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

_VENDOR_WORDS = {"nvidia", "geforce", "tesla", "quadro", "amd", "radeon", "intel", "graphics"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def driver_version() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi`` (None without it or when it fails)."""
    import shutil

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in done.stdout.splitlines() if ln.strip()]
    return lines[0] if done.returncode == 0 and lines else None


def device_info() -> dict:
    """Describe this machine: torch, CUDA and GPU, CPU, cores, Python and platform.

    >>> info = device_info()
    >>> {"torch", "cuda_available", "gpu", "cpu", "cpu_cores", "python", "platform"} <= set(info)
    True
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    info = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": None,
        "cuda_available": False,
        "cuda_version": None,
        "gpu": None,
        "gpu_count": 0,
        "gpu_memory_gib": None,
        "gpus": [],
        "gpu_capability": None,
        "driver_version": None,
        "cudnn_version": None,
        "num_threads": None,
    }
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["num_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        count = torch.cuda.device_count()
        info.update(
            cuda_available=True,
            cuda_version=torch.version.cuda,
            gpu=props.name,
            gpu_count=count,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpus=[torch.cuda.get_device_name(i) for i in range(count)],
            gpu_capability=f"{props.major}.{props.minor}",
            driver_version=driver_version(),
        )
        try:
            info["cudnn_version"] = torch.backends.cudnn.version()
        except Exception:  # pragma: no cover - a broken cuDNN must not stop a report
            pass
    return info


def device_slug(info: dict | None = None) -> str:
    """A short lowercase name for run folders: ``cpu``, ``h100``, ``a100``, ``rtx4090``.

    >>> device_slug({"gpu": "NVIDIA H100 80GB HBM3"})
    'h100'
    >>> device_slug({"gpu": "NVIDIA GeForce RTX 4090"})
    'rtx4090'
    >>> device_slug({"gpu": None})
    'cpu'
    """
    info = device_info() if info is None else info
    name = info.get("gpu")
    if not name:
        return "cpu"
    tokens = [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t and t not in _VENDOR_WORDS]
    if not tokens:
        return "gpu"
    slug = tokens[0]
    if slug.isalpha() and len(tokens) > 1:  # "rtx 4090", "gtx 1080"
        slug += tokens[1]
    return slug[:16]


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(where: str | os.PathLike = ".", *, exclude: str | os.PathLike | None = None) -> dict | None:
    """Return ``{"commit": short sha, "dirty": bool}`` for the checkout holding `where`, or None.

    Args:
        where: a folder inside the checkout.
        exclude: a folder whose changes do not make the checkout dirty (the reports folder,
            which a run itself writes into).
    """
    where = Path(where).resolve()
    top = _git(["rev-parse", "--show-toplevel"], where)
    sha = _git(["rev-parse", "--short", "HEAD"], where)
    if top is None or sha is None:
        return None
    pathspec = []
    if exclude is not None:
        try:
            rel = Path(exclude).resolve().relative_to(Path(top).resolve())
            pathspec = ["--", ".", f":(exclude){rel.as_posix()}"] if rel.parts else []
        except ValueError:
            pass
    status = _git(["status", "--porcelain", *pathspec], Path(top))
    return {"commit": sha, "dirty": bool(status)} if status is not None else {"commit": sha, "dirty": None}


__all__ = ["device_info", "device_slug", "driver_version", "git_info"]
