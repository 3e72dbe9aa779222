"""facekit.compress.export: ONNX export of small embedding networks, onnxruntime parity and a dynamic batch."""

import doctest
import importlib

import pytest
import torch
from torch import nn

from facekit.compress import OnnxEmbedder, export_onnx, onnx_max_abs_diff
from facekit.config import ConfigError
from facekit.models import create_embedding

pytestmark = pytest.mark.usefixtures("one_thread")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime onnx)")
pytest.importorskip("onnx", reason="onnx is not installed")


def test_doctests():
    assert doctest.testmod(importlib.import_module("facekit.compress.export")).failed == 0


def test_legacy_export_parity_mobilefacenet(tmp_path):
    torch.manual_seed(0)
    net = create_embedding("mobilefacenet_tiny", image_size=32).eval()
    path = export_onnx(net, torch.zeros(1, 3, 32, 32), tmp_path / "mfn.onnx")
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))  # written atomically, no leftovers
    onnx_net = OnnxEmbedder(path, threads=1)
    x = torch.rand(5, 3, 32, 32)  # another batch size than exported: the batch axis is dynamic
    diff = onnx_max_abs_diff(net, onnx_net, x)
    assert diff < 1e-4
    assert onnx_net(x).shape == (5, 128)


@pytest.mark.slow  # torch.export + onnxscript: about 10 s
def test_dynamo_export_parity(tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 4)).eval()
    path = export_onnx(net, torch.zeros(2, 3, 16, 16), tmp_path / "small.onnx", exporter="dynamo")
    assert onnx_max_abs_diff(net, OnnxEmbedder(path), torch.rand(3, 3, 16, 16)) < 1e-5


def test_export_errors(tmp_path):
    net = nn.Linear(4, 2)
    with pytest.raises(ConfigError):
        export_onnx(net, torch.zeros(1, 4), tmp_path / "a.onnx", exporter="tflite")
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(net, torch.zeros(1, 4), tmp_path / "a.pt")
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxEmbedder(tmp_path / "missing.onnx")
