"""facekit.data.load_closed_set: the closed set of chapters 1 and 2, synthetic or from photos."""

import pytest
import torch

from conftest_data import save_image
from facekit.data import load_closed_set
from facekit.data.synthetic import SyntheticFaces
from facekit.data.transforms import preprocess


def test_synthetic_closed_set_is_the_generator_rendered_once():
    cs = load_closed_set("synthetic", identities=4, per_identity=3, image_size=32, seed=2, channels=1)
    x, y = SyntheticFaces(4, 3, 32, seed=2, channels=1).tensors()
    torch.testing.assert_close(cs.images, x, rtol=0, atol=0)
    assert cs.labels.tolist() == y.tolist() and cs.classes == ["id000", "id001", "id002", "id003"]
    assert isinstance(cs.source, SyntheticFaces) and cs.source.num_identities == 4


def test_folder_closed_set_is_preprocessed_photos(tmp_path):
    for person in ("ann", "bob"):
        for i in range(2):
            save_image(tmp_path / person / f"{i}.png", size=(40, 50), seed=len(person) + i)
    cs = load_closed_set(str(tmp_path), identities=99, per_identity=99, image_size=24)  # sizes: synthetic only
    assert tuple(cs.images.shape) == (4, 3, 24, 24) and cs.labels.tolist() == [0, 0, 1, 1]
    assert cs.classes == ["ann", "bob"]
    assert 0.0 <= cs.images.min() and cs.images.max() <= 1.0
    raw = cs.source[0][0]  # the decoded photo, before the crop and resize
    torch.testing.assert_close(cs.images[0], preprocess(24, crop=0.9)(raw))


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dataset 'synthetc'.*did you mean 'synthetic'"):
        load_closed_set("synthetc", identities=2, per_identity=2, image_size=32)
