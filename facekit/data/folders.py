"""Face images laid out as ``root/<identity>/<image>`` (torchvision's ImageFolder layout)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

from facekit.config import ConfigError, choice
from facekit.data.images import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    check_channels,
    check_size,
    is_image_file,
    load_float,
    read_image,
)
from facekit.data.roots import DATA_ENV, DatasetNotFound

ON_ERROR_CHOICES = ("raise", "skip")
_EXTENSIONS_TEXT = ", ".join(sorted(IMAGE_EXTENSIONS))
_DIGITS = re.compile(r"(\d+)")


class FolderLayoutError(ValueError):
    """An image folder whose layout cannot be used (an empty identity, nothing left after filtering)."""


def natural_key(name: str) -> tuple:
    """Sort key that orders numbers by value: ``s2`` before ``s10``.

    >>> sorted(["s10", "s2", "S1"], key=natural_key)
    ['S1', 's2', 's10']
    """
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def list_images(folder) -> list[Path]:
    """Image files under ``folder`` (recursively), natural order, hidden files and folders left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=natural_key)
        found.extend(Path(dirpath, f) for f in sorted(filenames, key=natural_key) if is_image_file(f))
    return found


class ImageFolderFaces(Dataset):
    """Faces in ``root/<identity>/<image>``; item ``i`` is ``(float32 (C, H, W) in [0, 1], label)``.

    Args:
        root: the folder holding one sub-folder per identity.
        image_size: None keeps each image's size; an int gives square ``(s, s)``; or ``(H, W)``.
        channels: 3 (RGB; grey repeated) or 1 (luminance).
        transform: called on the float tensor, after resizing.
        on_error: "raise": an identity folder without images is an error at construction, a corrupt
            file is an error (naming it) when it is read. "skip": every file is decoded once here
            (slower on big sets), bad files and empty identities go to ``skipped``.
        min_images: keep only identities with at least this many (readable) images.
        classes: identity folder names to use, in this order (labels follow it); default all.

    Attributes:
        classes, class_to_idx, samples ``[(path, label)]``, targets, skipped ``[(path, reason)]``.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for who in ("s10", "s2"):
    ...     (root / who).mkdir()
    ...     Image.new("L", (92, 112)).save(root / who / "1.pgm")
    >>> ds = ImageFolderFaces(root, image_size=64)
    >>> ds.classes, ds[0][0].shape, ds[0][1]
    (['s2', 's10'], torch.Size([3, 64, 64]), 0)
    """

    def __init__(
        self,
        root,
        *,
        image_size=None,
        channels: int = 3,
        transform=None,
        on_error: str = "raise",
        min_images: int = 1,
        classes=None,
    ):
        self.root = Path(root).expanduser()
        self.image_size = check_size(image_size)
        self.channels = check_channels(channels)
        self.transform = transform
        self.on_error = choice(on_error, ON_ERROR_CHOICES, name="on_error")
        if not isinstance(min_images, int) or isinstance(min_images, bool) or min_images < 1:
            raise ConfigError(f"min_images={min_images!r} is not accepted; use an int >= 1")
        self.min_images = min_images
        self.skipped: list[tuple[Path, str]] = []

        per_identity = {}
        for name in self._identity_names(classes):
            files = self._usable_files(self.root / name)
            if files:
                per_identity[name] = files
        kept = [name for name, files in per_identity.items() if len(files) >= min_images]
        if not kept:
            most = max((len(f) for f in per_identity.values()), default=0)
            raise FolderLayoutError(
                f"no identity in {self.root} has at least min_images={min_images} images "
                f"(the largest has {most}); lower min_images or add images"
            )
        self.classes: list[str] = kept
        self.class_to_idx = {name: i for i, name in enumerate(kept)}
        self.samples: list[tuple[Path, int]] = [
            (path, self.class_to_idx[name]) for name in kept for path in per_identity[name]
        ]
        self.targets: list[int] = [label for _, label in self.samples]

    def _identity_names(self, classes) -> list[str]:
        if not self.root.is_dir():
            raise DatasetNotFound(
                f"image folder {self.root} does not exist or is not a folder. Pass the folder holding "
                f"one sub-folder per identity (root/<identity>/<image>), or set {DATA_ENV} to the folder "
                f"holding the datasets and use facekit.data.load_dataset(name)."
            )
        with os.scandir(self.root) as entries:
            names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
        found = sorted(names, key=natural_key)
        if not found:
            raise DatasetNotFound(
                f"{self.root} has no identity folders: expected root/<identity>/<image> with images "
                f"({_EXTENSIONS_TEXT}). Is this the right folder (not its parent or one identity)?"
            )
        if classes is None:
            return found
        classes = list(classes)
        if len(set(classes)) != len(classes):
            raise ConfigError(f"classes has duplicates: {classes}")
        missing = [c for c in classes if c not in set(found)]
        if missing:
            raise DatasetNotFound(f"identity folder(s) {missing} not found in {self.root}")
        return classes

    def _usable_files(self, folder: Path) -> list[Path]:
        files = list_images(folder)
        if not files:
            if self.on_error == "raise":
                raise FolderLayoutError(
                    f"identity folder {folder} contains no images ({_EXTENSIONS_TEXT}); "
                    f"add images, remove the folder, or pass on_error='skip'"
                )
            self.skipped.append((folder, "identity folder has no images"))
            return []
        if self.on_error == "skip":
            good = []
            for path in files:
                try:
                    read_image(path, self.channels)
                    good.append(path)
                except ImageReadError as err:
                    self.skipped.append((path, err.reason))
            if not good:
                self.skipped.append((folder, "identity folder has no readable images"))
            files = good
        return files

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        img = load_float(path, channels=self.channels, image_size=self.image_size)
        if self.transform is not None:
            img = self.transform(img)
        return img, label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, identities={len(self.classes)}, "
            f"images={len(self.samples)}, skipped={len(self.skipped)})"
        )
