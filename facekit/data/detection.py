"""Face boxes (and optional landmarks) from dlib's imglab XML files (``training.xml``, ``testing.xml``).

An imglab file lists ``<image file='a.jpg'>`` elements with ``<box top left width height/>``
children (pixels; ``ignore='1'`` marks a box a detector should neither be rewarded nor
penalised for) and, in ``*_with_face_landmarks.xml``, 68 ``<part name='00' x y/>`` per box
(the iBUG 300-W scheme). Boxes come out as ``xyxy`` = ``(left, top, left + width, top + height)``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from facekit.config import choice
from facekit.data.images import read_image, to_float
from facekit.data.registry import DatasetNotFound, find_data_root

DLIB_SPLITS = ("training", "testing")
LANDMARKS_68 = 68
# InsightFace 5-point order, viewer's left first: eye centres, nose tip, mouth corners (iBUG indices).
FIVE_POINTS_FROM_68 = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))


@dataclass(frozen=True)
class ImageAnnotation:
    """One ``<image>``: path, boxes ``(N, 4)`` xyxy, ``ignore`` ``(N,)``, parts ``(N, P, 2)`` (NaN if absent)."""

    path: Path
    boxes: torch.Tensor
    ignore: torch.Tensor
    parts: torch.Tensor


def _int_attr(element, name: str, where: str) -> float:
    value = element.get(name)
    try:
        return float(int(value))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: attribute {name}={value!r} is missing or not an integer") from None


def read_imglab(xml_file) -> list[ImageAnnotation]:
    """Parse a dlib imglab XML file; image paths are relative to the file's folder.

    Raises:
        DatasetNotFound: the XML file or an image it names does not exist.
        ValueError: malformed XML or a box without integer top/left/width/height.
    """
    xml_file = Path(xml_file)
    if not xml_file.is_file():
        raise DatasetNotFound(f"dlib annotation file {xml_file} not found")
    try:
        tree = ET.parse(xml_file)
    except ET.ParseError as err:
        raise ValueError(f"{xml_file}: not valid XML ({err})") from None
    images = tree.getroot().iter("image")
    parsed = []
    for image in images:
        path = xml_file.parent / image.get("file", "")
        if not path.is_file():
            raise DatasetNotFound(f"{xml_file}: image {path} (file={image.get('file')!r}) not found")
        boxes, ignore, parts = [], [], []
        for k, box in enumerate(image.iter("box")):
            where = f"{xml_file}: image {image.get('file')!r}, box {k}"
            top, left, w, h = (_int_attr(box, a, where) for a in ("top", "left", "width", "height"))
            boxes.append([left, top, left + w, top + h])
            ignore.append(box.get("ignore", "0").strip() not in ("", "0"))
            try:
                points = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
            except (TypeError, ValueError):
                raise ValueError(f"{where}: a <part> without integer name and numeric x, y") from None
            parts.append(points)
        n_parts = max((max(p) + 1 for p in parts if p), default=0)
        table = torch.full((len(boxes), n_parts, 2), math.nan)
        for i, points in enumerate(parts):
            for j, xy in points.items():
                table[i, j] = torch.tensor(xy)
        parsed.append(
            ImageAnnotation(
                path,
                torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                torch.tensor(ignore, dtype=torch.bool),
                table,
            )
        )
    return parsed


def five_points(landmarks68: torch.Tensor) -> torch.Tensor:
    """``(N, 68, 2)`` iBUG landmarks -> ``(N, 5, 2)``: left eye, right eye, nose, left and right mouth corner.

    >>> five_points(torch.zeros(2, 68, 2)).shape
    torch.Size([2, 5, 2])
    """
    if landmarks68.shape[-2] != LANDMARKS_68:
        raise ValueError(f"expected {LANDMARKS_68} landmarks, got shape {tuple(landmarks68.shape)}")
    return torch.stack([landmarks68[..., list(group), :].mean(-2) for group in FIVE_POINTS_FROM_68], dim=-2)


class DlibFaceBoxes(Dataset):
    """dlib's face-detection examples: item ``i`` is ``(image float32 (3, H, W), target)``.

    ``target``: ``boxes`` (``tv_tensors.BoundingBoxes``, float32 ``(N, 4)`` xyxy pixels), ``labels``
    (int64 ones ``(N,)``), ``ignore`` (bool ``(N,)``; ignored boxes are kept, flagged) and, with
    ``landmarks=True``, ``landmarks`` (``(N, 68, 2)``) and ``landmarks5`` (``(N, 5, 2)``).

    Args:
        root: the ``dlib_faces`` folder or its parent; default: searched.
        split: "training" (4 images, 18 boxes) or "testing" (5 images, 25 boxes).
        transform: called as ``image, target = transform(image, target)`` (torchvision v2 style).
        landmarks: read ``<split>_with_face_landmarks.xml`` and add the landmark entries.

    >>> ds = DlibFaceBoxes(split="testing")  # doctest: +SKIP
    >>> image, target = ds[0]  # doctest: +SKIP
    >>> image.dtype, target["boxes"].shape[1]  # doctest: +SKIP
    (torch.float32, 4)
    """

    def __init__(self, root=None, split: str = "training", *, transform=None, landmarks: bool = False):
        self.split = choice(split, DLIB_SPLITS, name="split")
        self.root = find_data_root("dlib", root)
        name = f"{split}_with_face_landmarks.xml" if landmarks else f"{split}.xml"
        self.xml_file = self.root / name
        self.transform = transform
        self.landmarks = landmarks
        self.annotations = read_imglab(self.xml_file)
        if landmarks and not any(a.parts.shape[1] == LANDMARKS_68 for a in self.annotations):
            raise ValueError(f"{self.xml_file} has no {LANDMARKS_68}-point landmarks (<part> elements)")

    @property
    def num_boxes(self) -> int:
        return sum(len(a.boxes) for a in self.annotations)

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int):
        ann = self.annotations[index]
        image = to_float(read_image(ann.path, 3))
        height, width = image.shape[-2:]
        target = {
            "boxes": tv_tensors.BoundingBoxes(ann.boxes.clone(), format="XYXY", canvas_size=(height, width)),
            "labels": torch.ones(len(ann.boxes), dtype=torch.int64),
            "ignore": ann.ignore.clone(),
        }
        if self.landmarks:
            full = ann.parts
            if full.shape[1] != LANDMARKS_68:  # this image's boxes have no landmarks
                full = torch.full((len(ann.boxes), LANDMARKS_68, 2), math.nan)
            target["landmarks"] = full.clone()
            target["landmarks5"] = five_points(full)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"DlibFaceBoxes(split={self.split!r}, images={len(self)}, boxes={self.num_boxes})"


def collate_detection(batch):
    """DataLoader ``collate_fn``: ``[(image, target), ...]`` -> ``(list of images, list of targets)``."""
    images, targets = zip(*batch)
    return list(images), list(targets)
