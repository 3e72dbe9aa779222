import math

import pytest
import torch
from torch.utils.data import TensorDataset

from facekit.config import ConfigError
from facekit.models import count_parameters
from facekit.models.vit import (VIT_PRESETS, VisionTransformer, ViTConfig, attention_rollout,
                                cls_attention_map)
from facekit.train.loop import fit

SMALL = dict(dim=24, depth=2, num_heads=3)  # a few thousand parameters: every test runs in milliseconds


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


@pytest.mark.parametrize("image_size,patch_size,in_channels", [(32, 4, 3), (64, 8, 1), (112, 16, 3)])
@pytest.mark.parametrize("conv_stem", [False, True])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_shapes(image_size, patch_size, in_channels, conv_stem, pool):
    model = VisionTransformer(7, image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                              conv_stem=conv_stem, pool=pool, **SMALL).eval()
    x = torch.rand(2, in_channels, image_size, image_size)
    n = (image_size // patch_size) ** 2
    assert model(x).shape == (2, 7)
    assert model.features(x).shape == (2, 24)
    assert model.tokens(x).shape == (2, 1 + n, 24)
    maps = model.attention_maps(x)
    assert len(maps) == 2 and all(m.shape == (2, 3, 1 + n, 1 + n) for m in maps)


def test_fused_and_manual_paths_agree():
    torch.manual_seed(0)
    model = VisionTransformer(5, "tiny", depth=2, image_size=32).eval()
    x = torch.rand(3, 3, 32, 32)
    fused = model.set_fused(True)(x)
    manual = model.set_fused(False)(x)
    torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-5)
    assert not any(b.attn.fused for b in model.blocks)


def test_attention_maps_rows_sum_to_one_and_settings_are_restored():
    model = VisionTransformer(3, image_size=32, **SMALL).eval()
    x = torch.rand(2, 3, 32, 32)
    maps = model.attention_maps(x)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]))
        assert (m >= 0).all()
    assert all(b.attn.fused and not b.attn.store_attention and b.attn.last_attention is None for b in model.blocks)
    torch.testing.assert_close(model(x), model(x))


def test_attention_rollout():
    maps = [torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(4)]
    for fusion in ("mean", "max", "min"):
        for discard in (0.0, 0.5):
            r = attention_rollout(maps, head_fusion=fusion, discard_ratio=discard)
            assert r.shape == (2, 5, 5) and (r >= 0).all()
            torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))  # product of row-stochastic matrices
    # uniform attention U: ((I + U) / 2)^L = I / 2^L + (1 - 1 / 2^L) U since U^2 = U
    t, layers = 6, 3
    r = attention_rollout([torch.full((1, 2, t, t), 1 / t)] * layers)[0]
    expected = torch.eye(t) / 2 ** layers + (1 - 1 / 2 ** layers) / t
    torch.testing.assert_close(r, expected)
    # attention to oneself only: the identity
    torch.testing.assert_close(attention_rollout([torch.eye(4).expand(1, 2, 4, 4)] * 2)[0], torch.eye(4))
    # one layer: (A + I) / 2 for a row-stochastic A
    torch.testing.assert_close(attention_rollout(maps[:1]), (maps[0].mean(1) + torch.eye(5)) / 2)
    with pytest.raises(ConfigError, match="head_fusion"):
        attention_rollout(maps, head_fusion="median")


def test_cls_attention_map():
    model = VisionTransformer(3, image_size=32, patch_size=8, **SMALL).eval()
    x = torch.rand(2, 3, 32, 32)
    maps = model.attention_maps(x)
    for source in (maps, maps[-1], attention_rollout(maps)):
        m = cls_attention_map(source, (4, 4))
        assert m.shape == (2, 4, 4) and m.min() >= 0 and m.max() <= 1
        assert torch.allclose(m.flatten(1).amax(1), torch.ones(2))
    raw = cls_attention_map(maps[-1], (4, 4), normalize=False)
    torch.testing.assert_close(raw, maps[-1].mean(1)[:, 0, 1:].reshape(2, 4, 4))
    assert cls_attention_map(maps, (4, 4), size=(32, 32)).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="3x3"):
        cls_attention_map(maps, (3, 3))


