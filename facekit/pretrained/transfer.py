"""Transfer with real pretrained face models: FaceNet and dlib's ResNet cut into stages, few-shot enrolment,
open-set rejection.

* :class:`FacenetSlice` runs a contiguous range of FaceNet's named stages (``FACENET_STAGES``), sharing the
  parameters of the model it is cut from. ``FacenetSlice(net, stop="block8")`` is a frozen trunk whose
  outputs are computed once and cached; ``FacenetSlice(net, start="block8")`` is the part that partial
  fine-tuning trains on them; the two composed are the whole model.
* :class:`DlibSlice` does the same for dlib's ResNet (:class:`facekit.pretrained.DlibFaceResNet`), whose stages
  are ``DLIB_STAGES``: the stem, its 14 residual blocks and the pooled fc layer. dlib's net has no BatchNorm
  (its ``affine`` layers are batch norms folded into a fixed scale and shift), so there are no statistics to keep.
* :func:`keep_norm_stats`: the converted FaceNet has its batch norms folded into (identity) BatchNorm
  layers, so training with batch statistics would change the function; fine-tuning keeps every
  BatchNorm in eval mode.
* :func:`few_shot_split`: a gallery of ``shots`` images per person and the rest as probes; enrolment,
  identification and open-set rejection (``enrol``, ``identify``, ``choose_open_set_threshold``,
  ``open_set_metrics``) live in :mod:`facekit.metrics` and are re-exported here.

>>> labels = np.array([0, 0, 0, 1, 1, 1])
>>> enrol_idx, probe_idx = few_shot_split(labels, shots=1, seed=0)
>>> len(enrol_idx), len(probe_idx)
(2, 4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from facekit.metrics.identification import Gallery, enrol, identify  # noqa: F401  (re-exported)
from facekit.metrics.openset import OpenSetResult, choose_open_set_threshold, open_set_metrics  # noqa: F401
from facekit.train.finetune import freeze_norm_stats

FACENET_STAGES = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
                  "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a", "dropout",
                  "last_linear", "last_bn")  # facenet_pytorch.InceptionResnetV1.forward, in order


class FacenetSlice(nn.Module):
    """FaceNet's stages ``[start, stop)`` as a module (parameters shared with ``model``).

    Args:
        model: a ``facenet_pytorch.InceptionResnetV1`` (e.g. :func:`facekit.pretrained.load_facenet`), not classifying.
        start: first stage run (default: the input); stop: first stage *not* run (default: run to the end,
            which includes the L2 normalisation of the embedding).

    >>> from facenet_pytorch import InceptionResnetV1  # doctest: +SKIP
    >>> net = InceptionResnetV1().eval()  # doctest: +SKIP
    >>> trunk, head = FacenetSlice(net, stop="block8"), FacenetSlice(net, start="block8")  # doctest: +SKIP
    >>> trunk(torch.zeros(1, 3, 160, 160)).shape  # doctest: +SKIP
    torch.Size([1, 1792, 3, 3])
    """

    def __init__(self, model: nn.Module, start: str | None = None, stop: str | None = None):
        super().__init__()
        for name, value in (("start", start), ("stop", stop)):
            if value is not None and value not in FACENET_STAGES:
                raise ValueError(f"{name}={value!r} is not a FaceNet stage; accepted: {', '.join(FACENET_STAGES)}")
        if getattr(model, "classify", False):
            raise ValueError("model.classify is True: give the embedding model (InceptionResnetV1(classify=False))")
        i = 0 if start is None else FACENET_STAGES.index(start)
        j = len(FACENET_STAGES) if stop is None else FACENET_STAGES.index(stop)
        if i >= j:
            raise ValueError(f"empty slice: start={start!r} is not before stop={stop!r}")
        self.names = FACENET_STAGES[i:j]
        self.stages = nn.ModuleDict({n: getattr(model, n) for n in self.names})
        self.normalize = j == len(FACENET_STAGES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            if name == "last_linear":
                x = x.flatten(1)  # (B, 1792, 1, 1) -> (B, 1792)
            x = self.stages[name](x)
        return F.normalize(x, p=2, dim=1) if self.normalize else x

    def extra_repr(self) -> str:
        return f"{self.names[0]} .. {self.names[-1]}" + (" + L2 normalise" if self.normalize else "")


DLIB_STAGES = ("stem", *(f"block{i}" for i in range(14)), "fc")  # DlibFaceResNet.forward, in order


class DlibSlice(nn.Module):
    """dlib's ResNet stages ``[start, stop)`` as a module (parameters shared with ``model``).

    Args:
        model: a :class:`facekit.pretrained.DlibFaceResNet` (e.g. :func:`facekit.pretrained.load_dlib_resnet`).
        start: first stage run (default: ``"stem"``, the (B, 3, 150, 150) chips in [0, 255]); stop: first stage
            *not* run (default: run to the end, the raw 128-d descriptor). ``"blockK"`` is ``model.blocks[K]``;
            ``"stem"`` is the input scaling, the 7x7 conv, its affine layer, ReLU and max pool; ``"fc"`` is the
            global average pool and the fc layer.

    >>> from facekit.pretrained import DlibFaceResNet
    >>> net = DlibFaceResNet().eval()
    >>> trunk, head = DlibSlice(net, stop="block10"), DlibSlice(net, start="block10")
    >>> trunk(torch.zeros(1, 3, 150, 150)).shape
    torch.Size([1, 128, 8, 8])
    >>> head.names[0], head(trunk(torch.zeros(1, 3, 150, 150))).shape
    ('block10', torch.Size([1, 128]))
    """

    def __init__(self, model: nn.Module, start: str | None = None, stop: str | None = None):
        super().__init__()
        for name, value in (("start", start), ("stop", stop)):
            if value is not None and value not in DLIB_STAGES:
                raise ValueError(f"{name}={value!r} is not a stage of dlib's ResNet; "
                                 f"accepted: {', '.join(DLIB_STAGES)}")
        for attr in ("conv1", "affine1", "blocks", "fc", "mean_rgb"):
            if not hasattr(model, attr):
                raise ValueError(f"model ({type(model).__name__}) has no {attr!r}: give a DlibFaceResNet")
        i = 0 if start is None else DLIB_STAGES.index(start)
        j = len(DLIB_STAGES) if stop is None else DLIB_STAGES.index(stop)
        if i >= j:
            raise ValueError(f"empty slice: start={start!r} is not before stop={stop!r}")
        self.names = DLIB_STAGES[i:j]
        parts: dict[str, nn.Module] = {}
        for n in self.names:
            if n == "stem":
                parts.update(conv1=model.conv1, affine1=model.affine1)
            elif n == "fc":
                parts["fc"] = model.fc
            else:
                parts[n] = model.blocks[int(n[len("block"):])]
        self.parts = nn.ModuleDict(parts)
        if "stem" in self.names:
            self.register_buffer("mean_rgb", model.mean_rgb, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from facekit.pretrained.dlib_resnet import INPUT_SCALE

        for name in self.names:
            if name == "stem":  # DlibFaceResNet.normalize and the first lines of .features
                if x.ndim != 4 or x.shape[1] != 3:
                    raise ValueError(f"expected RGB chips of shape (B, 3, H, W), got {tuple(x.shape)}")
                x = (x.to(self.mean_rgb.dtype) - self.mean_rgb) / INPUT_SCALE
                x = F.max_pool2d(F.relu(self.parts["affine1"](self.parts["conv1"](x))), 3, 2)  # (B, 32, 35, 35)
            elif name == "fc":
                x = self.parts["fc"](x.mean(dim=(2, 3)))  # (B, 256, 2, 2) -> (B, 128)
            else:
                x = self.parts[name](x)
        return x

    def extra_repr(self) -> str:
        return f"{self.names[0]} .. {self.names[-1]}"


def keep_norm_stats(model: nn.Module) -> int:
    """Make every BatchNorm of ``model`` normalise with its stored statistics, even in ``train()``; returns how many.

    The same mechanism as :func:`facekit.train.freeze` uses for frozen parts
    (:func:`facekit.train.finetune.freeze_norm_stats` over the whole model).
    """
    return freeze_norm_stats(model)


def few_shot_split(labels, shots: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per person, ``shots`` random images to enrol and the rest as probes.

    Returns:
        ``(enrol_idx, probe_idx)`` sorted index arrays; a person needs more than ``shots`` images.
    """
    labels = np.asarray(labels)
    if shots < 1:
        raise ValueError(f"shots={shots} must be >= 1")
    rng = np.random.default_rng(seed)
    enrol_idx, probe_idx = [], []
    for person in np.unique(labels):
        idx = np.flatnonzero(labels == person)
        if len(idx) <= shots:
            raise ValueError(f"person {person!r} has {len(idx)} images; shots={shots} leaves no probe")
        idx = rng.permutation(idx)
        enrol_idx += idx[:shots].tolist()
        probe_idx += idx[shots:].tolist()
    return np.sort(enrol_idx), np.sort(probe_idx)


__all__ = ["FACENET_STAGES", "FacenetSlice", "DLIB_STAGES", "DlibSlice", "keep_norm_stats", "few_shot_split", "Gallery",
           "enrol", "identify", "OpenSetResult", "open_set_metrics", "choose_open_set_threshold"]
