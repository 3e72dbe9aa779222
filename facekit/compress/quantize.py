"""Post-training quantisation and reduced-precision copies of a model, for CPU inference.

- :func:`affine_qparams` / :func:`fake_quantize`: the int8 affine map ``q = round(x / scale) + zero_point``
  written out (what every observer computes), checked against ``torch.quantize_per_tensor`` in the tests;
- :func:`dynamic_int8`: ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear`` layers (weights int8,
  activations quantised on the fly). A conv net has few Linear weights: :func:`layer_coverage` says how few;
- :func:`static_int8`: eager-mode static quantisation of every ``Conv2d`` and ``Linear`` layer, each wrapped
  in quant/dequant stubs (``QuantWrapper``), with observers calibrated on real inputs. Graph mode (FX)
  cannot trace networks with shape-dependent Python (dlib's zero-padded residual add), so everything
  between two conv layers (affine, padding, adds, pooling) stays in float: "quantise what can be";
- :func:`cast_precision`: fp16 / bf16 weights and compute, inputs cast in and fp32 out.

``torch.ao.quantization`` is deprecated in favour of torchao (not installed here); it still works in torch
2.11 to 2.14 and its deprecation warnings are silenced here.

>>> q = dynamic_int8(nn.Sequential(nn.Linear(8, 4)))
>>> q(torch.zeros(2, 8)).shape
torch.Size([2, 4])
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from typing import Callable, Iterable

import torch
from torch import nn

from facekit.config import choice

INT8_MIN, INT8_MAX = -128, 127  # signed int8 (weights)
UINT8_MIN, UINT8_MAX = 0, 255  # unsigned int8 (activations)
QUANT_BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
QUANTIZABLE = (nn.Conv2d, nn.Linear)


@contextmanager
def _quiet():
    """Silence torch.ao.quantization's deprecation warnings (it points to torchao, which is not installed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def affine_qparams(x_min: float, x_max: float, qmin: int = UINT8_MIN, qmax: int = UINT8_MAX) -> tuple[float, int]:
    """Scale and zero point mapping ``[x_min, x_max]`` (widened to include 0) onto ``[qmin, qmax]``.

    ``scale = (x_max - x_min) / (qmax - qmin)``, ``zero_point = qmin - round(x_min / scale)`` (clamped),
    so that 0.0 is exactly representable (zero padding stays exact), as PyTorch's MinMaxObserver does.

    >>> affine_qparams(-1.0, 1.0, -128, 127)
    (0.00784313725490196, 0)
    """
    if qmin >= qmax:
        raise ValueError(f"need qmin < qmax, got {qmin}, {qmax}")
    x_min, x_max = min(float(x_min), 0.0), max(float(x_max), 0.0)
    scale = (x_max - x_min) / (qmax - qmin)
    if scale == 0.0:
        return 1.0, 0 if qmin < 0 else qmin
    zero_point = int(min(max(qmin - round(x_min / scale), qmin), qmax))
    return scale, zero_point


