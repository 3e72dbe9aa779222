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
from facekit.data._draw import F32, paint, paint_layers

BOX_TOP = -0.82  # top of the face box (forehead), as a fraction of face_height
EYE_WHITE = np.array([0.96, 0.96, 0.93], F32)
DARK = np.array([0.08, 0.06, 0.06], F32)
MOUTH_INSIDE = np.array([0.3, 0.06, 0.06], F32)
SMILE_DEPTH = 0.07  # how far the mouth corners rise at smile=1, face units
MOUTH_OPEN_MAX = 0.09  # mouth opening at mouth_open=1, face units
BROW_RAISE_MAX = 0.06  # brow lift at brow_raise=1, face units


class _Yaw:
    """Maps a frontal u to its turned position and horizontal foreshortening."""

    def __init__(self, yaw_rad: float, radius: float):
        self.a, self.r = yaw_rad, radius

    def __call__(self, u: float, depth: float = 1.0):
        phi = math.asin(max(-0.98, min(0.98, u / self.r)))
        u2 = self.r * math.sin(phi + self.a) + (depth - 1.0) * self.r * math.sin(self.a)
        k = max(math.cos(phi + self.a) / math.cos(phi), 0.15)
        return u2, k


def _head_sdf(hw, H, jaw):
    def sdf(u, v):
        t = np.minimum(np.maximum(v * F32(1 / H), 0), 1)
        rx = F32(hw) * (1 - F32(jaw) * t * t)
        k0 = np.hypot(u / rx, v * F32(1 / H))
        k1 = np.hypot(u / (rx * rx), v * F32(1 / H**2))
        return k0 * (k0 - 1) / (k1 + F32(1e-6))
    return sdf


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
    fr = D.Frame(cx, cy, scale, math.radians(nuis.rotation))
    H = ident.face_height
    a = math.radians(nuis.yaw)
    sa, ca = math.sin(a), math.cos(a)
    hw = ident.face_width * (1 - 0.25 * (1 - ca))
    yaw = _Yaw(a, ident.face_width * 1.02)
    skin = np.asarray(ident.skin_color, F32)
    hair = np.asarray(ident.hair_color, F32)
    style = ident.hair_style
    head = _head_sdf(hw, H, ident.jaw)
    head_box = (-hw - 0.02, -H - 0.02, hw + 0.02, H + 0.02)

    # ---- behind the head: long/curly hair, shoulders, neck, ears ----
    if style == "curly":
        r0, cyh = hw + 0.3, -0.3 * H
        def afro(u, v):
            x, y = u + F32(0.1 * sa), v - F32(cyh)
            return np.hypot(x, y) - F32(r0) - F32(0.035) * np.sin(F32(9) * np.arctan2(y, x))
        paint(canvas, fr, (-r0 - 0.15, cyh - r0 - 0.05, r0 + 0.15, cyh + r0 + 0.05), afro, hair)
    if body:
        cc = np.asarray(nuis.clothing_color, F32)
        paint(canvas, fr, (-1.6, 1.25 * H, 1.6, 2.6 * H),
              lambda u, v: D.ellipse(u, v, -0.15 * sa, 2.0 * H, 1.45, 0.7), cc)
    if style == "long":
        lx = 0.05 * sa
        paint(canvas, fr, (-hw - 0.3, -H - 0.15, hw + 0.3, 1.75 * H),
              lambda u, v: np.minimum(D.ellipse(u, v, lx, -0.05 * H, hw + 0.2, H + 0.1),
                                      D.rbox(u, v, lx, 0.85 * H, hw + 0.2 - 0.04 * v, 0.85 * H, 0.2)), hair)
    if body:
        nx = -0.1 * sa
        paint(canvas, fr, (-0.5, 0.4 * H, 0.5, 1.8 * H),
              lambda u, v: D.rbox(u, v, nx, 1.1 * H, 0.36 * hw / 0.73, 0.6 * H, 0.1), skin * F32(0.9))
        paint(canvas, fr, (-hw, 0.7 * H, hw, 1.25 * H),
              lambda u, v: D.ellipse(u, v, nx, 0.98 * H, 0.5 * hw, 0.14), skin * F32(0.6), 0.6, soft=0.08)
    ear_v = (ident.eye_height + 0.12) * H
    ears = []
    for side in (-1, 1):
        k = min(max(1 - 1.4 * side * sa, 0.15), 1.6)
        eu = side * (hw - 0.03) - 0.12 * sa
        ears.append((eu + side * 0.04 * k, ear_v, k))
        paint(canvas, fr, (eu - 0.2, ear_v - 0.25, eu + 0.2, ear_v + 0.25),
              lambda u, v: D.ellipse(u, v, eu + side * 0.02 * k, ear_v, 0.1 * k, 0.17), skin * F32(0.88))

    # ---- head with a soft darker rim, then beard or goatee ----
    mouth_v = ident.mouth_height * H
    fh = ident.facial_hair

    def head_layers(u, v):
        d = head(u, v)
        yield d, skin * F32(0.82), 1.0, 0.0
        yield d + F32(0.05), skin, 1.0, 0.12
        if fh == "beard":
            t = u * F32(1 / hw)
            yield np.maximum(d - F32(0.03), F32(mouth_v - 0.13) * (1 - t * t) - v), hair, 0.95, 0.0
        elif fh == "goatee":
            yield np.maximum(D.ellipse(u, v, yaw(0)[0], mouth_v + 0.2, 0.13, 0.17), d - F32(0.03)), hair, 0.95, 0.0
    paint_layers(canvas, fr, head_box, head_layers)

    # ---- eyes: white, iris, pupil (clipped by the white), upper lash line ----
    eye_v = ident.eye_height * H
    eyes = []
    lash = hair * F32(0.35)
    iris = np.asarray(ident.iris_color, F32)
    openness = ident.eye_shape * nuis.eye_open
    for side in (-1, 1):
        eu, k = yaw(side * ident.eye_spacing)
        eyes.append(eu)
        ew, eh = ident.eye_size * k, ident.eye_size * openness
        ang = -side * ident.eye_tilt
        ir, gx = ident.eye_size * 0.55 * k ** 0.5, eu + 0.25 * ew * sa

        def eye_layers(u, v, eu=eu, ew=ew, eh=eh, ang=ang, ir=ir, gx=gx):
            white = D.lens(u, v, eu, eye_v, ew, eh, 0.8 * eh, 0.0, ang)
            yield white, EYE_WHITE, 1.0, 0.0
            c = D.circle(u, v, gx, eye_v, ir)
            yield np.maximum(c, white), iris, 1.0, 0.0
            yield np.maximum(c + F32(ir - 0.45 * ident.eye_size * 0.55), white), DARK, 1.0, 0.0
            yield D.stroke(u, v, eu, eye_v - eh, ew * 1.05, eh, 0.016, 0.3, ang), lash, 1.0, 0.0
        paint_layers(canvas, fr, (eu - ew - 0.04, eye_v - ew - 0.04, eu + ew + 0.04, eye_v + ew + 0.04), eye_layers)
    # ---- brows ----
    brow_col = hair * F32(0.8) if style != "bald" else skin * F32(0.45)
    bv = eye_v - ident.brow_height - BROW_RAISE_MAX * nuis.brow_raise
    brows = []
    for side in (-1, 1):
        bu, k = yaw(side * (ident.eye_spacing + 0.01))
        brows.append((bu, ident.brow_length * k, -side * (ident.brow_angle - 0.1 * nuis.brow_raise)))
    bt = ident.brow_thickness / 2
    paint(canvas, fr, (brows[0][0] - brows[0][1] - 0.05, bv - 0.1, brows[1][0] + brows[1][1] + 0.05, bv + 0.1),
          lambda u, v: np.minimum(*(D.stroke(u, v, bu, bv, bw, 0.03, bt, 0.5, ang) for bu, bw, ang in brows)),
          brow_col)
    # ---- nose: side shadow and nostril line ----
    tip_u, k = yaw(0.0, depth=1.2)
    tip_v = (ident.eye_height + ident.nose_length) * H
    nw = ident.nose_width * k
    nside = -1.0 if sa >= 0 else 1.0
    su, top_u = tip_u + nside * nw * 0.8, yaw(0.0, 1.05)[0] + nside * 0.05

    def nose_layers(u, v):
        yield D.capsule(u, v, top_u, eye_v + 0.08, su, tip_v - 0.05, 0.012), skin * F32(0.65), 0.6, 0.03
        yield D.stroke(u, v, tip_u, tip_v + 0.01, nw, -0.04, 0.014, 0.4), skin * F32(0.55), 1.0, 0.0
    paint_layers(canvas, fr, (min(su, top_u, tip_u - nw) - 0.05, eye_v, max(su, top_u, tip_u + nw) + 0.05,
                              tip_v + 0.06), nose_layers)
    # ---- mouth: lips, open mouth with teeth, the line between the lips, moustache ----
    ml, _ = yaw(-ident.mouth_width)
    mr, _ = yaw(ident.mouth_width)
    mu, mw = (ml + mr) / 2, (mr - ml) / 2
    bend = -SMILE_DEPTH * nuis.smile
    op = MOUTH_OPEN_MAX * nuis.mouth_open
    th = ident.mouth_thickness
    lip = np.asarray(ident.lip_color, F32)

    def mouth_layers(u, v):
        yield D.lens(u, v, mu, mouth_v, mw, 0.8 * th + op / 2, th + op / 2, bend), lip, 1.0, 0.0
        if op > 0.01:
            inner = D.lens(u, v, mu, mouth_v, mw * 0.85, op / 2, op / 2, bend)
            yield inner, MOUTH_INSIDE, 1.0, 0.0
            yield np.maximum(inner, v - F32(mouth_v - op * 0.1)), EYE_WHITE * F32(0.95), 1.0, 0.0
        yield D.stroke(u, v, mu, mouth_v, mw, bend, 0.008, 0.5), lip * F32(0.5), 1.0, 0.0
        if fh != "none":
            yield D.stroke(u, v, mu, mouth_v - 0.8 * th - 0.045, mw * 1.1, 0.05, 0.035, 0.7), hair, 1.0, 0.0
    paint_layers(canvas, fr, (mu - mw * 1.1 - 0.05, mouth_v - th - op - 0.12, mu + mw * 1.1 + 0.05,
                              mouth_v + th + op + 0.1), mouth_layers)
    # ---- front hair, hat ----
    if style != "bald":
        vol = 0.06 if style != "curly" else 0.1
        brow_top = bv - ident.brow_thickness
        hl, part = ident.hairline * H, 0.12 * ident.hair_part
        if style == "short":
            line = lambda t: F32(hl) + F32(0.5) * t * t + F32(part) * t
        elif style == "fringe":
            line = lambda t: F32(brow_top - 0.03) + F32(0.25) * t ** 4 + F32(0.02) * np.sin(t * F32(40))
        elif style == "long":
            line = lambda t: F32(hl) + F32(1.15) * t * t + F32(part) * t
        else:
            line = lambda t: F32(hl + 0.05) + F32(0.45) * t * t + F32(0.03) * np.sin(t * F32(25))
        cap = lambda u, v: np.maximum(D.ellipse(u, v, 0.0, -0.06 * H, hw + vol, H + vol),
                                      (v - line(u * F32(1 / hw))) * F32(0.7))
        paint(canvas, fr, (-hw - vol, -H - vol - 0.06, hw + vol, 0.7 * H), cap, hair)
    if ident.hat:
        hc = np.asarray(ident.hat_color, F32)
        paint(canvas, fr, (-hw - 0.3, -1.5 * H, hw + 0.3, -0.5 * H),
              lambda u, v: np.minimum(D.ellipse(u, v, 0.0, -0.68 * H, hw + 0.22, 0.08),
                                      D.rbox(u, v, 0.0, -0.98 * H, hw * 0.92, 0.33 * H, 0.15)), hc)
        paint(canvas, fr, (-hw, -0.9 * H, hw, -0.6 * H),
              lambda u, v: D.rbox(u, v, 0.0, -0.78 * H, hw * 0.92, 0.04, 0.0), hc * F32(0.6))
    # ---- glasses ----
    if ident.glasses != "none":
        gc = np.asarray(ident.glasses_color, F32)
        gr = ident.eye_size * 1.45
        lens_sdf = []
        for eu in eyes:
            if ident.glasses == "round":
                lens_sdf.append(lambda u, v, eu=eu: D.ellipse(u, v, eu, eye_v, gr * (1 - 0.2 * abs(sa)), gr * 0.85))
            else:
                lens_sdf.append(lambda u, v, eu=eu: D.rbox(u, v, eu, eye_v, gr * (1 - 0.2 * abs(sa)), gr * 0.7, 0.04))
        both = lambda u, v: np.minimum(lens_sdf[0](u, v), lens_sdf[1](u, v))
        gbox = (eyes[0] - gr - 0.05, eye_v - gr - 0.05, eyes[1] + gr + 0.05, eye_v + gr + 0.05)
        paint(canvas, fr, gbox, both, gc * 0.3 + 0.5, 0.18)
        mid, half = (eyes[0] + eyes[1]) / 2, (eyes[1] - eyes[0]) / 2 - gr * 0.8  # the bridge between the lenses
        paint(canvas, fr, gbox, lambda u, v: np.minimum(
            np.abs(both(u, v)) - F32(0.016), D.stroke(u, v, mid, eye_v - 0.06, half, -0.02, 0.014)), gc)
    if ident.earrings:
        for eu, ev, k in ears:
            if k > 0.5:
                paint(canvas, fr, (eu - 0.08, ev + 0.1, eu + 0.08, ev + 0.3),
                      lambda u, v, eu=eu, ev=ev: D.circle(u, v, eu, ev + 0.2, 0.045), np.array([0.9, 0.75, 0.2], F32))
    # ---- occluder ----
    _occluder(canvas, fr, nuis, skin, hw, H)

    lm_u = np.array([eyes[0], eyes[1], tip_u, ml, mr])
    lm_v = np.array([eye_v, eye_v, tip_v, mouth_v + bend, mouth_v + bend])
    lx, ly = fr.to_pixels(lm_u, lm_v)
    out = head_outline(hw, H, ident.jaw)
    ox, oy = fr.to_pixels(out[:, 0], out[:, 1])
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
