"""Fine-tuning pieces: freezing (parameters and BatchNorm statistics), parameter groups and their learning
rates under warm-up, layer-wise decay, the linear probe, and what History reports about early stopping."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from facekit.config import ConfigError
from facekit.losses import ArcFace
from facekit.models import VisionTransformer, create_embedding
from facekit.train import (Callback, EarlyStopping, History, TrainConfig, fit, freeze, layer_decay_scales,
                           layer_prefixes, linear_probe, param_groups, trainable_parameters, unfreeze)
from facekit.train.loop import _lr_at


def convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),  # "0": the early layer
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),  # "1"
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))  # "4": the head


def images(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 3, 8, 8, generator=g) * 2 + 1, torch.arange(n) % 3)


FAST = dict(batch_size=16, lr=1e-2, progress=False)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_frozen_parameters_and_their_batchnorm_statistics_do_not_change():
    model = convnet()
    frozen = freeze(model, ["0"])
    assert frozen == ["0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias"]
    before = snapshot(model)
    fit(model, images(), epochs=2, **FAST)  # fit puts the model in train() mode every epoch
    after = model.state_dict()
    for key in before:
        if key.startswith("0."):  # weights, BN affine, running mean / var, num_batches_tracked
            assert torch.equal(before[key], after[key]), f"{key} changed although frozen"
        elif not key.endswith("num_batches_tracked"):
            assert not torch.equal(before[key], after[key]), f"{key} did not train"
    assert after["1.1.num_batches_tracked"] > before["1.1.num_batches_tracked"]
    assert model[0][1].weight.grad is None  # no gradient is even computed for a frozen parameter


def test_frozen_batchnorm_normalises_with_its_stored_statistics_in_train_mode():
    model = convnet()
    freeze(model, ["0.1"])
    x = images()[:][0]
    model.train()
    bn = model[0][1]
    h = model[0][0](x)
    expected = (h - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
    torch.testing.assert_close(bn(h), expected * bn.weight[None, :, None, None] + bn.bias[None, :, None, None])


def test_unfreeze_undoes_freeze_but_keeps_what_the_model_fixed_itself():
    model = convnet()
    freeze(model)
    assert trainable_parameters(model) == []
    unfreeze(model, ["0"])
    assert trainable_parameters(model) == ["0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias"]
    before = snapshot(model)
    fit(model, images(), epochs=1, **FAST)
    assert not torch.equal(before["0.1.running_mean"], model.state_dict()["0.1.running_mean"])  # stats released
    net = create_embedding("iresnet_tiny", image_size=32)
    fixed = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert fixed == ["features.weight"]  # IResNet trains no scale in its last BatchNorm
    freeze(net)
    unfreeze(net)
    assert [n for n, p in net.named_parameters() if not p.requires_grad] == fixed


def test_unknown_prefix_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="'stem'.*top-level names are: 0, 1, 4"):
        freeze(convnet(), ["stem"])
    with pytest.raises(ConfigError, match="'backbone'"):
        param_groups(convnet(), {"backbone": 0.1})
    with pytest.raises(ConfigError, match="multiplier"):
        param_groups(convnet(), {"0": -1.0})


def test_param_groups_use_the_longest_prefix_and_skip_frozen_parameters():
    model = convnet()
    freeze(model, ["0.1"])
    groups = param_groups(model, {"0": 0.1, "1": 0.5, "1.0": 0.2}, default=2.0, weight_decay=0.0)
    by_name = {g["name"]: g for g in groups}
    assert {k: g["lr_scale"] for k, g in by_name.items()} == {"0": 0.1, "1": 0.5, "1.0": 0.2, "default": 2.0}
    assert [p.shape for p in by_name["0"]["params"]] == [model[0][0].weight.shape, model[0][0].bias.shape]
    assert {id(p) for p in by_name["1.0"]["params"]} == {id(model[1][0].weight), id(model[1][0].bias)}
    assert {id(p) for p in by_name["1"]["params"]} == {id(model[1][1].weight), id(model[1][1].bias)}
    assert {id(p) for p in by_name["default"]["params"]} == {id(p) for p in model[4].parameters()}
    assert all(g["weight_decay"] == 0.0 for g in groups)


class GroupLRs(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, state):
        self.seen.append({g["name"]: g["lr"] for g in state.optimizer.param_groups})


def test_group_learning_rates_follow_warmup_and_schedule():
    model = convnet()
    spy = GroupLRs()
    cfg = TrainConfig(epochs=5, warmup_epochs=2, scheduler="cosine", **FAST)
    fit(model, images(), config=cfg, param_groups=param_groups(model, {"0": 0.1, "1": 0.5}), callbacks=[spy])
    for epoch, lrs in enumerate(spy.seen):
        base = _lr_at(cfg, epoch)
        assert lrs == pytest.approx({"0": 0.1 * base, "1": 0.5 * base, "default": base}, rel=1e-12)
    assert spy.seen[0]["default"] == pytest.approx(cfg.lr / 3)  # warm-up: lr * (epoch + 1) / (warmup + 1)
    assert spy.seen[2]["default"] == pytest.approx(cfg.lr)  # the peak, then the cosine


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_with_unit_multipliers_equals_fit_without_groups(optimizer):
    cfg = dict(epochs=2, warmup_epochs=1, optimizer=optimizer, **FAST)
    plain, grouped = convnet(), convnet()
    h1 = fit(plain, images(), images(seed=1), **cfg)
    h2 = fit(grouped, images(), images(seed=1), param_groups=param_groups(grouped, {"0": 1.0, "1": 1.0}), **cfg)
    strip = lambda recs: [{k: v for k, v in r.items() if k != "time_s"} for r in recs]  # noqa: E731
    assert strip(h1.records) == strip(h2.records)
    for (name, p), q in zip(plain.state_dict().items(), grouped.state_dict().values()):
        assert torch.equal(p, q), name


def test_fit_rejects_a_parameter_that_is_not_the_models():
    model = convnet()
    with pytest.raises(ValueError, match="not in the model"):
        fit(model, images(), epochs=1, param_groups=[{"params": [nn.Parameter(torch.zeros(1))]}], **FAST)
    with pytest.raises(ValueError, match="repeats"):
        fit(model, images(), epochs=1, param_groups=[{"params": list(model.parameters())}] * 2, **FAST)


def test_layer_decay_and_layer_prefixes_of_a_vit_cover_every_parameter_once():
    vit = VisionTransformer(0, "tiny", depth=3, image_size=16, patch_size=8)
    layers = layer_prefixes(vit)
    assert layers == [["patch_embed", "cls_token", "pos_embed"], ["blocks.0"], ["blocks.1"], ["blocks.2"],
                      ["norm", "head"]]
    scales = layer_decay_scales(layers, 0.5)
    assert scales["patch_embed"] == 0.5 ** 4 and scales["blocks.2"] == 0.5 and scales["norm"] == 1.0
    groups = param_groups(vit, scales)
    assert sum(len(g["params"]) for g in groups) == len(list(vit.parameters()))
    assert "default" not in {g["name"] for g in groups}
    wrapped = nn.Sequential()
    wrapped.add_module("backbone", vit)
    assert layer_prefixes(wrapped.backbone, "backbone")[1] == ["backbone.blocks.0"]
    net = create_embedding("iresnet_tiny", image_size=32)
    cnn_layers = layer_prefixes(net)
    assert cnn_layers[0] == ["stem"] and cnn_layers[1] == ["stages.0"] and cnn_layers[-1] == ["features"]
    with pytest.raises(ConfigError, match="decay"):
        layer_decay_scales(layers, 1.5)


def test_linear_probe_matches_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 1.2
    y = torch.arange(400) % 4
    x = centers[y] + torch.randn(400, 16, generator=g)
    train, test = slice(0, 300), slice(300, 400)
    probe, hist = linear_probe(x[train], y[train], epochs=25, lr=0.03, batch_size=64, progress=False,
                               val=(x[test], y[test]))
    ours = (probe(x[test]).argmax(1) == y[test]).float().mean().item()
    sk = LogisticRegression(max_iter=2000).fit(x[train].numpy(), y[train].numpy()).score(x[test].numpy(),
                                                                                     y[test].numpy())
    assert abs(ours - sk) < 0.03 and hist.last("val_accuracy") == pytest.approx(ours, abs=1e-6)
    emb_probe, _ = linear_probe(x[train], y[train], embedding_dim=8, head=ArcFace(s=16.0, margin_rad=0.3),
                                epochs=2, lr=0.01, progress=False)
    assert emb_probe.embed(x[:5]).shape == (5, 8) and emb_probe(x[:5]).shape == (5, 4)


def test_history_time_to_target_and_early_stop():
    h = History([{"epoch": e, "val_acc": a, "time_s": 1.5} for e, a in [(1, 0.5), (2, 0.7), (3, 0.9)]])
    assert h.time_to("val_acc", 0.7) == (2, 3.0)
    assert h.time_to("val_acc", 0.95) is None
    assert h.first("val_acc", 0.6, mode="min")["epoch"] == 1
    assert h.total_time() == pytest.approx(4.5)
    model = convnet()
    stopper = EarlyStopping(monitor="train_loss", patience=2, min_delta=math.inf)  # never "improves"
    hist = fit(model, images(), epochs=6, callbacks=[stopper], **FAST)
    assert len(hist.records) == 2 and hist.stopped_epoch == 2
    assert fit(convnet(), images(), epochs=2, **FAST).stopped_epoch is None


def test_freeze_norm_stats_fixes_statistics_but_not_the_affine_parameters():
    from facekit.train import freeze_norm_stats, unfreeze

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    assert freeze_norm_stats(net) == 1 and freeze_norm_stats(net) == 0  # a layer is fixed once
    assert all(p.requires_grad for p in net.parameters())
    before = net[1].running_mean.clone()
    net.train()
    net(torch.randn(16, 4) + 3).sum().backward()
    torch.testing.assert_close(net[1].running_mean, before)  # stored statistics, even in train()
    assert net[1].weight.grad is not None  # the affine part still learns
    unfreeze(net)  # releases the statistics
    net(torch.randn(16, 4) + 3)
    assert not torch.equal(net[1].running_mean, before)