def fake_quantize(x: torch.Tensor, scale: float, zero_point: int, qmin: int = UINT8_MIN,
                  qmax: int = UINT8_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise and dequantise: ``q = clamp(round(x / scale) + zero_point)``, ``x_hat = (q - zero_point) * scale``.

    Returns:
        ``(q, x_hat)``: the integer codes (int64 tensor) and the reconstructed floats.

    >>> q, x_hat = fake_quantize(torch.tensor([0.0, 0.5, 2.0]), 0.01, 0)
    >>> q.tolist(), x_hat.tolist()
    ([0, 50, 200], [0.0, 0.5, 2.0])
    """
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int64)
    return q, (q - zero_point).to(x.dtype) * scale


def layer_coverage(model: nn.Module, layer_types=(nn.Linear,)) -> float:
    """Fraction of the model's parameters held by layers of `layer_types` (what a layer-wise scheme can touch).

    >>> layer_coverage(nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), nn.Linear(1, 1, bias=False)))
    0.1
    """
    total = sum(p.numel() for p in model.parameters())
    covered = sum(p.numel() for m in model.modules() if isinstance(m, tuple(layer_types))
                  for p in m.parameters(recurse=False))
    return covered / total if total else 0.0


def dynamic_int8(model: nn.Module, layer_types=(nn.Linear,)) -> nn.Module:
    """A copy of `model` (eval mode) with `layer_types` dynamically quantised to int8 (CPU only)."""
    with _quiet():
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().eval(), set(layer_types),
                                                      dtype=torch.qint8)


def _wrap_layers(module: nn.Module, layer_types) -> int:
    """Replace each child of `layer_types` by ``QuantWrapper(child)`` (quant -> layer -> dequant), recursively."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, layer_types):
            setattr(module, name, torch.ao.quantization.QuantWrapper(child))
            count += 1
        else:
            count += _wrap_layers(child, layer_types)
    return count


def static_int8(model: nn.Module, calibration: Iterable[torch.Tensor] | Callable[[nn.Module], None], *,
                backend: str = "x86", layer_types=QUANTIZABLE) -> nn.Module:
    """A statically quantised copy of `model`: int8 weights and activations in every layer of `layer_types`.

    Args:
        model: a float model (left unchanged).
        calibration: batches of inputs run through the observed model (a few hundred real images are
            plenty), or a callable ``calibrate(observed_model)``.
        backend: the quantised kernel library: "x86" (default, fbgemm + onednn), "fbgemm", "onednn"
            or "qnnpack" (ARM). It must be in ``torch.backends.quantized.supported_engines``.
        layer_types: the layers to quantise, each between its own quant/dequant stubs.

    Returns:
        The converted model (CPU, eval mode); ``torch.backends.quantized.engine`` is set to `backend`.
    """
    choice(backend, QUANT_BACKENDS, name="backend")
    if backend not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"quantised backend {backend!r} is not available in this torch build; available: "
                           f"{torch.backends.quantized.supported_engines}")
    torch.backends.quantized.engine = backend
    observed = copy.deepcopy(model).cpu().eval()
    if _wrap_layers(observed, tuple(layer_types)) == 0:
        raise ValueError(f"the model has no layer of type {[t.__name__ for t in layer_types]} to quantise")
    with _quiet():
        for m in observed.modules():
            if isinstance(m, torch.ao.quantization.QuantWrapper):
                m.qconfig = torch.ao.quantization.get_default_qconfig(backend)
        torch.ao.quantization.prepare(observed, inplace=True)
        with torch.inference_mode():
            if callable(calibration):
                calibration(observed)
            else:
                seen = 0
                for batch in calibration:
                    observed(batch.cpu())
                    seen += 1
                if seen == 0:
                    raise ValueError("calibration gave no batch; pass at least one batch of real inputs")
        return torch.ao.quantization.convert(observed, inplace=True)


class CastPrecision(nn.Module):
    """Runs ``model`` in ``dtype``: the input is cast to it, the output back to float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def cast_precision(model: nn.Module, precision: str) -> nn.Module:
    """A copy of `model` with weights and compute in "fp16", "bf16" (or "fp32"), float32 outputs.

    >>> cast_precision(nn.Linear(4, 2), "bf16")(torch.zeros(1, 4)).dtype
    torch.float32
    """
    choice(precision, tuple(PRECISIONS), name="precision")
    return CastPrecision(copy.deepcopy(model).eval(), PRECISIONS[precision]).eval()


__all__ = ["affine_qparams", "fake_quantize", "layer_coverage", "dynamic_int8", "static_int8", "cast_precision",
           "CastPrecision", "QUANT_BACKENDS", "PRECISIONS", "INT8_MIN", "INT8_MAX", "UINT8_MIN", "UINT8_MAX"]
