"""The drawing steps of :func:`facekit.data._face.draw_face`: behind the head, head, eyes, brows, nose,
mouth, front hair, hat, glasses, earrings (face units, as described there)."""

from __future__ import annotations

import math

import numpy as np

from facekit.data import _draw as D
from facekit.data._draw import F32, paint, paint_layers

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


class _Face:
    """What every drawing step of :func:`draw_face` shares: the canvas, the frame and the head's geometry."""

    def __init__(self, canvas, ident, nuis, cx: float, cy: float, scale: float):
        self.canvas, self.ident, self.nuis = canvas, ident, nuis
        self.fr = D.Frame(cx, cy, scale, math.radians(nuis.rotation))
        self.H = ident.face_height
        a = math.radians(nuis.yaw)
        self.sa, ca = math.sin(a), math.cos(a)
        self.hw = ident.face_width * (1 - 0.25 * (1 - ca))
        self.yaw = _Yaw(a, ident.face_width * 1.02)
        self.skin = np.asarray(ident.skin_color, F32)
        self.hair = np.asarray(ident.hair_color, F32)
        self.style = ident.hair_style
        self.eye_v = ident.eye_height * self.H
        self.mouth_v = ident.mouth_height * self.H


def _behind_head(f: _Face, body: bool) -> list:
    """Behind the head: curly or long hair, shoulders, neck, ears; returns each ear's (u, v, size)."""
    canvas, fr, ident, nuis, H, sa, hw, skin, hair, style = (f.canvas, f.fr, f.ident, f.nuis, f.H, f.sa, f.hw,
                                                            f.skin, f.hair, f.style)
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
    return ears


def _head(f: _Face) -> None:
    """The head with a soft darker rim, then beard or goatee."""
    hw, H, skin, hair, yaw, mouth_v = f.hw, f.H, f.skin, f.hair, f.yaw, f.mouth_v
    head = _head_sdf(hw, H, f.ident.jaw)
    fh = f.ident.facial_hair

    def head_layers(u, v):
        d = head(u, v)
        yield d, skin * F32(0.82), 1.0, 0.0
        yield d + F32(0.05), skin, 1.0, 0.12
        if fh == "beard":
            t = u * F32(1 / hw)
            yield np.maximum(d - F32(0.03), F32(mouth_v - 0.13) * (1 - t * t) - v), hair, 0.95, 0.0
        elif fh == "goatee":
            yield np.maximum(D.ellipse(u, v, yaw(0)[0], mouth_v + 0.2, 0.13, 0.17), d - F32(0.03)), hair, 0.95, 0.0
    paint_layers(f.canvas, f.fr, (-hw - 0.02, -H - 0.02, hw + 0.02, H + 0.02), head_layers)


def _eyes(f: _Face) -> list:
    """Eyes: white, iris, pupil (clipped by the white), upper lash line; returns each eye's u."""
    ident, sa, eye_v = f.ident, f.sa, f.eye_v
    eyes = []
    lash = f.hair * F32(0.35)
    iris = np.asarray(ident.iris_color, F32)
    openness = ident.eye_shape * f.nuis.eye_open
    for side in (-1, 1):
        eu, k = f.yaw(side * ident.eye_spacing)
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
        paint_layers(f.canvas, f.fr, (eu - ew - 0.04, eye_v - ew - 0.04, eu + ew + 0.04, eye_v + ew + 0.04),
                     eye_layers)
    return eyes


def _brows(f: _Face) -> float:
    """The brows; returns their height ``v``."""
    ident, nuis = f.ident, f.nuis
    brow_col = f.hair * F32(0.8) if f.style != "bald" else f.skin * F32(0.45)
    bv = f.eye_v - ident.brow_height - BROW_RAISE_MAX * nuis.brow_raise
    brows = []
    for side in (-1, 1):
        bu, k = f.yaw(side * (ident.eye_spacing + 0.01))
        brows.append((bu, ident.brow_length * k, -side * (ident.brow_angle - 0.1 * nuis.brow_raise)))
    bt = ident.brow_thickness / 2
    paint(f.canvas, f.fr, (brows[0][0] - brows[0][1] - 0.05, bv - 0.1, brows[1][0] + brows[1][1] + 0.05, bv + 0.1),
          lambda u, v: np.minimum(*(D.stroke(u, v, bu, bv, bw, 0.03, bt, 0.5, ang) for bu, bw, ang in brows)),
          brow_col)
    return bv


