"""facekit.models.embed: a network over many images, batch by batch, against one forward pass."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facekit.data import TensorImages
from facekit.models import embed


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 36, 5))


def test_batches_equal_one_eval_forward_and_mode_is_restored():
    model, x = net(), torch.rand(11, 3, 8, 8)
    model.train()
    out = embed(model, x, batch_size=4, device="cpu")
    assert model.training  # restored
    with torch.no_grad():
        want = model.eval()(x)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and not out.requires_grad


def test_normalize_transform_callables_and_datasets():
    model, x = net(), torch.rand(7, 3, 8, 8)
    unit = embed(model, x, batch_size=3, device="cpu", normalize=True)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(7))
    with torch.no_grad():
        torch.testing.assert_close(unit, F.normalize(model.eval()(x), dim=1), rtol=1e-5, atol=1e-6)
    as_uint8 = (x * 255).round().to(torch.uint8)
    from_uint8 = embed(model, as_uint8, device="cpu", transform=lambda b: b.float() / 255)
    torch.testing.assert_close(from_uint8, embed(model, as_uint8.float() / 255, device="cpu"))
    features = embed(lambda b: b.flatten(1)[:, :3], x, batch_size=2, device="cpu")  # any callable
    torch.testing.assert_close(features, x.flatten(1)[:, :3])
    from_dataset = embed(model, TensorImages(x, torch.zeros(7)), batch_size=3, device="cpu")
    torch.testing.assert_close(from_dataset, embed(model, x, device="cpu"))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size=0"):
        embed(net(), torch.rand(2, 3, 8, 8), batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="no images"):
        embed(net(), torch.rand(0, 3, 8, 8), device="cpu")
