"""One registry of every network facekit builds: :func:`create_model` (name + config) and :func:`model_config`.

A model's whole configuration, ``num_classes`` included, is one mapping, so the pair
``{"name": ..., "config": {...}}`` that :func:`model_config` returns rebuilds the model
(``create_model(spec["name"], **spec["config"])``): checkpoints store it, benchmarks and chapters
build from it. Networks outside :mod:`facekit.models` (torchvision's ResNet-50, the detector, the two
pretrained face models) are named ``"module:attribute"`` and imported on first use, so this room
imports nothing above it.

>>> net = create_model("vit", num_classes=5, preset="tiny", depth=1, image_size=32)
>>> spec = model_config(net)
>>> spec["name"], spec["config"]["num_classes"], spec["config"]["depth"]
('vit', 5, 1)
>>> type(create_model(spec["name"], **spec["config"])).__name__
'VisionTransformer'
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from facekit.config import check_keys
from facekit.models.cnn import ArticleCNN, SmallResNet
from facekit.models.cnn_attention import AttentionResNet
from facekit.models.embedding_iresnet import IRESNET_PRESETS, IResNet
from facekit.models.embedding_mobilefacenet import MOBILEFACENET_PRESETS, MobileFaceNet
from facekit.models.vit import VisionTransformer

CONFIG_ATTR = "facekit_model_config"  # where create_model leaves {"name", "config"} on the model it builds


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module] | str  # (**config) -> model, or "module:attribute" imported on first use
    summary: str
    kind: str  # "classifier" (config has num_classes), "embedding" (image -> D), "detector", "pretrained"


def _vit(num_classes: int = 0, preset: str | None = None, **fields) -> nn.Module:
    return VisionTransformer(num_classes, preset, **fields)  # num_classes 0: a backbone returning features


def _preset(family, preset: str) -> Callable[..., nn.Module]:
    def build(**fields) -> nn.Module:
        return family(preset, **fields)

    build.__name__ = preset
    return build


def _specs() -> dict[str, ModelSpec]:
    specs = [
        ModelSpec("article_cnn", ArticleCNN, "chapter 1: the source article's CNN", "classifier"),
        ModelSpec("small_resnet", SmallResNet, "chapter 1: a small residual CNN", "classifier"),
        ModelSpec("attention_resnet", AttentionResNet, "chapter 2: SmallResNet with SE/CBAM blocks", "classifier"),
        ModelSpec("vit", _vit, "chapter 2: vision transformer (preset= one of VIT_PRESETS)", "classifier"),
        ModelSpec("iresnet", IResNet, "insightface's IResNet, every IResNetConfig field", "embedding"),
    ]
    specs += [ModelSpec(p, _preset(IResNet, p), f"IResNet preset {p!r}", "embedding") for p in IRESNET_PRESETS]
    specs += [ModelSpec(p, _preset(MobileFaceNet, p), f"MobileFaceNet preset {p!r}", "embedding")
              for p in MOBILEFACENET_PRESETS]
    specs += [
        ModelSpec("resnet50", "torchvision.models:resnet50", "torchvision's ResNet-50 (the benchmark reference)",
                  "classifier"),
        ModelSpec("detector", "facekit.detection:FaceDetector", "chapter 3: the one-stage face detector", "detector"),
        ModelSpec("dlib_resnet", "facekit.pretrained:load_dlib_resnet", "dlib's face ResNet, its weights",
                  "pretrained"),
        ModelSpec("facenet", "facekit.pretrained:load_facenet", "FaceNet (CASIA-WebFace), its weights", "pretrained"),
    ]
    return {s.name: s for s in specs}


MODEL_SPECS: dict[str, ModelSpec] = _specs()


def _builder(spec: ModelSpec) -> Callable[..., nn.Module]:
    if callable(spec.build):
        return spec.build
    module, attr = spec.build.split(":")
    return getattr(importlib.import_module(module), attr)


def create_model(name: str, **config) -> nn.Module:
    """Build the network registered as ``name`` from its whole configuration.

    Args:
        name: one of :data:`MODEL_SPECS` (course classifiers, embedding presets, the detector, the
            reference ResNet-50 and the two pretrained face models).
        **config: the constructor's settings, ``num_classes`` included (e.g. ``image_size``,
            ``widths``, a ViT ``preset``); a mistyped key is an error from the constructor naming it.

    The returned model carries ``{"name", "config"}`` (see :func:`model_config`), so it can be rebuilt.

    Raises:
        ConfigError: unknown ``name``, with a close match and the accepted names.

    >>> create_model("small_resnet", num_classes=3, widths=(8, 16)).fc.out_features
    3
    """
    check_keys([name], MODEL_SPECS, what="model")
    model = _builder(MODEL_SPECS[name])(**config)
    setattr(model, CONFIG_ATTR, {"name": name, "config": dict(config)})
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"name", "config"}`` that rebuilds ``model`` with :func:`create_model`.

    Known for every model built by :func:`create_model`, and for a ViT, IResNet or MobileFaceNet built
    by its constructor (their config dataclasses hold every setting).

    Raises:
        ValueError: a model whose settings cannot be recovered, naming its class.
    """
    if isinstance(model, VisionTransformer):
        return {"name": "vit", "config": {"num_classes": model.num_classes, **dataclasses.asdict(model.config)}}
    if isinstance(model, IResNet):
        return {"name": "iresnet", "config": dataclasses.asdict(model.config)}
    if isinstance(model, MobileFaceNet):
        return {"name": "mobilefacenet", "config": dataclasses.asdict(model.config)}
    recorded = getattr(model, CONFIG_ATTR, None)
    if recorded is not None:
        return {"name": recorded["name"], "config": dict(recorded["config"])}
    raise ValueError(f"cannot tell how to rebuild a {type(model).__name__} built by its constructor; build it with "
                     f"facekit.models.create_model(name, **config) (names: {', '.join(MODEL_SPECS)})")


def model_names(kind: str | None = None) -> list[str]:
    """Registered names, all or those of one ``kind`` ("classifier", "embedding", "detector", "pretrained")."""
    return [n for n, s in MODEL_SPECS.items() if kind is None or s.kind == kind]


__all__ = ["ModelSpec", "MODEL_SPECS", "create_model", "model_config", "model_names", "CONFIG_ATTR"]
