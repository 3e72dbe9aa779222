"""The CPU's theoretical FLOP/s from its specification: cores x clock x FMA vector lanes x FMA units x 2.

A fused multiply-add (FMA) does one multiply and one add on every lane of a vector register each cycle, and a
core has one or more FMA pipes; so a core does ``lanes x fma_units x 2`` fp32 FLOPs per cycle, where
``lanes = vector bits / 32``. Where each number comes from is kept in :attr:`CpuSpec.sources`:

- the model name and the instruction-set flags (``avx512f``, ``avx2``, ``fma``) from ``/proc/cpuinfo``;
- the physical cores from ``lscpu`` (``Core(s) per socket`` x ``Socket(s)``), limited to the CPUs this process
  may run on (``os.sched_getaffinity``);
- the clock from ``lscpu``'s ``CPU max MHz`` when it is shown, else ``/proc/cpuinfo``'s ``cpu MHz`` (in a virtual
  machine that is usually the nominal clock: a core boosting above it can beat the figure computed here);
- the FMA units per core are **not** in either file: 2 is an assumption (true of recent server cores: Intel
  Skylake-SP Gold/Platinum and later, AMD Zen 5; Zen 4 runs 512-bit FMAs as two 256-bit halves, and some Xeon
  Silver/Bronze parts have a single 512-bit unit: half the figure). Pass ``fma_units`` when the data sheet
  says otherwise.

>>> spec = parse_cpu_spec("model name : Example CPU\\ncpu MHz : 2500.0\\nflags : fpu avx avx2 fma avx512f\\n",
...                       "Core(s) per socket: 4\\nSocket(s): 1\\n", usable_cpus=4)
>>> spec.fp32_flops_per_cycle, spec.peak_flops / 1e9  # 16 lanes x 2 FMA units x 2 FLOPs; 4 cores x 2.5 GHz x 64
(64, 640.0)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FMA_UNITS = 2  # FMA pipes per core: not in /proc/cpuinfo; see the module docstring
FP32_BITS = 32


@dataclass(frozen=True)
class CpuSpec:
    """What the data sheet says the CPU can do, with the source of each number."""

    model: str
    cores: int  # physical cores this process can use
    ghz: float  # clock used for the peak
    vector_bits: int  # widest vector width of the FMA instructions: 512, 256 or 128
    fma_units: int  # FMA pipes per core (an assumption unless given)
    sources: dict = field(default_factory=dict)  # quantity -> where it was read

    @property
    def fp32_flops_per_cycle(self) -> int:
        """fp32 FLOPs one core can do per cycle: lanes x FMA units x 2 (multiply and add)."""
        return (self.vector_bits // FP32_BITS) * self.fma_units * 2

    @property
    def peak_flops(self) -> float:
        """Theoretical fp32 FLOP/s: cores x clock x FLOPs per cycle."""
        return self.cores * self.ghz * 1e9 * self.fp32_flops_per_cycle

    @property
    def formula(self) -> str:
        """The product, written out: ``2 cores x 2.60 GHz x 16 lanes x 2 FMA units x 2 = 333 GFLOP/s``."""
        return (f"{self.cores} cores x {self.ghz:.2f} GHz x {self.vector_bits // FP32_BITS} fp32 lanes x "
                f"{self.fma_units} FMA units x 2 = {self.peak_flops / 1e9:.0f} GFLOP/s")


def _field(text: str, name: str) -> str | None:
    """The value of the first ``name : value`` line of `text` (cpuinfo and lscpu both use this shape)."""
    m = re.search(rf"^\s*{re.escape(name)}\s*:\s*(.+?)\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    return m.group(1) if m else None


def _vector_bits(flags: set[str]) -> tuple[int, str]:
    if "avx512f" in flags:
        return 512, "avx512f in the flags: 512-bit FMA"
    if "fma" in flags and ("avx2" in flags or "avx" in flags):
        return 256, "fma and avx2 in the flags: 256-bit FMA"
    if "avx" in flags:
        return 256, "avx without fma: 256-bit (a multiply and an add counted as one FMA)"
    return 128, "no AVX in the flags: 128-bit SSE"


def parse_cpu_spec(cpuinfo: str, lscpu: str = "", *, usable_cpus: int | None = None,
                   fma_units: int = DEFAULT_FMA_UNITS) -> CpuSpec:
    """A :class:`CpuSpec` from the text of ``/proc/cpuinfo`` and of ``lscpu`` (may be empty).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo``.
        lscpu: the output of ``lscpu`` ("" when it is not installed: cores then come from ``cpu cores``).
        usable_cpus: CPUs this process may run on (None: ``os.sched_getaffinity``).
        fma_units: FMA pipes per core (see :data:`DEFAULT_FMA_UNITS`).
    """
    if fma_units < 1:
        raise ValueError(f"fma_units={fma_units} must be >= 1")
    flags_text = _field(cpuinfo, "flags")
    if flags_text is None:
        raise ValueError("no 'flags' line in the cpuinfo text: pass the contents of /proc/cpuinfo (x86 Linux)")
    flags = set(flags_text.split())
    sources = {"model": "/proc/cpuinfo model name", "flags": "/proc/cpuinfo flags"}
    model = _field(cpuinfo, "model name") or "unknown CPU"
    per_socket, sockets = _field(lscpu, "Core(s) per socket"), _field(lscpu, "Socket(s)")
    if per_socket and sockets:
        physical = int(per_socket) * int(sockets)
        sources["cores"] = f"lscpu Core(s) per socket x Socket(s) = {per_socket} x {sockets}"
    else:
        per_cpu = _field(cpuinfo, "cpu cores")
        physical = int(per_cpu) if per_cpu else cpuinfo.count("processor")
        sources["cores"] = "/proc/cpuinfo cpu cores" if per_cpu else "/proc/cpuinfo processor lines"
    usable = usable_cpus if usable_cpus is not None else len(os.sched_getaffinity(0))
    if usable < physical:
        sources["cores"] += f", limited to the {usable} CPUs this process may use"
    cores = max(1, min(physical, usable))
    max_mhz = _field(lscpu, "CPU max MHz")
    if max_mhz:
        ghz, sources["clock"] = float(max_mhz) / 1e3, "lscpu CPU max MHz"
    else:
        mhz = _field(cpuinfo, "cpu MHz")
        if mhz is None:
            raise ValueError("no clock in lscpu ('CPU max MHz') nor in cpuinfo ('cpu MHz')")
        ghz = float(mhz) / 1e3
        sources["clock"] = "/proc/cpuinfo cpu MHz (nominal; lscpu shows no max MHz, so boost is not counted)"
    bits, why = _vector_bits(flags)
    sources["vector width"] = f"/proc/cpuinfo flags: {why}"
    sources["FMA units"] = ("given" if fma_units != DEFAULT_FMA_UNITS else
                            f"assumed {DEFAULT_FMA_UNITS} per core (not in /proc/cpuinfo; see the data sheet)")
    return CpuSpec(model, cores, ghz, bits, fma_units, sources)


def read_cpu_spec(*, fma_units: int = DEFAULT_FMA_UNITS) -> CpuSpec | None:
    """This machine's :class:`CpuSpec`, or None where ``/proc/cpuinfo`` has no x86 flags (macOS, ARM, Windows)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return None
    cpuinfo = path.read_text(errors="replace")
    lscpu = ""
    if shutil.which("lscpu"):
        try:
            lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                   env={**os.environ, "LC_ALL": "C"}).stdout
        except (OSError, subprocess.SubprocessError):
            lscpu = ""
    try:
        return parse_cpu_spec(cpuinfo, lscpu, fma_units=fma_units)
    except ValueError:
        return None


__all__ = ["CpuSpec", "parse_cpu_spec", "read_cpu_spec", "DEFAULT_FMA_UNITS"]
