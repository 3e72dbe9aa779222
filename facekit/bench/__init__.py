"""Measurements of models beyond accuracy: timing done right, throughput, latency, memory, levers, efficiency.

- ``timer``: :class:`Timer` (warm-up, device synchronisation or CUDA events, median, p95, IQR);
- ``steps``: a training step and an inference pass on seeded random inputs, as images/s;
- ``memory``: the CUDA allocator's peak (an honest 'n/a' on the CPU);
- ``peak``: the device's measured matmul and convolution FLOP/s (over sizes and threads) and copy bandwidth,
  MFU and the roofline;
- ``cpu_spec``: the CPU's theoretical FLOP/s from /proc/cpuinfo and lscpu (cores x clock x FMA lanes x units x 2);
- ``levers``: fp32 / TF32 / bf16 / fp16 autocast / channels_last / torch.compile / CUDA graphs, on and off;
- ``loading``: DataLoader workers and pinned memory;
- ``backbones``: the course's networks, the two pretrained face models and the ResNet-50 reference by name;
- ``suite``: one table row per model;
- ``compare``: a speed-up with its interval and a verdict from paired timing rounds;
- ``throughput``: the older helpers used by the chapters (fastest pass, a ``fit`` history's images/s).
"""

from facekit.bench.backbones import BACKBONES, REFERENCE, build_backbone, dlib_descriptor_timer, unavailable
from facekit.bench.levers import LEVERS, LeverResult, measure_levers, skip_reason
from facekit.bench.loading import LoaderResult, SyntheticImages, loader_throughput, loading_grid
from facekit.bench.memory import MemoryPeak, peak_memory
from facekit.bench.compare import speedup_verdict
from facekit.bench.cpu_spec import CpuSpec, parse_cpu_spec, read_cpu_spec
from facekit.bench.peak import (Peak, PeakSweep, Roofline, achieved_flops, activation_bytes, conv_peak, copy_bandwidth,
                                matmul_peak, mfu, peak_sweep, roofline)
from facekit.bench.steps import (Rate, inference_rate, inference_sweep, make_inference, make_train_step, proxy_loss,
                                 random_inputs, train_step_rate)
from facekit.bench.suite import measure_model
from facekit.bench.throughput import inference_throughput, train_throughput
from facekit.bench.timer import Timer, Timing, device_synchronizer, summarize

__all__ = ["inference_throughput", "train_throughput", "Timer", "Timing", "summarize", "device_synchronizer",
           "Rate", "random_inputs", "proxy_loss", "make_train_step", "make_inference", "train_step_rate",
           "inference_rate", "inference_sweep", "MemoryPeak", "peak_memory", "Peak", "matmul_peak",
           "conv_peak", "PeakSweep", "peak_sweep", "CpuSpec", "speedup_verdict", "parse_cpu_spec", "read_cpu_spec", "copy_bandwidth",
           "mfu", "achieved_flops", "activation_bytes", "Roofline", "roofline", "LEVERS", "LeverResult",
           "skip_reason", "measure_levers", "SyntheticImages", "LoaderResult", "loader_throughput", "loading_grid",
           "BACKBONES", "REFERENCE", "build_backbone", "unavailable", "dlib_descriptor_timer", "measure_model"]
