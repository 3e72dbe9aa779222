"""dlib's 5 landmarks of one photo's face: a thin call to the one face-finding code (:class:`FaceFinder`).

Kept apart from :mod:`facekit.pretrained.face_chip` (which :mod:`facekit.pretrained.finding` builds on), so the
modules import in one direction: face_chip -> finding -> landmarks.
"""

from __future__ import annotations

from facekit.pretrained.face_chip import _dlib
from facekit.pretrained.finding import FaceFinder


def dlib_landmarks(image, *, upsample: int = 1, fallback: str = "center", predictor_path=None):
    """5 landmarks of the face nearest the image centre, from dlib's HOG detector and 5-point predictor.

    Args:
        image: RGB uint8 (H, W, 3) array or (3, H, W) tensor.
        upsample: times the detector upsamples the image (dlib's default for small faces: 1).
        fallback: when HOG finds no face: "center" runs the shape predictor on a centred square box
            of ``CENTER_BOX_FRACTION`` of the shorter side (LFW images are centred on the face),
            "none" returns None.
        predictor_path: the 5-point model; default: the one of ``face_recognition_models``.

    Returns:
        ``(landmarks, found)``: (5, 2) float64 x, y, and whether HOG found the face
        (``(None, False)`` with ``fallback="none"`` and no face).
    """
    _dlib()  # DlibNotInstalled, naming the pip package, before anything else
    finder = FaceFinder(("hog",), upsample=upsample, fallback=fallback, max_side=None, predictor_path=predictor_path)
    face = finder(image)
    return face.landmarks, face.found


__all__ = ["dlib_landmarks"]
