import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facekit.models.attention import (CBAM, AttentionPool2d, MultiHeadSelfAttention, SpatialAttention,
                                      SqueezeExcitation, scaled_dot_product_attention)
from facekit.models.cnn import SmallResNet
from facekit.models.cnn_attention import AttentionResNet



pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


# (batch dims, T_q, T_k, d_k, d_v)
SHAPES = [((2,), 5, 5, 8, 8), ((2, 3), 4, 7, 16, 5), ((1, 4), 9, 3, 4, 12), ((3, 2), 1, 6, 32, 32), ((), 6, 6, 3, 7)]
TOL = {torch.float32: dict(atol=1e-6, rtol=1e-5), torch.float64: dict(atol=1e-12, rtol=1e-10)}


def _qkv(batch, t_q, t_k, d_k, d_v, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*batch, t, d, generator=g, dtype=dtype) for t, d in ((t_q, d_k), (t_k, d_k), (t_k, d_v)))


def _masks(batch, t_q, t_k, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(*batch, t_q, t_k, generator=g) > 0.3
    keep[..., 0] = True  # at least one key per query (fully masked rows have their own test)
    additive = torch.randn(t_q, t_k, generator=g, dtype=dtype)  # broadcast over the batch dims
    padding = torch.rand(*batch[:1], *(1,) * len(batch[1:]), 1, t_k, generator=g) > 0.4  # (B, 1.., 1, T_k)
    padding[..., 0] = True
    return {"none": None, "bool": keep, "bool_broadcast": padding, "float": additive,
            "float_neg_inf": torch.zeros(t_q, t_k, dtype=dtype).masked_fill(~keep.reshape(-1, t_q, t_k)[0], -math.inf)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_sdpa(shape, dtype):
    q, k, v = _qkv(*shape, dtype)
    for name, mask in _masks(shape[0], shape[1], shape[2], dtype).items():
        for scale in (None, 0.3):
            ours, w = scaled_dot_product_attention(q, k, v, mask, scale=scale, return_weights=True)
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
            torch.testing.assert_close(ours, ref, **TOL[dtype], msg=f"mask={name}, scale={scale}")
            assert w.shape == (*shape[0], shape[1], shape[2])
            torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), **TOL[dtype])
    for scale in (None, 2.0):
        ours = scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        torch.testing.assert_close(ours, ref, **TOL[dtype], msg=f"causal, scale={scale}")


def test_fully_masked_rows_are_zero_like_torch():
    q, k, v = _qkv((2, 2), 4, 5, 8, 3, torch.float64)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[2] = False  # query 2 may look at nothing
    additive = torch.zeros(4, 5, dtype=torch.float64).masked_fill(~keep, -math.inf)
    for mask in (keep, additive):
        q_ = q.clone().requires_grad_()
        out, w = scaled_dot_product_attention(q_, k, v, mask, return_weights=True)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(out, ref)
        assert torch.all(out[..., 2, :] == 0) and torch.all(w[..., 2, :] == 0)
        out.sum().backward()
        assert torch.isfinite(q_.grad).all() and torch.all(q_.grad[..., 2, :] == 0)


def test_mask_and_causal_together_is_an_error():
    q, k, v = _qkv((1,), 3, 3, 4, 4, torch.float32)
    with pytest.raises(ValueError, match="is_causal"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 3, dtype=torch.bool), is_causal=True)


def test_gradcheck():
    q, k, v = (t.requires_grad_() for t in _qkv((2,), 3, 4, 5, 2, torch.float64))
    keep = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, keep), (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v))


def test_masked_keys_get_exactly_zero_weight():
    q, k, v = _qkv((2, 3), 6, 6, 8, 8, torch.float32)
    keep = torch.rand(2, 1, 6, 6) > 0.5
    keep[..., 0] = True
    _, w = scaled_dot_product_attention(q, k, v, keep, return_weights=True)
    assert torch.all(w.masked_select(~keep.expand_as(w)) == 0)
    assert torch.all(w.masked_select(keep.expand_as(w)) > 0)


