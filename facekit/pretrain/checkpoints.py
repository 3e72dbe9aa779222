"""Pretrained backbones handed from notebook 05 (pretraining) to the chapters that fine-tune them.

A checkpoint is a plain dict written atomically with :func:`facekit.train.save_checkpoint` to
``facekit.io.artifact_path(name, profile)``::

    {"state_dict": {...},                                  # the backbone's weights
     "arch": {"name": "vit", "config": {...}},             # how to rebuild it (plain literals)
     "profile": "cpu",                                     # the profile that produced it
     "pretrain": {"method": "mae", "epochs": 20, ...}}     # what was done (plain literals)

``load_pretrained`` rebuilds the model from ``arch`` through ``ARCHITECTURES`` (a view of the one
model registry, :func:`facekit.models.create_model`; no pickled classes: the file is read with ``weights_only=True``) and loads the weights strictly.

Example (notebook 05 writes, notebook 06 reads)::

    vit = VisionTransformer(0, "tiny", image_size=32)            # the MAE's encoder
    save_pretrained(vit, "mae_vit.pt", P.name, meta={"method": "mae", "epochs": 20})
    encoder, meta = load_pretrained("mae_vit.pt", P.name)        # a VisionTransformer, weights loaded
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from facekit.config import ConfigError, check_keys
from facekit.io import artifact_path
from facekit.models.embedding_iresnet import IResNet  # noqa: F401  (used by the doctest)
from facekit.models.registry import create_model, model_config
from facekit.models.vit import VisionTransformer
from facekit.profiles import resolve_profile
from facekit.train.checkpoint import load_checkpoint, save_checkpoint

PRODUCER = "05"  # the notebook that writes the pretrained checkpoints
CHECKPOINT_KEYS = ("state_dict", "arch", "profile", "pretrain")


def _from_registry(name: str) -> Callable[[Mapping[str, Any]], nn.Module]:
    def build(config: Mapping[str, Any]) -> nn.Module:
        return create_model(name, **dict(config))

    return build


# arch name -> builder(config mapping) -> backbone; every backbone maps (B, C, H, W) to (B, D) features.
# A view of the one registry (facekit.models.create_model); a ViT's config leaves num_classes out (0: no head).
ARCHITECTURES: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    name: _from_registry(name) for name in ("vit", "iresnet", "mobilefacenet", "small_resnet")}


def _plain(value: Any, where: str) -> Any:
    """`value` as nested dicts / lists / tuples of str, int, float, bool, None; a dataclass becomes a dict."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} must be a str")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, where) for v in value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{where}: {type(value).__name__} is not a plain literal (str, int, float, bool, None, "
                    f"list, tuple, dict); convert it before saving")


def arch_of(model: nn.Module) -> dict:
    """The ``{"name", "config"}`` that rebuilds `model` (a ViT, IResNet or MobileFaceNet backbone, or a
    backbone of ``ARCHITECTURES`` built by :func:`facekit.models.create_model`).

    >>> arch_of(IResNet("iresnet_tiny", image_size=32))["config"]["widths"]
    (16, 32, 64, 128)
    """
    if isinstance(model, VisionTransformer) and model.num_classes:
        raise ValueError("save the ViT as a backbone: build it with num_classes=0 (or give arch= explicitly)")
    try:
        spec = model_config(model)
    except ValueError:
        spec = {"name": None}
    if spec["name"] not in ARCHITECTURES:
        raise ValueError(f"cannot infer the architecture of {type(model).__name__}; pass arch={{'name': one of "
                         f"{sorted(ARCHITECTURES)}, 'config': {{...}}}}")
    config = dict(spec["config"])
    if spec["name"] == "vit":
        config.pop("num_classes")  # 0, the registry's default for a ViT
    return {"name": spec["name"], "config": _plain(config, "arch['config']")}


def build_arch(arch: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised backbone from ``{"name": ..., "config": {...}}`` (see ``ARCHITECTURES``)."""
    if not isinstance(arch, Mapping) or set(arch) != {"name", "config"}:
        raise ConfigError(f"arch must be a dict with exactly the keys 'name' and 'config', got {arch!r}")
    check_keys([arch["name"]], ARCHITECTURES, what="pretrained architecture")
    return ARCHITECTURES[arch["name"]](arch["config"])


def pretrained_path(name: str, profile: str = "auto") -> Path:
    """Where the checkpoint `name` of `profile` lives (``facekit.io.artifact_path``)."""
    return artifact_path(name, resolve_profile(profile))


def save_pretrained(model: nn.Module, name: str, profile: str, *, arch: Mapping[str, Any] | None = None,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write `model`'s weights with how to rebuild it (`arch`) and what was done (`meta`) to the artifact `name`.

    Args:
        model: the backbone (e.g. the MAE's ViT encoder, the SimCLR CNN without its projection head).
        name: file name such as ``"mae_vit.pt"``.
        profile: the notebook's profile (``auto`` is resolved).
        arch: ``{"name": ..., "config": {...}}``; None = ``arch_of(model)``. Checked by rebuilding it.
        meta: plain literals describing the pretraining (method, epochs, final loss, data ...).

    Returns the path written.
    """
    profile = resolve_profile(profile)
    arch = _plain(dict(arch) if arch is not None else arch_of(model), "arch")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    build_arch(arch).load_state_dict(state, strict=True)  # fail now, not in the next notebook
    checkpoint = {"state_dict": state, "arch": arch, "profile": profile,
                  "pretrain": _plain(dict(meta or {}), "meta")}
    return save_checkpoint(artifact_path(name, profile), checkpoint)


def load_pretrained(name: str, profile: str = "auto", *, map_location="cpu") -> tuple[nn.Module, dict]:
    """The backbone saved as `name` by notebook 05 at `profile`, rebuilt and loaded, and its ``pretrain`` meta.

    Raises FileNotFoundError saying how to produce the file when it is missing.

    >>> load_pretrained("no_such.pt", "smoke")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no pretrained checkpoint 'no_such.pt' for profile 'smoke' at ...; run notebook 05 first: facekit report 05 --profile smoke
    """
    profile = resolve_profile(profile)
    path = artifact_path(name, profile)
    if not path.is_file():
        raise FileNotFoundError(
            f"no pretrained checkpoint {name!r} for profile {profile!r} at {path}; run notebook {PRODUCER} first: "
            f"facekit report {PRODUCER} --profile {profile}")
    checkpoint = load_checkpoint(path, map_location=map_location)
    missing = [k for k in CHECKPOINT_KEYS if k not in checkpoint]
    if missing:
        raise RuntimeError(f"{path} lacks {missing}: it is not a facekit pretrained checkpoint; "
                           f"run notebook {PRODUCER} again (facekit report {PRODUCER} --profile {profile})")
    model = build_arch(checkpoint["arch"])
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    return model, dict(checkpoint["pretrain"])


__all__ = ["ARCHITECTURES", "arch_of", "build_arch", "pretrained_path", "save_pretrained", "load_pretrained"]
