"""AT&T / ORL faces: 40 subjects ``s1..s40`` x 10 grey 92x112 PGM images (Samaria and Harter, 1994)."""

from __future__ import annotations

import warnings
from collections import Counter

from facekit.data.folders import ImageFolderFaces
from facekit.data.registry import find_data_root

ORL_SUBJECTS = 40
ORL_IMAGES_PER_SUBJECT = 10
ORL_IMAGE_SIZE = (112, 92)  # (H, W)
ORL_CLASSES = tuple(f"s{i}" for i in range(1, ORL_SUBJECTS + 1))


def check_orl_layout(dataset: ImageFolderFaces) -> list[str]:
    """Differences from the expected 40 x 10 layout, as sentences (empty when it matches)."""
    problems = []
    if set(dataset.classes) != set(ORL_CLASSES):
        extra = sorted(set(dataset.classes) - set(ORL_CLASSES))
        missing = sorted(set(ORL_CLASSES) - set(dataset.classes))
        problems.append(
            f"expected subjects s1..s{ORL_SUBJECTS}, found {len(dataset.classes)}"
            + (f"; missing {missing[:5]}" if missing else "")
            + (f"; unexpected {extra[:5]}" if extra else "")
        )
    counts = Counter(dataset.targets)
    odd = {dataset.classes[k]: n for k, n in counts.items() if n != ORL_IMAGES_PER_SUBJECT}
    if odd:
        shown = dict(list(odd.items())[:5])
        problems.append(f"expected {ORL_IMAGES_PER_SUBJECT} images per subject; these differ: {shown}")
    return problems


def load_orl(root=None, **kwargs) -> ImageFolderFaces:
    """Load AT&T/ORL faces as an :class:`ImageFolderFaces` (labels 0..39 for ``s1..s40``).

    Args:
        root: the ``att_faces`` folder, or a folder holding ``att_faces/`` (or ``orl/``);
            default: searched with :func:`facekit.data.find_data_root`.
        **kwargs: passed to :class:`ImageFolderFaces` (``image_size``, ``channels=1`` for grey, ...).

    Returns:
        The dataset; a layout other than 40 x 10 gives a ``UserWarning``, not an error.

    >>> ds = load_orl(channels=1)  # doctest: +SKIP
    >>> len(ds), ds[0][0].shape  # doctest: +SKIP
    (400, torch.Size([1, 112, 92]))
    """
    dataset = ImageFolderFaces(find_data_root("orl", root), **kwargs)
    problems = check_orl_layout(dataset)
    if problems:
        warnings.warn(
            f"ORL folder {dataset.root} differs from the standard 40 x 10 layout: " + "; ".join(problems),
            UserWarning,
            stacklevel=2,
        )
    return dataset
