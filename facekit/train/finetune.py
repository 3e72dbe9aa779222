"""Fine-tuning pieces: freeze / unfreeze by module-name prefix, parameter groups with learning-rate
multipliers (layer-wise decay), and a linear probe on frozen features.

Names are the dotted names of ``model.named_parameters()`` / ``named_modules()``; a prefix ``"blocks.0"``
matches ``blocks.0.attn.qkv.weight`` but not ``blocks.01...``; the empty prefix matches everything.

Policy for normalisation statistics: a BatchNorm layer inside a frozen part is frozen too. Its affine
parameters stop training, and its running mean and variance stop updating (the layer always normalises with
its stored statistics, even while ``fit`` has the model in ``train()`` mode), so a frozen part computes exactly
the function it had before fine-tuning. ``unfreeze`` undoes both.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
>>> freeze(net, ["0", "1"])
['0.weight', '0.bias', '1.weight', '1.bias']
>>> groups = param_groups(net, {"2": 0.1})
>>> [(g["name"], g["lr_scale"], len(g["params"])) for g in groups]
[('2', 0.1, 2)]
>>> _ = unfreeze(net); sorted(trainable_parameters(net))[:2]
['0.bias', '0.weight']
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from facekit.config import ConfigError

NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)  # layers with running statistics, frozen with their part
_FROZEN_ATTR = "_facekit_frozen"  # names of the parameters `freeze` turned off (unfreeze turns only these on)
_HOOK_ATTR = "_facekit_frozen_norm_hook"


def matches(name: str, prefix: str) -> bool:
    """True when the dotted `name` lies under `prefix` ("" matches every name).

    >>> matches("blocks.1.attn.qkv.weight", "blocks.1"), matches("blocks.10.mlp.0.bias", "blocks.1")
    (True, False)
    """
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _check_prefixes(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_modules() if n]
    for p in prefixes:
        if not any(matches(n, p) for n in names):
            top = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
            raise ConfigError(f"prefix {p!r} matches no parameter or module of {type(model).__name__}; "
                              f"its top-level names are: {', '.join(top)}")
    return list(prefixes)


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(matches(name, p) for p in prefixes)


def _force_eval(module: nn.Module, args):
    module.training = False  # runs before every forward: normalise with the stored statistics, update nothing


def freeze(model: nn.Module, prefixes: Sequence[str] | str = ("",), *, norm_stats: bool = True) -> list[str]:
    """Stop training the parameters under `prefixes` (default: the whole model).

    Args:
        model: any module.
        prefixes: dotted name prefixes, e.g. ``["patch_embed", "blocks.0", "blocks.1"]``; "" = everything.
            A prefix that matches nothing is a ConfigError listing the model's top-level names.
        norm_stats: also freeze the running statistics of the BatchNorm layers under `prefixes`
            (the module's policy; see the module docstring). False lets them keep updating in ``train()``.

    Returns:
        The names of the parameters frozen by this call.
    """
    prefixes = _check_prefixes(model, prefixes)
    frozen = getattr(model, _FROZEN_ATTR, set())
    done = []
    for name, p in model.named_parameters():
        if _under(name, prefixes) and p.requires_grad:
            p.requires_grad_(False)
            frozen.add(name)
            done.append(name)
    object.__setattr__(model, _FROZEN_ATTR, frozen)
    if norm_stats:
        freeze_norm_stats(model, prefixes)
    return done


def freeze_norm_stats(model: nn.Module, prefixes: Sequence[str] | str = ("",)) -> int:
    """Make the BatchNorm layers under `prefixes` normalise with their stored statistics, even in ``train()``.

    Their affine parameters stay as they are (trainable or not); :func:`unfreeze` releases the statistics.
    Returns how many layers this call fixed (layers fixed before are not counted again).
    """
    prefixes = _check_prefixes(model, prefixes)
    count = 0
    for name, m in model.named_modules():
        if isinstance(m, NORM_TYPES) and _under(name, prefixes) and getattr(m, _HOOK_ATTR, None) is None:
            object.__setattr__(m, _HOOK_ATTR, m.register_forward_pre_hook(_force_eval))
            count += 1
    return count


def unfreeze(model: nn.Module, prefixes: Sequence[str] | str = ("",)) -> list[str]:
    """Train again the parameters under `prefixes` that :func:`freeze` froze; release their norm statistics.

    Parameters that were fixed by the model itself (e.g. IResNet's last BatchNorm scale) stay fixed.
    Returns the names of the parameters unfrozen.
    """
    prefixes = _check_prefixes(model, prefixes)
    frozen = getattr(model, _FROZEN_ATTR, set())
    done = []
    for name, p in model.named_parameters():
        if name in frozen and _under(name, prefixes):
            p.requires_grad_(True)
            frozen.discard(name)
            done.append(name)
    for name, m in model.named_modules():
        hook = getattr(m, _HOOK_ATTR, None)
        if hook is not None and _under(name, prefixes):
            hook.remove()
            object.__setattr__(m, _HOOK_ATTR, None)
            m.train(model.training)  # the hook left it in eval mode: back to the model's mode
    return done


def trainable_parameters(model: nn.Module) -> list[str]:
    """Names of the parameters with ``requires_grad``."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) number of parameter elements."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def param_groups(model: nn.Module, lr_scales: Mapping[str, float], *, default: float = 1.0,
                 weight_decay: float | None = None) -> list[dict]:
    """Optimizer parameter groups with learning-rate multipliers, for ``fit(..., param_groups=...)``.

    Every trainable parameter goes to the group of the *longest* prefix of `lr_scales` that matches
    its name; the rest to a group named ``"default"`` with multiplier `default`. ``fit`` sets each group's
    learning rate to ``lr(epoch) * lr_scale``, warm-up and schedule included. Frozen parameters are left
    out, and so are empty groups.

    Args:
        model: the model that ``fit`` trains.
        lr_scales: prefix -> multiplier of the base learning rate (>= 0), e.g. ``{"backbone": 0.1}``.
        default: multiplier of the parameters matched by no prefix.
        weight_decay: set on every group when given (else the optimizer's).

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    >>> [(g["name"], g["lr_scale"]) for g in param_groups(net, {"0": 0.1})]
    [('0', 0.1), ('default', 1.0)]
    """
    _check_prefixes(model, list(lr_scales))
    for prefix, scale in {**lr_scales, "default": default}.items():
        if not (isinstance(scale, (int, float)) and scale >= 0):
            raise ConfigError(f"lr_scales[{prefix!r}]={scale!r}: a learning-rate multiplier must be a number >= 0")
    by_length = sorted(lr_scales, key=len, reverse=True)
    members: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = next((prefix for prefix in by_length if matches(name, prefix)), "default")
        members.setdefault(key, []).append(p)
    groups = []
    for key in [*lr_scales, "default"]:
        if members.get(key):
            group = {"params": members[key], "lr_scale": float(lr_scales.get(key, default)), "name": key}
            if weight_decay is not None:
                group["weight_decay"] = weight_decay
            groups.append(group)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameter: nothing to optimise")
    return groups


def layer_decay_scales(layers: Sequence[Sequence[str] | str], decay: float) -> dict[str, float]:
    """Layer-wise learning-rate decay (BEiT, MAE fine-tuning): the last layer gets 1, each earlier one `decay` times
    the next.

    Args:
        layers: prefixes from the input to the output; an entry may be a list of prefixes sharing one rate.
        decay: in (0, 1]; layer i of L gets ``decay ** (L - 1 - i)``.

    >>> layer_decay_scales([["patch_embed", "pos_embed"], "blocks.0", "head"], 0.5)
    {'patch_embed': 0.25, 'pos_embed': 0.25, 'blocks.0': 0.5, 'head': 1.0}
    """
    if not 0.0 < decay <= 1.0:
        raise ConfigError(f"decay={decay} must be in (0, 1]")
    scales = {}
    for i, layer in enumerate(layers):
        for prefix in [layer] if isinstance(layer, str) else layer:
            scales[prefix] = decay ** (len(layers) - 1 - i)
    return scales


def layer_prefixes(model: nn.Module, prefix: str = "") -> list[list[str]]:
    """The model's layers from input to output, as prefix lists for freezing and layer-wise decay.

    A ViT (anything with ``blocks``, ``patch_embed``): the embedding (patch_embed, cls_token, pos_embed),
    then one entry per block, then the rest (norm, head). Anything else: one entry per top-level child in
    registration order, with ``nn.Sequential`` children (e.g. IResNet's ``stages``) expanded one level, and
    the top-level parameters first. `prefix` names the model inside a larger one (e.g. ``"backbone"``).

    >>> from facekit.models import VisionTransformer
    >>> layer_prefixes(VisionTransformer(0, "tiny", depth=2, image_size=32))
    [['patch_embed', 'cls_token', 'pos_embed'], ['blocks.0'], ['blocks.1'], ['norm', 'head']]
    """
    dot = f"{prefix}." if prefix else ""
    children = dict(model.named_children())
    own = [n for n, _ in model.named_parameters(recurse=False)]
    if "blocks" in children and "patch_embed" in children:
        first = ["patch_embed"] + own
        last = [n for n in children if n not in ("patch_embed", "blocks", "pos_drop")]
        layers = [first] + [[f"blocks.{i}"] for i in range(len(children["blocks"]))] + [last]
    else:
        layers = [own] if own else []
        for name, child in children.items():
            if not any(True for _ in child.parameters()):
                continue
            if isinstance(child, nn.Sequential) and len(child) > 1 and not _is_leafy(child):
                layers += [[f"{name}.{i}"] for i, c in enumerate(child) if any(True for _ in c.parameters())]
            else:
                layers.append([name])
    return [[dot + n for n in layer] for layer in layers if layer]


def _is_leafy(seq: nn.Sequential) -> bool:
    """A Sequential of plain layers (conv, BN, activation): one layer, not a stack of blocks."""
    return all(len(list(c.children())) == 0 for c in seq)


class _Features(torch.utils.data.Dataset):
    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i], self.labels[i]


def linear_probe(features: torch.Tensor, labels: torch.Tensor, *, embedding_dim: int | None = None, head=None,
                 val: tuple[torch.Tensor, torch.Tensor] | None = None, callbacks=(), **train):
    """Train a linear layer (and a classifier) on frozen, pre-computed features.

    Args:
        features: (N, D) features of a frozen backbone (e.g. from ``facekit.train.predict``).
        labels: (N,) identities 0..K-1.
        embedding_dim: None = logistic regression (a linear classifier on the features, head ``PlainSoftmax``
            unless `head` is given); an int E = a new linear embedding ``nn.Linear(D, E)`` trained under
            `head` (e.g. ``ArcFace()``): the linear probe of a verification backbone.
        head: a :class:`facekit.losses.MarginHead`; default ``PlainSoftmax()``.
        val: optional (features, labels) evaluated after each epoch.
        callbacks: passed to ``fit`` (e.g. ``EarlyStopping``).
        **train: ``TrainConfig`` fields for ``fit`` (epochs, lr, batch_size, seed, ...).

    Returns:
        ``(model, history)``: a :class:`facekit.losses.MarginModel` whose ``backbone`` is the linear
        embedding (``nn.Identity`` for logistic regression) and whose ``classifier`` holds the class weights.

    >>> x = torch.randn(200, 5); y = (x[:, 0] > 0).long()
    >>> probe, hist = linear_probe(x, y, epochs=20, lr=0.05, progress=False)
    >>> hist.last("train_accuracy") > 0.9
    True
    """
    from facekit.losses import MarginClassifier, MarginModel, PlainSoftmax, margin_forward
    from facekit.train.loop import fit

    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) != len(features):
        raise ValueError(f"{len(features)} features but {len(labels)} labels")
    head = head if head is not None else PlainSoftmax()
    dim = features.shape[1]
    projection = nn.Identity() if embedding_dim is None else nn.Linear(dim, embedding_dim)
    num_classes = int(labels.max()) + 1
    model = MarginModel(projection, MarginClassifier(embedding_dim or dim, num_classes, head))
    val_data = _Features(*val) if val is not None else None
    history = fit(model, _Features(features.float(), labels), val_data, forward=margin_forward, callbacks=callbacks,
                  **train)
    return model, history


__all__ = ["freeze", "freeze_norm_stats", "unfreeze", "matches", "trainable_parameters", "count_trainable",
           "param_groups", "layer_decay_scales", "layer_prefixes", "linear_probe", "NORM_TYPES"]