def test_position_embedding_is_interpolated_for_other_sizes():
    model = VisionTransformer(4, image_size=32, patch_size=8, **SMALL).eval()
    assert model(torch.rand(1, 3, 48, 40)).shape == (1, 4)
    assert model.attention_maps(torch.rand(1, 3, 48, 40))[0].shape == (1, 3, 31, 31)
    assert model._pos_embed_for(4, 4) is model.pos_embed  # the training size is used as is
    with pytest.raises(ValueError, match="patch_size=8"):
        model(torch.rand(1, 3, 36, 36))


@pytest.mark.parametrize("overrides,field", [
    (dict(image_size=60, patch_size=8), "image_size"), (dict(dim=100, num_heads=3), "dim"),
    (dict(pool="max"), "pool"), (dict(conv_stem=True, patch_size=6, image_size=60), "patch_size"),
    (dict(dropout=1.5), "dropout"), (dict(depth=0), "depth"), (dict(mlp_ratio=0), "mlp_ratio"),
    (dict(num_head=3), "num_head"),
])
def test_invalid_configs_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        VisionTransformer(3, **overrides)


def test_presets():
    assert ViTConfig.preset("vit_s").dim == 384 and ViTConfig.preset("vit_s", depth=2).depth == 2
    with pytest.raises(ConfigError, match="accepted: tiny, small_cpu"):
        ViTConfig.preset("vit_h")
    with pytest.raises(ConfigError, match="depht"):
        ViTConfig.preset("tiny", depht=2)
    assert set(VIT_PRESETS) >= {"tiny", "small_cpu", "vit_s"}
    tiny = VisionTransformer(10, "tiny")
    assert 0.3e6 < count_parameters(tiny) < 0.7e6
    # config objects, mappings and overrides go through the same checks
    cfg = ViTConfig.preset("tiny")
    assert VisionTransformer(2, cfg, depth=1).config.depth == 1 and cfg.depth == 4
    assert VisionTransformer(2, {"dim": 48, "num_heads": 4}).config.dim == 48
    with pytest.raises(ConfigError, match="dpth"):
        VisionTransformer(2, cfg, dpth=1)


def test_init():
    model = VisionTransformer(10, **SMALL)
    assert abs(model.pos_embed.std().item() - 0.02) < 0.01
    assert all(b.attn.qkv.bias.eq(0).all() and b.ln1.weight.eq(1).all() for b in model.blocks)
    assert abs(model.head.weight.std().item() - 0.02) < 0.01 and model.head.bias.eq(0).all()


def test_no_head_returns_features():
    model = VisionTransformer(0, **SMALL).eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model(x), model.features(x))


@pytest.mark.parametrize("conv_stem", [False, True])
def test_gradient_reaches_every_parameter(conv_stem):
    model = VisionTransformer(4, image_size=32, conv_stem=conv_stem, drop_path=0.1, dropout=0.1, **SMALL)
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_drop_path_is_random_in_training_only():
    model = VisionTransformer(4, image_size=32, drop_path=0.5, **SMALL)
    x = torch.rand(8, 3, 32, 32)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_tiny_vit_overfits_16_images():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.arange(16) % 4  # zero-mean, like normalised images
    torch.manual_seed(0)
    model = VisionTransformer(4, "tiny", image_size=32, depth=2)
    hist = fit(model, TensorDataset(x, y), epochs=30, batch_size=16, lr=1e-3, device="cpu", progress=False)
    losses = hist["train_loss"]
    assert losses[0] > 1.0 and losses[-1] < 0.5 * losses[0], losses
    assert math.isfinite(losses[-1])
