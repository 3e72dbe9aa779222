"""ONNX export of an embedding network and inference with onnxruntime, with the numerical parity checked.

The TorchScript-based exporter (``dynamo=False``) is the default: it is fast, exports a dynamic batch
axis, and behaves the same in torch 2.11 and 2.14; ``exporter="dynamo"`` uses ``torch.export`` (needs
``onnxscript``). onnxruntime and onnx are optional: a clear error says how to install them.

>>> path = export_onnx(nn.Linear(4, 2), torch.zeros(1, 4), "/tmp/facekit_doctest.onnx")  # doctest: +SKIP
>>> OnnxEmbedder(path)(torch.zeros(3, 4)).shape  # doctest: +SKIP
torch.Size([3, 2])
"""

from __future__ import annotations

from pathlib import Path

import warnings

import numpy as np
import torch
from torch import nn

from facekit.config import choice
from facekit.io import atomic_path

EXPORTERS = ("legacy", "dynamo")
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"


def _ort():
    try:
        import onnxruntime
    except ImportError as err:  # pragma: no cover - installed in the course environment
        raise ImportError("onnxruntime is not installed: pip install onnxruntime onnx") from err
    return onnxruntime


def export_onnx(model: nn.Module, example: torch.Tensor, path, *, exporter: str = "legacy",
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = True) -> Path:
    """Export ``model`` (eval mode, CPU) to the ONNX file `path`, written atomically.

    Args:
        model: a float network ``(B, C, H, W) -> (B, D)``.
        example: an input of the right shape, e.g. ``torch.zeros(1, 3, 150, 150)``.
        path: the ``.onnx`` file.
        exporter: "legacy" (TorchScript tracing) or "dynamo" (``torch.export``).
        opset: the ONNX operator set.
        dynamic_batch: the batch axis is symbolic, so any batch size runs.
    """
    choice(exporter, EXPORTERS, name="exporter")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path must end in .onnx, got {path}")
    model = model.cpu().eval()
    example = example.cpu()
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    with atomic_path(path) as tmp, warnings.catch_warnings():  # the exporters write to any file name
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice, tracer warnings on shape checks
        if exporter == "legacy":
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, dynamic_axes=axes, **kwargs)
        else:
            shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
            torch.onnx.export(model, (example,), str(tmp), dynamo=True, dynamic_shapes=shapes,
                              external_data=False, **kwargs)
    return path


class OnnxEmbedder:
    """Calls an ONNX embedding model through onnxruntime like a module: torch in, torch out (float32, CPU)."""

    def __init__(self, path, *, threads: int | None = None):
        ort = _ort()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX file at {self.path}; make one with export_onnx")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy().astype(np.float32))
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


@torch.inference_mode()
def onnx_max_abs_diff(model: nn.Module, onnx_model: OnnxEmbedder, inputs: torch.Tensor) -> float:
    """Largest absolute difference between the PyTorch and onnxruntime outputs on `inputs`."""
    ref = model.cpu().eval()(inputs.cpu()).float()
    return float((ref - onnx_model(inputs)).abs().max())


__all__ = ["export_onnx", "OnnxEmbedder", "onnx_max_abs_diff", "EXPORTERS", "DEFAULT_OPSET"]
