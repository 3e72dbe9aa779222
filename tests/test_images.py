"""read_image: every format and mode gives a consistent uint8 (C, H, W); bad files name themselves."""

import pytest
import torch
from PIL import Image

from facekit.config import ConfigError
from facekit.data.images import IMAGE_EXTENSIONS, ImageReadError, is_image_file, read_image, resize, to_float

H, W = 24, 20


@pytest.mark.parametrize("ext", [".jpg", ".png", ".pgm", ".ppm", ".bmp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_formats_give_consistent_tensors(tmp_path, make_image, ext, channels):
    mode = "L" if ext == ".pgm" else "RGB"
    img = read_image(make_image(tmp_path / f"a{ext}", mode), channels=channels)
    assert img.dtype == torch.uint8 and img.shape == (channels, H, W)


@pytest.mark.parametrize("mode", ["L", "1", "I;16", "RGB", "RGBA", "P", "LA", "CMYK"])
def test_modes_give_consistent_tensors(tmp_path, make_image, mode):
    ext = ".jpg" if mode == "CMYK" else ".png"
    path = make_image(tmp_path / f"a{ext}", mode)
    assert read_image(path).shape == (3, H, W)
    assert read_image(path, channels=1).shape == (1, H, W)
    assert read_image(path).dtype == torch.uint8


def test_grey_is_repeated_and_luminance_matches_pil(tmp_path, make_image):
    grey = read_image(make_image(tmp_path / "g.png", "L"))
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    rgb_path = make_image(tmp_path / "c.png", "RGB")
    expected = torch.from_numpy(__import__("numpy").array(Image.open(rgb_path).convert("L")))
    assert torch.equal(read_image(rgb_path, channels=1)[0], expected)


def test_alpha_is_composited_on_black(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (200, 100, 50, 0)).save(path)
    assert read_image(path).max() == 0
    Image.new("RGBA", (4, 4), (200, 100, 50, 255)).save(path)
    assert read_image(path)[:, 0, 0].tolist() == [200, 100, 50]


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    path = tmp_path / "w.png"
    Image.fromarray(__import__("numpy").full((3, 3), 65535, dtype="uint16")).save(path)
    assert read_image(path, channels=1).unique().tolist() == [255]


def test_random_bytes_raise_naming_the_file(tmp_path):
    path = tmp_path / "broken_face.jpg"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImageReadError, match="broken_face.jpg"):
        read_image(path)


def test_truncated_jpeg_raises_naming_the_file(tmp_path, make_image):
    path = make_image(tmp_path / "cut.jpg", size=(64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="cut.jpg") as info:
        read_image(path)
    assert isinstance(info.value, OSError) and info.value.path == path


def test_missing_file_and_bad_channels(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png.*no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ConfigError, match="channels"):
        read_image(tmp_path / "nope.png", channels=2)


def test_extensions_and_helpers():
    assert {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp"} == set(IMAGE_EXTENSIONS)
    assert is_image_file("A.JPEG") and not is_image_file("notes.txt") and not is_image_file(".x.jpg")
    img = torch.full((3, 10, 8), 255, dtype=torch.uint8)
    assert to_float(img).dtype == torch.float32 and to_float(img).max() == 1.0
    assert resize(img, 4).shape == (3, 4, 4) and resize(img, (6, 5)).shape == (3, 6, 5)
    with pytest.raises(ConfigError, match="image_size"):
        resize(img, 0)
