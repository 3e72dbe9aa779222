"""ImageFolderFaces on tiny folders made in tmp_path."""

import pytest
import torch

from facekit.config import ConfigError
from facekit.data.folders import FolderLayoutError, ImageFolderFaces, natural_key
from facekit.data.images import ImageReadError
from facekit.data.registry import DatasetNotFound


def test_happy_path(face_folder):
    ds = ImageFolderFaces(face_folder)
    assert ds.classes == ["s1", "s2", "s10"]  # natural order
    assert ds.class_to_idx == {"s1": 0, "s2": 1, "s10": 2}
    assert len(ds) == 9 and ds.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [p.name for p, _ in ds.samples[:3]] == ["1.jpg", "2.png", "3.pgm"]  # README, txt, hidden ignored
    img, label = ds[8]
    assert img.dtype == torch.float32 and img.shape == (3, 24, 20) and label == 2
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert ds.skipped == []


def test_image_size_channels_and_transform(face_folder):
    ds = ImageFolderFaces(face_folder, image_size=16, channels=1, transform=lambda x: x * 2)
    assert ds[0][0].shape == (1, 16, 16)
    assert ImageFolderFaces(face_folder, image_size=(12, 10))[4][0].shape == (3, 12, 10)


def test_natural_key():
    assert sorted(["s10", "s2", "s1", "a"], key=natural_key) == ["a", "s1", "s2", "s10"]


def test_missing_root_mentions_facekit_data(tmp_path):
    with pytest.raises(DatasetNotFound, match="FACEKIT_DATA") as info:
        ImageFolderFaces(tmp_path / "absent")
    assert "absent" in str(info.value)


def test_root_without_identity_folders(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetNotFound, match="no identity folders"):
        ImageFolderFaces(tmp_path)


def test_empty_identity_raises_or_is_skipped(face_folder):
    (face_folder / "s7").mkdir()
    (face_folder / "s7" / "info.txt").write_text("no images here")
    with pytest.raises(FolderLayoutError, match="s7"):
        ImageFolderFaces(face_folder)
    ds = ImageFolderFaces(face_folder, on_error="skip")
    assert ds.classes == ["s1", "s2", "s10"]
    assert [(p.name, r) for p, r in ds.skipped] == [("s7", "identity folder has no images")]


def test_corrupt_file_raises_when_read_or_is_skipped(face_folder):
    bad = face_folder / "s2" / "4.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    ds = ImageFolderFaces(face_folder)  # raise mode: found when read, not at construction
    index = [p for p, _ in ds.samples].index(bad)
    with pytest.raises(ImageReadError, match="4.jpg"):
        ds[index]
    skipping = ImageFolderFaces(face_folder, on_error="skip")
    assert len(skipping) == 9 and bad not in [p for p, _ in skipping.samples]
    assert len(skipping.skipped) == 1 and skipping.skipped[0][0] == bad


def test_min_images_and_classes(face_folder, make_image):
    make_image(face_folder / "s3" / "1.jpg")
    assert ImageFolderFaces(face_folder, min_images=2).classes == ["s1", "s2", "s10"]
    ds = ImageFolderFaces(face_folder, classes=["s10", "s3"])
    assert ds.class_to_idx == {"s10": 0, "s3": 1} and len(ds) == 4
    with pytest.raises(FolderLayoutError, match="min_images=5"):
        ImageFolderFaces(face_folder, min_images=5)
    with pytest.raises(DatasetNotFound, match="s99"):
        ImageFolderFaces(face_folder, classes=["s99"])


@pytest.mark.parametrize("kwargs", [{"on_error": "ignore"}, {"min_images": 0}, {"channels": 4}, {"image_size": -1}])
def test_bad_options_are_config_errors(face_folder, kwargs):
    with pytest.raises(ConfigError, match="raise.*skip" if "on_error" in kwargs else "."):
        ImageFolderFaces(face_folder, **kwargs)


def test_works_with_a_dataloader(face_folder):
    loader = torch.utils.data.DataLoader(ImageFolderFaces(face_folder, image_size=8), batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 8, 8) and labels.dtype == torch.int64
