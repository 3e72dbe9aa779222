"""Identities of the synthetic faces: a frozen parameter set drawn deterministically from (seed, index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IDENTITY_TAG = 0x1D  # separates identity streams from nuisance and scene streams

# Six skin-tone groups, light to dark (Fitzpatrick-like); Identity.skin_tone indexes this.
SKIN_TONES = ((0.96, 0.84, 0.74), (0.91, 0.73, 0.59), (0.80, 0.60, 0.44),
              (0.65, 0.45, 0.30), (0.48, 0.32, 0.20), (0.33, 0.21, 0.13))
HAIR_COLORS = {"black": (0.08, 0.07, 0.07), "dark_brown": (0.22, 0.14, 0.08), "brown": (0.42, 0.27, 0.14),
               "auburn": (0.58, 0.24, 0.10), "blond": (0.86, 0.72, 0.42), "grey": (0.72, 0.72, 0.72)}
# P(hair colour | skin tone), rows follow SKIN_TONES, columns follow HAIR_COLORS
_HAIR_GIVEN_TONE = np.array([[.12, .2, .22, .14, .24, .08], [.18, .25, .22, .1, .17, .08],
                             [.35, .3, .17, .05, .05, .08], [.5, .3, .1, .02, .0, .08],
                             [.72, .18, .02, .0, .0, .08], [.8, .12, .0, .0, .0, .08]])
IRIS_COLORS = ((0.36, 0.2, 0.09), (0.14, 0.08, 0.04), (0.28, 0.5, 0.78),
               (0.3, 0.52, 0.3), (0.5, 0.56, 0.62), (0.52, 0.4, 0.18))
_IRIS_LIGHT, _IRIS_DARK = np.array([.25, .15, .25, .12, .1, .13]), np.array([.45, .45, .0, .0, .0, .1])
HAIR_STYLES = ("bald", "short", "fringe", "long", "curly")
_HAIR_STYLE_P = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
GLASSES = ("none", "round", "square")
_GLASSES_P = np.array([0.7, 0.15, 0.15])
FACIAL_HAIR = ("none", "moustache", "beard", "goatee")
_FACIAL_HAIR_P = np.array([0.64, 0.12, 0.14, 0.1])

# (low, high) of each continuous parameter, in face units (head half height = 1) or radians
RANGES = {
    "face_width": (0.64, 0.82), "face_height": (0.92, 1.08), "jaw": (0.05, 0.45),
    "eye_spacing": (0.27, 0.37), "eye_size": (0.115, 0.165), "eye_shape": (0.35, 0.7),
    "eye_tilt": (-0.15, 0.2), "eye_height": (-0.12, 0.02),
    "brow_thickness": (0.025, 0.065), "brow_angle": (-0.25, 0.25), "brow_height": (0.13, 0.22),
    "brow_length": (0.11, 0.17), "nose_length": (0.24, 0.38), "nose_width": (0.07, 0.13),
    "mouth_width": (0.15, 0.27), "mouth_thickness": (0.025, 0.06), "mouth_height": (0.52, 0.66),
    "hairline": (-0.72, -0.5), "hair_part": (-1.0, 1.0),
}


@dataclass(frozen=True)
class Identity:
    """One synthetic person. Lengths in face units (head half height = 1), angles in radians, colours RGB."""

    index: int
    face_width: float  # head half width
    face_height: float  # vertical stretch of the head
    jaw: float  # 0 round .. 0.45 narrow chin
    eye_spacing: float  # half distance between the eye centres
    eye_size: float  # eye half width
    eye_shape: float  # eye opening / width
    eye_tilt: float  # outer corners up when > 0
    eye_height: float  # v of the eye centres
    iris_color: tuple
    brow_thickness: float
    brow_angle: float  # inner ends down when > 0
    brow_height: float  # brow above the eye centre
    brow_length: float  # brow half length
    nose_length: float  # eyes to nose tip
    nose_width: float  # nostril half width
    mouth_width: float  # mouth half width
    mouth_thickness: float  # lower lip thickness
    mouth_height: float  # v of the mouth
    hairline: float  # v of the hairline at the middle (short, long and curly styles)
    hair_part: float  # -1..1, tilts the hairline (a side parting)
    lip_color: tuple
    skin_tone: int  # index into SKIN_TONES, 0 lightest .. 5 darkest
    skin_color: tuple
    hair_color_name: str  # key of HAIR_COLORS
    hair_color: tuple
    hair_style: str  # one of HAIR_STYLES
    glasses: str  # one of GLASSES
    glasses_color: tuple
    facial_hair: str  # one of FACIAL_HAIR
    earrings: bool
    hat: bool
    hat_color: tuple

    def attributes(self) -> dict:
        """The categorical attributes, e.g. for fairness breakdowns."""
        return {"skin_tone": self.skin_tone, "hair_style": self.hair_style, "hair_color": self.hair_color_name,
                "glasses": self.glasses, "facial_hair": self.facial_hair, "earrings": self.earrings,
                "hat": self.hat}


def _rgb(x) -> tuple:
    return tuple(float(c) for c in np.clip(x, 0.0, 1.0))


def sample_identity(seed: int, index: int, spread: float = 1.0) -> Identity:
    """The identity ``index`` of the population ``seed``; deterministic and random-access.

    ``spread`` in [0, 1] scales how far continuous parameters and colour jitters stray from the
    population mean (1 = full range, 0 = all share the mean geometry); categories are unchanged.

    >>> sample_identity(0, 3) == sample_identity(0, 3)
    True
    >>> sample_identity(0, 3).skin_tone in range(6)
    True
    """
    if not 0 <= spread <= 1:
        raise ValueError(f"spread={spread!r} must be in [0, 1]")
    rng = np.random.default_rng([seed, index, IDENTITY_TAG])
    u = rng.uniform(-1.0, 1.0, len(RANGES))  # fixed draw order: the same stream for every spread
    geo = {k: (lo + hi) / 2 + spread * ui * (hi - lo) / 2 for ui, (k, (lo, hi)) in zip(u, RANGES.items())}
    tone = int(rng.integers(len(SKIN_TONES)))
    hair_name = list(HAIR_COLORS)[rng.choice(len(HAIR_COLORS), p=_HAIR_GIVEN_TONE[tone])]
    dark = tone / (len(SKIN_TONES) - 1)
    iris_p = (1 - dark) * _IRIS_LIGHT + dark * _IRIS_DARK
    iris = IRIS_COLORS[rng.choice(len(IRIS_COLORS), p=iris_p / iris_p.sum())]
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=_HAIR_STYLE_P)]
    glasses = GLASSES[rng.choice(len(GLASSES), p=_GLASSES_P)]
    facial = FACIAL_HAIR[rng.choice(len(FACIAL_HAIR), p=_FACIAL_HAIR_P)]
    earrings, hat = bool(rng.uniform() < 0.15), bool(rng.uniform() < 0.08)
    jit = rng.normal(0.0, 1.0, (5, 3))  # colour jitters: skin, hair, iris, lips, glasses
    skin = np.array(SKIN_TONES[tone]) * (1 + spread * (0.05 * jit[0, 0] + 0.015 * jit[0]))
    lips = skin * np.array([0.9, 0.58, 0.6]) * (1 + spread * 0.06 * jit[3])
    hair = np.array(HAIR_COLORS[hair_name]) * (1 + spread * (0.12 * jit[1, 0] + 0.02 * jit[1]))  # mostly brightness
    return Identity(
        index=int(index), **{k: float(v) for k, v in geo.items()},
        iris_color=_rgb(np.array(iris) * (1 + spread * 0.1 * jit[2])), lip_color=_rgb(lips),
        skin_tone=tone, skin_color=_rgb(skin),
        hair_color_name=hair_name, hair_color=_rgb(hair),
        hair_style=style, glasses=glasses, glasses_color=_rgb(0.25 + 0.25 * jit[4] * spread),
        facial_hair=facial, earrings=earrings, hat=hat, hat_color=_rgb(rng.uniform(0.1, 0.9, 3)))
