"""facekit.models.create_model: one registry; a model's config (num_classes included) rebuilds it."""

import pytest
import torch

from facekit.config import ConfigError
from facekit.models import (EMBEDDINGS, MODEL_SPECS, MODELS, ArticleCNN, SmallResNet, VisionTransformer, create,
                            create_embedding, create_model, model_config, model_names)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {  # name -> a small config of every course network in the registry
    "article_cnn": dict(num_classes=4, image_size=32, hidden=16),
    "small_resnet": dict(num_classes=4, widths=(8, 16)),
    "attention_resnet": dict(num_classes=4, widths=(8, 16), attention="cbam", image_size=32),
    "vit": dict(num_classes=4, preset="tiny", depth=1, image_size=32),
    "iresnet": dict(image_size=32, widths=(8, 16, 16, 16), layers=(1, 1, 1, 1), embedding_dim=16),
    "iresnet_tiny": dict(image_size=32),
    "mobilefacenet_tiny": dict(image_size=32),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_config_rebuilds_the_model(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    spec = model_config(model)
    rebuilt = create_model(spec["name"], **spec["config"]).eval()
    assert type(rebuilt) is type(model)
    rebuilt.load_state_dict(model.state_dict(), strict=True)  # same architecture, parameter for parameter
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    if "num_classes" in SMALL[name]:
        assert spec["config"]["num_classes"] == 4 and model(x).shape == (2, 4)


def test_constructor_forms_still_work_and_agree_with_the_registry():
    assert ArticleCNN(5, 1, 32).fc2.out_features == create_model("article_cnn", num_classes=5, in_channels=1,
                                                                  image_size=32).fc2.out_features
    vit = VisionTransformer(3, "tiny", depth=1)
    assert model_config(vit)["config"]["num_classes"] == 3 and model_config(vit)["config"]["depth"] == 1
    with pytest.raises(ValueError, match="SmallResNet.*create_model"):
        model_config(SmallResNet(3, widths=(8, 16)))  # nothing records how a bare constructor was called


def test_unknown_names_and_keys_are_named():
    with pytest.raises(ConfigError, match="unknown model: 'small_resnt'.*did you mean 'small_resnet'"):
        create_model("small_resnt", num_classes=2)
    with pytest.raises(TypeError, match="widthz"):
        create_model("small_resnet", num_classes=2, widthz=(8,))
    with pytest.raises(ConfigError, match="dimm"):
        create_model("vit", num_classes=2, dimm=8)


def test_old_registries_are_views_of_the_one_registry():
    from facekit.bench import BACKBONES, build_backbone
    from facekit.pretrain import ARCHITECTURES, build_arch

    assert set(EMBEDDINGS) == set(model_names("embedding")) - {"iresnet"}
    assert set(MODELS) <= set(MODEL_SPECS) and set(ARCHITECTURES) <= set(MODEL_SPECS)
    assert set(BACKBONES) <= set(MODEL_SPECS)
    net = create_embedding("iresnet_tiny", image_size=32)
    assert model_config(net)["name"] == "iresnet" and create("small_resnet", num_classes=2).fc.out_features == 2
    model, shape = build_backbone("vit", 32)
    assert model_config(model)["config"]["num_classes"] == 10 and shape == (3, 32, 32)
    arch = {"name": "small_resnet", "config": {"num_classes": 3, "widths": [8, 16]}}
    assert model_config(build_arch(arch)) == {"name": "small_resnet", "config": arch["config"]}
