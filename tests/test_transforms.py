import pytest
import torch

from facekit.config import ConfigError
from facekit.data.transforms import STRENGTHS, preprocess, train_transform


@pytest.mark.parametrize("channels_in,channels_out", [(1, 1), (1, 3), (3, 1), (3, 3)])
def test_preprocess_channels_and_size(channels_in, channels_out):
    out = preprocess(64, channels=channels_out, crop=0.8)(torch.rand(channels_in, 112, 92))
    assert out.shape == (channels_out, 64, 64) and out.dtype == torch.float32


def test_preprocess_accepts_uint8_and_scales():
    out = preprocess(8)(torch.full((3, 16, 16), 255, dtype=torch.uint8))
    assert out.dtype == torch.float32 and torch.allclose(out, torch.ones_like(out))


def test_grey_is_luminance():
    rgb = torch.zeros(3, 4, 4)
    rgb[1] = 1.0  # pure green
    assert preprocess(4, channels=1)(rgb).mean().item() == pytest.approx(0.587, abs=2e-3)


def test_crop_keeps_the_centre():
    img = torch.zeros(1, 100, 100)
    img[:, 40:60, 40:60] = 1.0
    out = preprocess(20, channels=1, crop=0.2)(img)
    assert out.mean() > 0.95  # only the bright centre is left


@pytest.mark.parametrize("strength", sorted(STRENGTHS))
def test_train_transform_is_random_but_valid(strength):
    torch.manual_seed(0)
    t = train_transform(32, strength=strength)
    img = torch.rand(3, 40, 40)
    a, b = t(img), t(img)
    assert a.shape == (3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, b)


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="strength='wild'"):
        train_transform(32, strength="wild")
    with pytest.raises(ConfigError, match="channels=2"):
        preprocess(32, channels=2)
    with pytest.raises(ConfigError, match="crop=1.5"):
        preprocess(32, crop=1.5)
