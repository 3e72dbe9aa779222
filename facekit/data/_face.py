"""Paint one cartoon face into a canvas: the geometry behind :func:`facekit.data.synthetic.draw_face`.

Face units: the head is an egg centred at the origin, its top at ``v = -face_height`` and its
chin at ``v = +face_height`` (about 1); u points right on screen, v points down. A yaw turns
the head: features on a sphere of radius ~ the head half-width slide sideways and the far
side foreshortens. Only attribute access is used on the identity and the nuisance.
"""

from __future__ import annotations

import math

import numpy as np

from facekit.data import _draw as D
from facekit.data._draw import F32, paint
from facekit.data._face_parts import (  # the drawing steps; the feature constants re-exported
    BROW_RAISE_MAX, DARK, EYE_WHITE, MOUTH_INSIDE, MOUTH_OPEN_MAX, SMILE_DEPTH, _behind_head, _brows, _earrings, _eyes,
    _Face, _front_hair, _glasses, _hat, _head, _head_sdf, _mouth, _nose)

BOX_TOP = -0.82  # top of the face box (forehead), as a fraction of face_height


def head_outline(hw: float, H: float, jaw: float, n: int = 48):
    """Points (n, 2) on the face outline from the forehead line down round the chin (face units)."""
    t0 = math.asin(-BOX_TOP)
    t = np.linspace(-t0, math.pi + t0, n)
    v = H * np.sin(t)
    rx = hw * (1 - jaw * np.clip(v / H, 0, 1) ** 2)
    return np.stack([rx * np.cos(t), v], axis=1)


def draw_face(canvas, ident, nuis, cx: float, cy: float, scale: float, *, body: bool = True):
    """Paint ``ident`` under ``nuis`` (rotation, yaw, expression, occluder) into ``canvas`` in place.

    Args:
        canvas: float32 (H, W, 3) image in [0, 1].
        cx, cy: pixel position of the head centre; scale: pixels per face unit (head half height).
        body: also paint neck and shoulders.

    Returns:
        landmarks float64 (5, 2) pixel (x, y) of left eye, right eye, nose tip, left and right
        mouth corner (viewer's left first); box float64 (4,) x1, y1, x2, y2 forehead-to-chin.
    """
    f = _Face(canvas, ident, nuis, cx, cy, scale)
    ears = _behind_head(f, body)
    _head(f)
    eyes = _eyes(f)
    bv = _brows(f)
    tip_u, tip_v = _nose(f)
    ml, mr, bend = _mouth(f)
    _front_hair(f, bv)
    _hat(f)
    _glasses(f, eyes)
    _earrings(f, ears)
    _occluder(canvas, f.fr, nuis, f.skin, f.hw, f.H)

    lm_u = np.array([eyes[0], eyes[1], tip_u, ml, mr])
    lm_v = np.array([f.eye_v, f.eye_v, tip_v, f.mouth_v + bend, f.mouth_v + bend])
    lx, ly = f.fr.to_pixels(lm_u, lm_v)
    out = head_outline(f.hw, f.H, ident.jaw)
    ox, oy = f.fr.to_pixels(out[:, 0], out[:, 1])
    return np.stack([lx, ly], axis=1), np.array([ox.min(), oy.min(), ox.max(), oy.max()])


def _occluder(canvas, fr, nuis, skin, hw, H):
    kind = nuis.occluder
    if kind == "none":
        return
    ou, ov, size, ang, r, g, b = nuis.occluder_params
    col = np.array([r, g, b], F32)
    box = (ou - 2 * size, ov - 2 * size, ou + 2 * size, ov + 2 * size)
    if kind == "bar":
        paint(canvas, fr, box, lambda u, v: D.rbox(u, v, ou, ov, 2 * size, 0.22 * size, 0.03, ang), col)
    elif kind == "patch":
        paint(canvas, fr, box, lambda u, v: D.rbox(u, v, ou, ov, size * 0.8, size * 0.6, 0.1 * size, ang), col)
    elif kind == "mask":
        head = _head_sdf(hw, H, 0.3)
        top = (0.15 + 0.1 * size) * H
        paint(canvas, fr, (-hw - 0.1, 0.0, hw + 0.1, H + 0.1),
              lambda u, v: np.maximum(head(u, v) - F32(0.02), F32(top) - v), col * F32(0.3) + F32(0.65))
    else:  # hand: a palm and four fingers, each with a darker rim so that it shows over the face
        size = size * 1.3
        hand_col = skin * F32(1.08) + F32(0.03)
        rim = skin * F32(0.62)
        c, s = math.cos(ang), math.sin(ang)
        paint(canvas, fr, box, lambda u, v: D.ellipse(u, v, ou, ov, size * 0.75, size * 0.6, ang), rim)
        paint(canvas, fr, box, lambda u, v: D.ellipse(u, v, ou, ov, size * 0.75 - 0.02, size * 0.6 - 0.02, ang),
              hand_col)
        for t in (-0.6, -0.2, 0.2, 0.6):
            fx = ou + size * 1.45 * (c * math.cos(t) - s * math.sin(t))
            fy = ov + size * 1.45 * (s * math.cos(t) + c * math.sin(t))
            bx, by = ou + size * 0.5 * (fx - ou) / size, ov + size * 0.5 * (fy - ov) / size
            fbox = (min(bx, fx) - 0.1, min(by, fy) - 0.1, max(bx, fx) + 0.1, max(by, fy) + 0.1)
            paint(canvas, fr, fbox, lambda u, v: D.capsule(u, v, bx, by, fx, fy, size * 0.2), rim)
            paint(canvas, fr, fbox, lambda u, v: D.capsule(u, v, bx, by, fx, fy, size * 0.2 - 0.02), hand_col)
