"""Low-level soft-shape rasterising for the synthetic faces.

Shapes are signed distance functions (SDFs, negative inside) evaluated in a continuous
*frame* (face units for a face, pixels for a background). Coverage is
``alpha = clip(0.5 - d / pixel_size, 0, 1)``: a one-pixel anti-aliased edge whatever
the resolution, so a face looks the same at 32 px and at 160 px. Each shape is only
evaluated inside its bounding box, which keeps a 64x64 face at about a millisecond.

Images are numpy float32 arrays (H, W, 3); a pixel (row i, column j) covers
``[j, j+1) x [i, i+1)`` in continuous pixel coordinates, its centre is ``(j+0.5, i+0.5)``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

F32 = np.float32
_EPS = 1e-6


class Frame:
    """A similarity frame: ``pixel = centre + scale * R(angle) @ (u, v)``, with v pointing down.

    Args:
        cx, cy: where the frame origin lands, in pixels.
        scale: pixels per frame unit.
        angle: in-plane rotation in radians (positive turns clockwise on screen).
    """

    __slots__ = ("cx", "cy", "scale", "c", "s", "px")

    def __init__(self, cx: float, cy: float, scale: float, angle: float = 0.0):
        self.cx, self.cy, self.scale = float(cx), float(cy), float(scale)
        self.c, self.s = math.cos(angle), math.sin(angle)
        self.px = 1.0 / self.scale  # one pixel, in frame units

    def to_pixels(self, u, v):
        """Frame coordinates (arrays or floats) -> pixel coordinates ``(x, y)``."""
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        x = self.cx + self.scale * (self.c * u - self.s * v)
        y = self.cy + self.scale * (self.s * u + self.c * v)
        return x, y

    def local(self, shape, box):
        """Frame coordinates of the pixels covering ``box = (u0, v0, u1, v1)``.

        Returns ``(slices, u, v)`` with u, v float32 broadcastable to (h, w) (a row and a column
        when the frame is not rotated), or None when the box is off the canvas.
        """
        u0, v0, u1, v1 = box
        sc, c, s = self.scale, self.c, self.s
        # pixel bounds of the rotated box: centre +- half extents
        mu, mv, hu, hv = (u0 + u1) / 2, (v0 + v1) / 2, abs(u1 - u0) / 2, abs(v1 - v0) / 2
        mx, my = self.cx + sc * (c * mu - s * mv), self.cy + sc * (s * mu + c * mv)
        ex, ey = sc * (abs(c) * hu + abs(s) * hv), sc * (abs(s) * hu + abs(c) * hv)
        x0, x1 = max(int(mx - ex) - 1, 0), min(int(mx + ex) + 2, shape[1])
        y0, y1 = max(int(my - ey) - 1, 0), min(int(my + ey) + 2, shape[0])
        if x0 >= x1 or y0 >= y1:
            return None
        k = 1.0 / self.scale
        dx = (np.arange(x0, x1, dtype=F32) + F32(0.5 - self.cx)) * F32(k)  # (w,)
        dy = (np.arange(y0, y1, dtype=F32) + F32(0.5 - self.cy)) * F32(k)  # (h,)
        if self.s == 0.0:  # separable: a row of u and a column of v, broadcast by the SDFs
            u, v = dx[None, :], dy[:, None]
        else:
            c, s = F32(self.c), F32(self.s)
            u = c * dx[None, :] + s * dy[:, None]
            v = c * dy[:, None] - s * dx[None, :]
        return (slice(y0, y1), slice(x0, x1)), u, v


def _blend(patch, d, color, opacity, width) -> None:
    alpha = F32(0.5) - d * F32(1.0 / width)  # coverage of each pixel
    np.maximum(alpha, 0, out=alpha)
    np.minimum(alpha, 1, out=alpha)
    if opacity != 1.0:
        alpha *= F32(opacity)
    patch += alpha[..., None] * (color - patch)


def paint(canvas, frame: Frame, box, sdf, color, opacity: float = 1.0, soft: float = 0.0) -> None:
    """Alpha-blend ``color`` into ``canvas`` (H, W, 3) where ``sdf(u, v) < 0``, in place.

    Args:
        box: (u0, v0, u1, v1), the shape's bounds in frame units (only these pixels are touched).
        sdf: callable (u, v) -> signed distance in frame units (negative inside).
        color: float32 RGB (3,) or (h, w, 3) in [0, 1].
        opacity: multiplies the coverage.
        soft: edge width in frame units when wider than a pixel (blurry shading shapes).
    """
    region = frame.local(canvas.shape, box)
    if region is not None:
        sl, u, v = region
        _blend(canvas[sl], sdf(u, v), color, opacity, max(frame.px, soft))


def paint_layers(canvas, frame: Frame, box, layers) -> None:
    """Paint several shapes sharing one region, in order; ``layers(u, v)`` yields
    ``(distance, color, opacity, soft)`` and may reuse distances between layers (eyes, mouth)."""
    region = frame.local(canvas.shape, box)
    if region is not None:
        sl, u, v = region
        patch = canvas[sl]
        for d, color, opacity, soft in layers(u, v):
            _blend(patch, d, color, opacity, max(frame.px, soft))


# ---- signed distance functions: (u, v) arrays in, distance array out, negative inside ----

def _rotate(x, y, angle):
    if angle == 0.0:
        return x, y
    c, s = F32(math.cos(angle)), F32(math.sin(angle))
    return c * x + s * y, c * y - s * x


def circle(u, v, cx, cy, r):
    return np.hypot(u - F32(cx), v - F32(cy)) - F32(r)


def ellipse(u, v, cx, cy, rx, ry, angle=0.0):
    """Approximate ellipse distance (exact on the axes, good near the edge)."""
    x, y = _rotate(u - F32(cx), v - F32(cy), angle)
    k0 = np.hypot(x * F32(1 / rx), y * F32(1 / ry))
    k1 = np.hypot(x * F32(1 / rx**2), y * F32(1 / ry**2))
    return k0 * (k0 - 1) / (k1 + F32(_EPS))


def rbox(u, v, cx, cy, hx, hy, r=0.0, angle=0.0):
    """Rounded box of half sizes (hx, hy) and corner radius r."""
    x, y = _rotate(u - F32(cx), v - F32(cy), angle)
    qx = np.abs(x) - F32(hx - r)
    qy = np.abs(y) - F32(hy - r)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - F32(r)


def capsule(u, v, ax, ay, bx, by, r):
    """A segment from (ax, ay) to (bx, by) thickened by radius r."""
    px, py = u - F32(ax), v - F32(ay)
    dx, dy = bx - ax, by - ay
    h = np.minimum(np.maximum((px * F32(dx) + py * F32(dy)) * F32(1 / (dx * dx + dy * dy + _EPS)), 0), 1)
    return np.hypot(px - h * F32(dx), py - h * F32(dy)) - F32(r)


def stroke(u, v, cx, cy, w, bend, thick, taper=0.0, angle=0.0):
    """A curved stroke along ``y = bend * (x/w)**2`` for |x| <= w (local axes).

    Its half thickness is ``thick * (1 - taper * (x/w)**2)``: taper=1 gives pointed ends.
    bend > 0 lowers the ends on screen (an arch), bend < 0 raises them (a smile).
    """
    x, y = _rotate(u - F32(cx), v - F32(cy), angle)
    t = x * F32(1 / w)
    t2 = t * t
    slope = F32(2 * bend / w) * t
    d = np.abs(y - F32(bend) * t2) / np.sqrt(1 + slope * slope)
    return np.maximum(d - F32(thick) * (1 - F32(taper) * t2), np.abs(x) - F32(w))


def lens(u, v, cx, cy, w, top, bottom, bend=0.0, angle=0.0):
    """An almond between two arcs: ``-top*s <= y - bend*(x/w)**2 <= bottom*s``, ``s = sqrt(1-(x/w)**2)``.

    Used for eyes (top/bottom = opening) and lips; w is the half width.
    """
    x, y = _rotate(u - F32(cx), v - F32(cy), angle)
    t = x * F32(1 / w)
    s = np.sqrt(np.maximum(1 - t * t, 0))
    dy = y - F32(bend) * t * t
    d = np.maximum(-dy - F32(top) * s, dy - F32(bottom) * s)
    return np.maximum(d, np.abs(x) - F32(w))


# ---- image-level effects ----

def random_color(rng, lo=0.05, hi=0.95):
    """A random RGB colour, desaturated towards its grey by a random amount."""
    c = rng.uniform(lo, hi, 4)
    m = (c[0] + c[1] + c[2]) / 3
    return (m + (0.25 + 0.55 * c[3]) * (c[:3] - m)).astype(F32)


def background(rng, h: int, w: int, clutter: float):
    """A cluttered background (h, w, 3): a two-colour gradient, a stripe texture and random shapes.

    ``clutter`` in [0, 1] sets the number and contrast of shapes and the texture amplitude.
    """
    c0, c1 = random_color(rng), random_color(rng)
    ang = rng.uniform(0, 2 * math.pi)
    xs = (np.arange(w, dtype=F32) + 0.5) / w - 0.5
    ys = (np.arange(h, dtype=F32) + 0.5) / h - 0.5
    t = F32(math.cos(ang)) * xs[None, :] + F32(math.sin(ang)) * ys[:, None] + F32(0.5)  # (h, w)
    # texture: stripes of random direction and period, amplitude grows with clutter
    freq, ang2, phase = rng.uniform(4, 14), rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi)
    tex = np.sin(F32(2 * math.pi * freq) * (F32(math.cos(ang2)) * xs[None, :] + F32(math.sin(ang2)) * ys[:, None])
                 + F32(phase))
    img = (c0 + (c1 - c0) * t[..., None]) + (F32(0.05 * clutter) * tex)[..., None]
    img = img.astype(F32, copy=False)
    frame = Frame(0.0, 0.0, 1.0)
    side = min(h, w)
    n_shapes = int(round(clutter * 10 * (h * w) / (side * side)))
    for _ in range(n_shapes):
        kind = rng.integers(3)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        size = side * rng.uniform(0.04, 0.3)
        col, alpha = random_color(rng), clutter * rng.uniform(0.4, 1.0)
        box = (x - size, y - size, x + size, y + size)
        if kind == 0:
            paint(img, frame, box, lambda u, v: circle(u, v, x, y, size), col, alpha)
        elif kind == 1:
            ar, a = rng.uniform(0.3, 1.0), rng.uniform(0, math.pi)
            paint(img, frame, box, lambda u, v: rbox(u, v, x, y, size, size * ar, 0.0, a), col, alpha)
        else:
            a = rng.uniform(0, 2 * math.pi)
            bx, by = x + size * math.cos(a), y + size * math.sin(a)
            thick = max(0.6, side * rng.uniform(0.005, 0.02))
            paint(img, frame, box, lambda u, v: capsule(u, v, x, y, bx, by, thick), col, alpha)
    return img


def lighting(img, angle: float, strength: float, gain) -> None:
    """Multiply ``img`` (H, W, 3) by a linear light gradient and per-channel ``gain``, in place.

    The brightness goes from ``1 - strength`` to ``1 + strength`` across the image along ``angle``.
    """
    h, w = img.shape[:2]
    xs = (np.arange(w, dtype=F32) + 0.5) * F32(2 / w) - 1
    ys = (np.arange(h, dtype=F32) + 0.5) * F32(2 / h) - 1
    g = F32(strength / math.sqrt(2)) * (F32(math.cos(angle)) * xs[None, :] + F32(math.sin(angle)) * ys[:, None])
    img *= (1 + g)[..., None] * np.asarray(gain, F32)


def gaussian_blur(img, sigma: float):
    """Gaussian blur of ``img`` (H, W, 3) in [0, 1] with ``sigma`` in pixels (8-bit, via PIL)."""
    if sigma < 0.25:
        return img
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    out = np.asarray(Image.fromarray(u8).filter(ImageFilter.GaussianBlur(sigma)), dtype=F32)
    return out * F32(1 / 255)
