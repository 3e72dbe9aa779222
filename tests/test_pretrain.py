"""facekit.pretrain: masking, the masked autoencoder, NT-Xent / SimCLR, and the pretrained checkpoints."""

import doctest
import importlib

import pytest
import torch
import torch.nn.functional as F

from facekit.config import ConfigError
from facekit.models import VisionTransformer, create_embedding
from facekit.pretrain import (MaskedAutoencoder, PatchMask, SimCLR, TwoViews, arch_of, gather_tokens,
                              load_pretrained, mask_image, nt_xent_loss, patchify, random_masking, save_pretrained,
                              simclr_augment, two_views, unpatchify)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread

SMALL_VIT = dict(image_size=16, patch_size=4, dim=24, depth=2, num_heads=3)  # 16 patches, a few k parameters


def small_mae(**overrides):
    torch.manual_seed(0)
    return MaskedAutoencoder(dict(SMALL_VIT), decoder_dim=16, decoder_depth=1, decoder_heads=2, **overrides)


@pytest.mark.parametrize("module", ["masking", "mae", "contrastive", "checkpoints"])
def test_doctests(module, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_ARTIFACTS", str(tmp_path))
    result = doctest.testmod(importlib.import_module(f"facekit.pretrain.{module}"))
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("num_patches", [16, 49])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_masking_ratio_and_restore(num_patches, ratio):
    B = 5
    m = random_masking(B, num_patches, ratio, generator=torch.Generator().manual_seed(1))
    n_mask = round(ratio * num_patches)
    assert m.mask.shape == (B, num_patches) and m.ids_keep.shape == (B, num_patches - n_mask)
    assert m.mask.sum(1).tolist() == [float(n_mask)] * B  # the same count in every sample
    assert m.num_masked == n_mask
    assert (m.mask.gather(1, m.ids_keep) == 0).all()  # the kept patches are the visible ones
    ids_shuffle = m.ids_restore.argsort(1)
    assert torch.equal(ids_shuffle[:, :m.ids_keep.shape[1]], m.ids_keep)
    x = torch.randn(B, num_patches, 3)
    shuffled = gather_tokens(x, ids_shuffle)
    assert torch.equal(gather_tokens(shuffled, m.ids_restore), x)  # ids_restore inverts the shuffle
    for b in range(B):  # each row of ids_restore is a permutation
        assert sorted(m.ids_restore[b].tolist()) == list(range(num_patches))


def test_masks_differ_per_sample_and_are_reproducible():
    a = random_masking(8, 16, 0.75, generator=torch.Generator().manual_seed(3))
    b = random_masking(8, 16, 0.75, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.mask, b.mask)
    assert len({tuple(r.tolist()) for r in a.mask}) > 1
    with pytest.raises(ConfigError, match="mask_ratio"):
        random_masking(2, 16, 1.0)


def test_patchify_against_a_loop_and_unpatchify_inverts_it():
    x = torch.rand(2, 3, 8, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                patch = x[b, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].permute(1, 2, 0).reshape(-1)  # (P, P, C) order
                assert torch.equal(p[b, 3 * i + j], patch)
    assert torch.equal(unpatchify(p, 4, 3, (2, 3)), x)
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.zeros(1, 3, 10, 10), 4)


def test_no_leakage_of_masked_patches_into_the_encoder():
    mae = small_mae().eval()
    x = torch.rand(3, 3, 16, 16)
    mask = mae.random_mask(3, torch.Generator().manual_seed(0))
    hidden = mask.mask.bool()[:, :, None]  # (B, N, 1)
    scrambled = unpatchify(torch.where(hidden, torch.randn(3, 16, 48) * 10, patchify(x, 4)), 4, 3)
    assert not torch.allclose(scrambled, x)
    assert torch.equal(mae.forward_encoder(scrambled, mask), mae.forward_encoder(x, mask))
    visible = ~hidden
    changed = unpatchify(torch.where(visible, torch.rand(3, 16, 48), patchify(x, 4)), 4, 3)
    assert not torch.allclose(mae.forward_encoder(changed, mask), mae.forward_encoder(x, mask))


def test_conv_stem_is_refused():
    with pytest.raises(ConfigError, match="conv_stem"):
        MaskedAutoencoder(dict(SMALL_VIT, conv_stem=True))


def test_encoder_is_the_plain_vit():
    """With nothing masked and the patches in order, the MAE encoder computes exactly ViT.tokens."""
    mae = small_mae().eval()
    x = torch.rand(2, 3, 16, 16)
    ids = torch.arange(16).expand(2, -1)
    unmasked = PatchMask(ids_keep=ids, ids_restore=ids, mask=torch.zeros(2, 16))
    torch.testing.assert_close(mae.forward_encoder(x, unmasked), mae.encoder.tokens(x), atol=1e-6, rtol=1e-6)
    assert isinstance(mae.encoder, VisionTransformer)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae_loss_counts_masked_patches_only(norm_pix):
    mae = small_mae(norm_pix_loss=norm_pix)
    x = torch.rand(2, 3, 16, 16)
    out = mae(x, generator=torch.Generator().manual_seed(0))
    m = out.mask.mask
    target = patchify(x, 4)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    per, count = 0.0, 0
    for b in range(2):  # naive loop over the masked patches
        for n in range(16):
            if m[b, n] == 1:
                per += ((out.pred[b, n] - target[b, n]) ** 2).mean()
                count += 1
    torch.testing.assert_close(out.loss, per / count)
    other = torch.where(m.bool()[..., None], out.pred, torch.randn_like(out.pred))  # change visible predictions
    torch.testing.assert_close(mae.loss(x, other, m), out.loss)


def test_mae_learns_a_fixed_batch_and_reconstructs_in_range():
    mae = small_mae()
    x = torch.rand(4, 3, 16, 16)
    opt = torch.optim.Adam(mae.parameters(), lr=3e-3)
    mask = mae.random_mask(4, torch.Generator().manual_seed(0))
    losses = []
    for _ in range(30):
        loss = mae(x, mask).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    out = mae(x, mask)
    rec = mae.reconstruct(x, out.pred, mask.mask)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    visible = ~mask.mask.bool()[..., None]
    assert torch.equal(patchify(rec, 4)[visible.expand(-1, -1, 48)], patchify(x, 4)[visible.expand(-1, -1, 48)])
    shown = mask_image(x, mask.mask, 4)
    assert (patchify(shown, 4)[mask.mask.bool()] == 0.5).all()


def naive_nt_xent(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n, B = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + B) % n
        den = sum(torch.exp(z[i] @ z[k] / tau) for k in range(n) if k != i)
        total += -torch.log(torch.exp(z[i] @ z[j] / tau) / den)
    return total / n


@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_nt_xent_against_a_loop_and_pytorch_metric_learning(tau):
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    loss = nt_xent_loss(z1, z2, tau)
    torch.testing.assert_close(loss, naive_nt_xent(z1, z2, tau))
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    labels = torch.arange(6).repeat(2)  # view i and view i + B share a label: one positive per anchor
    torch.testing.assert_close(loss, pml.NTXentLoss(temperature=tau)(torch.cat([z1, z2]), labels))


def test_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent_loss(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="temperature"):
        nt_xent_loss(torch.zeros(3, 4), torch.zeros(3, 4), 0.0)


def test_two_views_are_independent_per_image():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    aug = simclr_augment(16, crop_scale=0.3)
    v1, v2 = two_views(x, aug)
    assert v1.shape == x.shape and not torch.allclose(v1, v2)
    assert TwoViews(aug)(x[0]).shape == (2, 3, 16, 16)
    model = SimCLR(create_embedding("iresnet_tiny", image_size=16), feature_dim=128, projection_dim=8)
    assert torch.isfinite(model(v1, v2))


@pytest.mark.parametrize("make", [lambda: VisionTransformer(0, dict(SMALL_VIT, pool="mean")),
                                  lambda: create_embedding("iresnet_tiny", image_size=16),
                                  lambda: create_embedding("mobilefacenet_tiny", image_size=32)],
                         ids=["vit", "iresnet", "mobilefacenet"])
def test_save_and_load_pretrained_round_trip(make, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_ARTIFACTS", str(tmp_path))
    torch.manual_seed(0)
    model = make().eval()
    path = save_pretrained(model, "net.pt", "smoke", meta={"method": "test", "losses": [1.0, 0.5]})
    assert path == tmp_path / "smoke" / "net.pt"
    loaded, meta = load_pretrained("net.pt", "smoke")
    assert meta == {"method": "test", "losses": [1.0, 0.5]}
    assert type(loaded) is type(model) and arch_of(loaded) == arch_of(model)
    side = model.config.image_size
    x = torch.rand(2, 3, side, side)
    torch.testing.assert_close(loaded.eval()(x), model(x))
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "arch", "profile", "pretrain"} and raw["profile"] == "smoke"


def test_load_pretrained_says_how_to_make_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_ARTIFACTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"run notebook 05 first: facekit report 05 --profile cpu"):
        load_pretrained("mae_vit.pt", "cpu")


def test_save_pretrained_checks_arch_and_meta(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_ARTIFACTS", str(tmp_path))
    vit = VisionTransformer(0, dict(SMALL_VIT))
    with pytest.raises(TypeError, match="plain literal"):
        save_pretrained(vit, "v.pt", "smoke", meta={"when": object()})
    with pytest.raises(ConfigError, match="pretrained architecture"):
        save_pretrained(vit, "v.pt", "smoke", arch={"name": "vti", "config": {}})
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key|size mismatch"):
        save_pretrained(vit, "v.pt", "smoke", arch={"name": "vit", "config": dict(SMALL_VIT, dim=48)})
    with pytest.raises(ValueError, match="num_classes=0"):
        save_pretrained(VisionTransformer(3, dict(SMALL_VIT)), "v.pt", "smoke")
    assert not (tmp_path / "smoke" / "v.pt").exists()