def _nose(f: _Face) -> tuple[float, float]:
    """The nose: side shadow and nostril line; returns the tip's (u, v)."""
    ident, skin, eye_v = f.ident, f.skin, f.eye_v
    tip_u, k = f.yaw(0.0, depth=1.2)
    tip_v = (ident.eye_height + ident.nose_length) * f.H
    nw = ident.nose_width * k
    nside = -1.0 if f.sa >= 0 else 1.0
    su, top_u = tip_u + nside * nw * 0.8, f.yaw(0.0, 1.05)[0] + nside * 0.05

    def nose_layers(u, v):
        yield D.capsule(u, v, top_u, eye_v + 0.08, su, tip_v - 0.05, 0.012), skin * F32(0.65), 0.6, 0.03
        yield D.stroke(u, v, tip_u, tip_v + 0.01, nw, -0.04, 0.014, 0.4), skin * F32(0.55), 1.0, 0.0
    paint_layers(f.canvas, f.fr, (min(su, top_u, tip_u - nw) - 0.05, eye_v, max(su, top_u, tip_u + nw) + 0.05,
                                  tip_v + 0.06), nose_layers)
    return tip_u, tip_v


def _mouth(f: _Face) -> tuple[float, float, float]:
    """Lips, open mouth with teeth, the line between the lips, moustache; returns the corners' u and the bend."""
    ident, nuis, hair, mouth_v = f.ident, f.nuis, f.hair, f.mouth_v
    fh = ident.facial_hair
    ml, _ = f.yaw(-ident.mouth_width)
    mr, _ = f.yaw(ident.mouth_width)
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
    paint_layers(f.canvas, f.fr, (mu - mw * 1.1 - 0.05, mouth_v - th - op - 0.12, mu + mw * 1.1 + 0.05,
                                  mouth_v + th + op + 0.1), mouth_layers)
    return ml, mr, bend


def _front_hair(f: _Face, bv: float) -> None:
    """The hair over the forehead, shaped by the style (none when bald)."""
    ident, style, H, hw = f.ident, f.style, f.H, f.hw
    if style == "bald":
        return
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
    paint(f.canvas, f.fr, (-hw - vol, -H - vol - 0.06, hw + vol, 0.7 * H), cap, f.hair)


def _hat(f: _Face) -> None:
    """A hat with its band, when the identity wears one."""
    if not f.ident.hat:
        return
    H, hw = f.H, f.hw
    hc = np.asarray(f.ident.hat_color, F32)
    paint(f.canvas, f.fr, (-hw - 0.3, -1.5 * H, hw + 0.3, -0.5 * H),
          lambda u, v: np.minimum(D.ellipse(u, v, 0.0, -0.68 * H, hw + 0.22, 0.08),
                                  D.rbox(u, v, 0.0, -0.98 * H, hw * 0.92, 0.33 * H, 0.15)), hc)
    paint(f.canvas, f.fr, (-hw, -0.9 * H, hw, -0.6 * H),
          lambda u, v: D.rbox(u, v, 0.0, -0.78 * H, hw * 0.92, 0.04, 0.0), hc * F32(0.6))


def _glasses(f: _Face, eyes: list) -> None:
    """Round or square glasses over the eyes: tinted lenses, rims and the bridge."""
    ident, sa, eye_v = f.ident, f.sa, f.eye_v
    if ident.glasses == "none":
        return
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
    paint(f.canvas, f.fr, gbox, both, gc * 0.3 + 0.5, 0.18)
    mid, half = (eyes[0] + eyes[1]) / 2, (eyes[1] - eyes[0]) / 2 - gr * 0.8  # the bridge between the lenses
    paint(f.canvas, f.fr, gbox, lambda u, v: np.minimum(
        np.abs(both(u, v)) - F32(0.016), D.stroke(u, v, mid, eye_v - 0.06, half, -0.02, 0.014)), gc)


def _earrings(f: _Face, ears: list) -> None:
    """A gold earring on each ear that faces the viewer enough."""
    if not f.ident.earrings:
        return
    for eu, ev, k in ears:
        if k > 0.5:
            paint(f.canvas, f.fr, (eu - 0.08, ev + 0.1, eu + 0.08, ev + 0.3),
                  lambda u, v, eu=eu, ev=ev: D.circle(u, v, eu, ev + 0.2, 0.045), np.array([0.9, 0.75, 0.2], F32))