def test_causal_output_ignores_later_tokens():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    y = x.clone()
    y[:, 5] += torch.randn(2, 16)  # perturb token 5
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    for fused in (True, False):
        attn.fused = fused
        a, b = attn(x, attn_mask=causal), attn(y, attn_mask=causal)
        torch.testing.assert_close(a[:, :5], b[:, :5], atol=0, rtol=0)  # earlier positions: bit-identical
        assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_sqrt_dk_scaling_keeps_softmax_from_saturating():
    g = torch.Generator().manual_seed(0)
    d_k, t = 512, 16
    q, k = torch.randn(256, 1, d_k, generator=g), torch.randn(256, t, d_k, generator=g)  # unit-variance entries
    scores = q @ k.transpose(-2, -1)  # (256, 1, t): variance d_k
    unscaled = torch.softmax(scores, -1).amax(-1).median()
    scaled = torch.softmax(scores / math.sqrt(d_k), -1).amax(-1).median()
    assert scores.std() > 0.8 * math.sqrt(d_k) and (scores / math.sqrt(d_k)).std() < 1.2
    assert unscaled > 0.99  # one-hot: the gradient through the softmax vanishes
    assert scaled < 0.6


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_mhsa_fused_manual_and_torch_mha_agree(qkv_bias):
    torch.manual_seed(0)
    dim, heads = 24, 4
    ours = MultiHeadSelfAttention(dim, heads, qkv_bias=qkv_bias).eval()
    mha = nn.MultiheadAttention(dim, heads, bias=qkv_bias, batch_first=True).eval()
    with torch.no_grad():
        for p in mha.parameters():
            p.normal_(0.0, 0.2)  # non-trivial biases too
    ours.copy_from_torch_mha(mha)
    x = torch.randn(3, 9, dim)
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[0, 6:] = True
    padding[2, 3:] = True
    for kpm in (None, padding):
        ref, _ = mha(x, x, x, key_padding_mask=kpm, need_weights=False)
        ours.fused = True
        fused = ours(x, key_padding_mask=kpm)
        ours.fused = False
        manual = ours(x, key_padding_mask=kpm)
        torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)
    back = ours.to_torch_mha().eval()
    torch.testing.assert_close(back(x, x, x, need_weights=False)[0], ours(x), atol=1e-5, rtol=1e-5)


def test_mhsa_stored_weights_match_torch_mha_weights():
    torch.manual_seed(1)
    ours = MultiHeadSelfAttention(16, 2, store_attention=True).eval()
    mha = ours.to_torch_mha().eval()
    x = torch.randn(2, 5, 16)
    ours(x)  # store_attention forces the manual path even though fused=True
    _, w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    assert ours.last_attention.shape == (2, 2, 5, 5)
    torch.testing.assert_close(ours.last_attention, w, atol=1e-6, rtol=1e-5)


def test_mhsa_attn_mask_float_and_bool_agree():
    torch.manual_seed(2)
    attn = MultiHeadSelfAttention(8, 2).eval()
    x = torch.randn(2, 4, 8)
    keep = torch.rand(4, 4) > 0.4
    keep.fill_diagonal_(True)
    additive = torch.zeros(4, 4).masked_fill(~keep, -math.inf)
    padding = torch.tensor([[False, False, False, True], [False] * 4])
    for fused in (True, False):
        attn.fused = fused
        torch.testing.assert_close(attn(x, attn_mask=keep, key_padding_mask=padding),
                                   attn(x, attn_mask=additive, key_padding_mask=padding))


def test_channel_and_spatial_attention():
    x = torch.randn(2, 32, 6, 6)
    se = SqueezeExcitation(32, reduction=4)
    y = se(x)
    ratio = y / x  # one factor in (0, 1) per (sample, channel)
    assert y.shape == x.shape and torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()
    sa = SpatialAttention(store_attention=True)
    y = sa(x)
    assert y.shape == x.shape and sa.last_attention.shape == (2, 1, 6, 6)
    torch.testing.assert_close(y, x * sa.last_attention)
    assert CBAM(32)(x).shape == x.shape


def test_attention_pool():
    pool = AttentionPool2d(16, grid_size=4, num_heads=2, store_attention=True)
    x = torch.randn(3, 16, 4, 4)
    assert pool(x).shape == (3, 16)
    w = pool.last_attention
    assert w.shape == (3, 2, 4, 4)
    torch.testing.assert_close(w.sum((-1, -2)), torch.ones(3, 2))
    pool.store_attention = False
    torch.testing.assert_close(pool(x), pool(x))
    assert pool(torch.randn(1, 16, 6, 5)).shape == (1, 16)  # the position embedding is resized


@pytest.mark.parametrize("attention,pool", [("none", "attention"), ("se", "avg"), ("spatial", "avg"),
                                            ("cbam", "attention")])
def test_attention_resnet(attention, pool):
    model = AttentionResNet(4, widths=(8, 16), attention=attention, pool=pool, reduction=4, image_size=16)
    x = torch.rand(2, 3, 16, 16)
    assert model.features(x).shape == (2, 16)
    out = model(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model(torch.rand(1, 3, 24, 24)).shape == (1, 4)  # any size, as SmallResNet


def test_attention_resnet_without_attention_is_small_resnet():
    a, b = AttentionResNet(7, attention="none"), SmallResNet(7)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    a.load_state_dict(b.state_dict())
    a.eval(), b.eval()
    x = torch.rand(2, 3, 48, 48)
    torch.testing.assert_close(a(x), b(x))


def test_attention_resnet_rejects_unknown_names():
    from facekit.config import ConfigError

    with pytest.raises(ConfigError, match="attention="):
        AttentionResNet(3, attention="transformer")
    with pytest.raises(ConfigError, match="pool="):
        AttentionResNet(3, pool="max")
