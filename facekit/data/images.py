"""Read face images from disk into consistent ``uint8`` tensors.

Every supported file (JPEG, PNG, PGM/PPM, BMP) in every common PIL mode comes out
as a ``torch.uint8`` tensor of shape ``(C, H, W)`` with ``C`` = 1 or 3:

* grey (``L``), bilevel (``1``: 0/255) and 16-bit grey (``I;16``, ``I``: scaled
  from 0..65535 to 0..255) become one grey channel, repeated for ``channels=3``;
* RGB, CMYK, YCbCr and palette (``P``) images become RGB;
* an alpha channel (``RGBA``, ``LA``, palette transparency) is **composited on
  black**: ``pixel * alpha / 255``, so fully transparent pixels are black;
* ``channels=1`` gives the ITU-R 601-2 luminance (PIL's ``convert("L")``);
* the EXIF orientation tag, when present, is applied.

A file that is missing, corrupt, truncated or not an image raises
:class:`ImageReadError`, whose message names the file and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as TF

from facekit.config import ConfigError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp"})
ACCEPTED_CHANNELS = (1, 3)
UINT8_MAX = 255
UINT16_MAX = 65535
EXIF_ORIENTATION = 0x0112
_GREY_MODES = frozenset({"L", "1", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageReadError(OSError):
    """An image file that cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str | None = None):
        if reason is None:  # re-made from a message alone (DataLoader workers do that): keep it whole
            self.path, self.reason = None, None
            super().__init__(str(path))
            return
        self.path = Path(path)
        self.reason = str(reason)
        super().__init__(f"cannot read image {self.path}: {self.reason}")

    def __reduce__(self):  # keep it picklable (DataLoader workers send errors back)
        return (type(self), (self.path, self.reason))


def is_image_file(path) -> bool:
    """True for a non-hidden file name ending in one of :data:`IMAGE_EXTENSIONS` (any case).

    >>> is_image_file("s1/1.PGM"), is_image_file("README"), is_image_file(".a.jpg")
    (True, False, False)
    """
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def check_channels(channels) -> int:
    """Return ``channels`` if it is 1 or 3, else raise ConfigError."""
    if channels not in ACCEPTED_CHANNELS:
        raise ConfigError(f"channels={channels!r} is not accepted; use one of: 1, 3")
    return int(channels)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Grey image of any depth -> mode ``L`` (16-bit and ``I`` images: 0..65535 scaled down)."""
    if im.mode == "L":
        return im
    if im.mode == "1":
        return im.convert("L")
    arr = np.asarray(im)
    if im.mode == "F":
        scaled = np.clip(arr, 0, UINT8_MAX)
    else:  # I;16, I;16B, I;16L, I: PIL's modes for 16-bit PNG and PGM
        scaled = np.clip(arr.astype(np.float64), 0, UINT16_MAX) * (UINT8_MAX / UINT16_MAX)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


def _composite_on_black(im: Image.Image) -> Image.Image:
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
    rgb = rgba[..., :3] * (rgba[..., 3:] / UINT8_MAX)
    return Image.fromarray(np.rint(rgb).astype(np.uint8), mode="RGB")


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Any PIL image -> mode ``L`` or ``RGB``."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in _ALPHA_MODES:
        return _composite_on_black(im)
    if im.mode in _GREY_MODES or im.mode.startswith("I;"):
        return _to_8bit(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def read_image(path, channels: int = 3) -> torch.Tensor:
    """Read an image file as a ``uint8`` tensor of shape ``(channels, H, W)``.

    Args:
        path: a JPEG, PNG, PGM/PPM or BMP file.
        channels: 3 for RGB (grey images are repeated), 1 for luminance.

    Returns:
        ``torch.uint8`` tensor ``(channels, H, W)``.

    Raises:
        ImageReadError: the file is missing, corrupt, truncated or not an image.

    >>> import tempfile, os
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.new("LA", (4, 2), (200, 255)).save(p)
    >>> read_image(p).shape, read_image(p, channels=1).dtype
    (torch.Size([3, 2, 4]), torch.uint8)
    """
    channels = check_channels(channels)
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode fully now: truncated data fails here, not later
            if im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                im = ImageOps.exif_transpose(im)
            im = _normalise_mode(im)
            if channels == 1 and im.mode != "L":
                im = im.convert("L")
            arr = np.array(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image file") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not a recognised image format (corrupt or not an image)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise ImageReadError(path, f"corrupt or truncated image ({err})") from err
    if arr.ndim == 2:
        arr = arr[:, :, None]
    tensor = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    if channels == 3 and tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1).contiguous()
    return tensor


def to_float(img: torch.Tensor) -> torch.Tensor:
    """``uint8`` image ``(..., C, H, W)`` -> ``float32`` in [0, 1] (same shape).

    >>> to_float(torch.tensor([[[0, 255]]], dtype=torch.uint8))
    tensor([[[0., 1.]]])
    """
    if img.dtype != torch.uint8:
        raise TypeError(f"to_float expects a uint8 tensor, got {img.dtype}")
    return TF.to_dtype(img, torch.float32, scale=True)


def check_size(size) -> tuple[int, int] | None:
    """``None`` -> None; ``int s`` -> ``(s, s)``; ``(H, W)`` -> ``(H, W)``; else ConfigError."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = size
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"image_size={size!r} is not accepted; use None, a positive int or (height, width)")
    return int(h), int(w)


def resize(img: torch.Tensor, size) -> torch.Tensor:
    """Resize ``(..., C, H, W)`` to exactly ``size`` (int: square; ``(H, W)``), bilinear + antialias.

    The aspect ratio is not kept: face crops are expected to be roughly aligned.
    ``size=None`` returns ``img`` unchanged.

    >>> resize(torch.zeros(3, 112, 92, dtype=torch.uint8), 64).shape
    torch.Size([3, 64, 64])
    """
    size = check_size(size)
    if size is None or tuple(img.shape[-2:]) == size:
        return img
    return TF.resize(img, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


def load_float(path, *, channels: int = 3, image_size=None) -> torch.Tensor:
    """:func:`read_image`, :func:`resize` and :func:`to_float` in one call -> ``float32 (C, H, W)``."""
    return to_float(resize(read_image(path, channels), image_size))
