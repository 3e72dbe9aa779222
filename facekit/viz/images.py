"""Pictures of images: a grid of faces (:func:`image_grid`) and boxes with landmarks drawn on one
(:func:`draw_detections`)."""

from __future__ import annotations

import torch


def image_grid(images, *, nrow: int = 8, titles=None, ax=None, title: str | None = None, scale: float = 1.2):
    """Show (N, C, H, W) images in [0, 1] as one grid; optional per-image titles (row-major)."""
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    images = torch.as_tensor(images).detach().float().cpu()
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n = images.shape[0]
    nrow = min(nrow, n)
    rows = (n + nrow - 1) // nrow
    pad = 2
    grid = make_grid(images.clamp(0, 1), nrow=nrow, padding=pad, pad_value=1.0)
    if ax is None:
        _, ax = plt.subplots(figsize=(scale * nrow, scale * rows * images.shape[2] / images.shape[3] + (0.3 if title else 0)))
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_axis_off()
    if titles is not None:
        h, w = images.shape[2] + pad, images.shape[3] + pad
        for i, t in enumerate(titles[:n]):
            ax.text((i % nrow) * w + pad + 1, (i // nrow) * h + pad + 1, str(t), color="yellow", fontsize=7,
                    va="top", ha="left", bbox=dict(facecolor="black", alpha=0.5, pad=1, linewidth=0))
    if title:
        ax.set_title(title)
    return ax


def draw_detections(image, boxes, landmarks=None, *, colors="lime", width: int = 2) -> torch.Tensor:
    """(3, H, W) float image in [0, 1] with xyxy `boxes` (N, 4) and optional (N, 5, 2) landmarks drawn on it."""
    from torchvision.utils import draw_bounding_boxes, draw_keypoints

    img = (torch.as_tensor(image).clamp(0, 1) * 255).to(torch.uint8)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if len(boxes):
        img = draw_bounding_boxes(img, boxes, colors=colors, width=width)
    if landmarks is not None and len(landmarks):
        img = draw_keypoints(img, torch.as_tensor(landmarks, dtype=torch.float32).reshape(len(boxes), -1, 2),
                             colors="red", radius=max(1, width - 1))
    return img.float() / 255


__all__ = ["image_grid", "draw_detections"]
