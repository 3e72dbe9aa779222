import pytest
import torch

from facekit.config import ConfigError
from facekit.models import ArticleCNN, SmallResNet, count_parameters, create


@pytest.mark.parametrize("channels,size,classes", [(3, 64, 10), (1, 64, 40), (3, 32, 7), (1, 112, 3)])
def test_article_cnn_shapes(channels, size, classes):
    model = ArticleCNN(classes, in_channels=channels, image_size=size)
    assert model(torch.rand(2, channels, size, size)).shape == (2, classes)
    assert model.features(torch.rand(2, channels, size, size)).shape == (2, 128)


def test_article_cnn_matches_the_article_at_64px():
    # The article's layers: conv(3,32), conv(32,64), fc(64*16*16,128), fc(128, classes).
    model = ArticleCNN(10)
    expected = (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 16 * 16 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(model) == expected


def test_article_cnn_rejects_wrong_size():
    with pytest.raises(ValueError, match="64x64"):
        ArticleCNN(5)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="divisible by 4"):
        ArticleCNN(5, image_size=30)


@pytest.mark.parametrize("size", [32, 64, 112])
def test_small_resnet_any_size(size):
    model = SmallResNet(5, in_channels=3, widths=(8, 16, 32), blocks_per_stage=2)
    assert model(torch.rand(3, 3, size, size)).shape == (3, 5)
    assert model.features(torch.rand(3, 3, size, size)).shape == (3, 32)


def test_registry():
    assert isinstance(create("small_resnet", num_classes=4), SmallResNet)
    with pytest.raises(ConfigError, match="registered: article_cnn, attention_resnet, small_resnet, vit"):
        create("resnet9000", num_classes=4)


def test_backward_reaches_every_parameter():
    model = SmallResNet(4, widths=(8, 16))
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
