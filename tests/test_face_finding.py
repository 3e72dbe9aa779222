"""The dlib and FaceNet photo pipelines on photos that are not LFW: content-keyed caches, faceless photos,
the choice of face, large photos, bounded memory, empty and bad input, and the detector chain.

Real-face tests use two LFW photos from ../shared/datasets and skip with a reason when LFW or dlib is absent.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from PIL import Image

from facekit.config import ConfigError
from facekit.data.images import ImageReadError
from facekit.data.registry import REPO_ROOT
from facekit.pretrained import descriptors as dd
from facekit.pretrained.descriptors import LandmarkSettings, find_faces, image_descriptors, image_landmarks
from facekit.pretrained.finding import FaceFinder, dlib_points_from_five

pytestmark = pytest.mark.usefixtures("one_thread")

LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw"
ANN, BOB = LFW / "Aaron_Eckhart/Aaron_Eckhart_0001.jpg", LFW / "Colin_Powell/Colin_Powell_0001.jpg"
HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models")
HAS_MTCNN = importlib.util.find_spec("facenet_pytorch") is not None
needs_faces = pytest.mark.skipif(not (HAS_DLIB and ANN.is_file() and BOB.is_file()),
                                 reason=f"needs dlib, face_recognition_models and real LFW at {LFW}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _blank(path, size=(200, 160)):
    Image.new("RGB", size, (128, 128, 128)).save(path)
    return path


# ---------------------------------------------------------------- validation when built, not when used
@pytest.mark.parametrize("kwargs, text", [
    ({"fallback": "centre"}, "fallback='centre' is not accepted; use one of 'center', 'none'"),
    ({"select": "middle"}, "select='middle' is not accepted; use one of 'center', 'confident', 'largest'"),
    ({"detectors": ("hog", "haar")}, "distinct names from hog, cnn, mtcnn"),
    ({"detectors": ()}, "non-empty sequence"),
    ({"upsample": -1}, "upsample=-1 must be an integer >= 0"),
    ({"max_side": 8}, "max_side=8 must be an integer >= 32"),
])
def test_settings_are_checked_when_built(kwargs, text):
    with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace(")", r"\)")):
        LandmarkSettings(**kwargs)


def test_create_detector_names_the_accepted_keyword():
    from facekit.detection.baselines import create_detector

    with pytest.raises(ConfigError, match=r"unknown keyword 'minNeighbors' \(did you mean 'min_neighbors'\?\); "
                                          r"accepted: cascade, scale_factor, min_neighbors, min_size"):
        create_detector("haar", minNeighbors=5)
    with pytest.raises(ConfigError, match=r"'upsampel' \(did you mean 'upsample'\?\)"):
        create_detector("dlib_hog", upsampel=2)


# ---------------------------------------------------------------- empty and missing input: the same in both pipelines
def test_empty_inputs_work_in_both_pipelines(cache):
    from facekit.pretrained.crops import image_embeddings

    desc, found = image_descriptors([])
    assert desc.shape == (0, 128) and found.shape == (0,)
    points, found = image_landmarks([])
    assert points.shape == (0, 5, 2) and found.shape == (0,)
    assert find_faces([]).counts() == {s: 0 for s in ("hog", "cnn", "mtcnn", "center", "none")}
    emb, found, num = image_embeddings([])
    assert emb.shape == (0, 512) and found.shape == (0,) and num.shape == (0,)
    assert not cache.exists()  # nothing to cache, nothing written


def test_a_missing_file_raises_image_read_error_in_both_pipelines(tmp_path, cache):
    from facekit.pretrained.crops import detect_faces, image_embeddings

    missing = tmp_path / "nobody.jpg"
    for call in (lambda: image_descriptors([missing]), lambda: image_landmarks([missing]),
                 lambda: image_embeddings([missing]), lambda: detect_faces([missing])):
        with pytest.raises(ImageReadError, match=r"cannot read image .*nobody\.jpg: no such file"):
            call()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match=r"broken\.jpg: not a recognised image format"):
        image_landmarks([broken])


# ---------------------------------------------------------------- the stale-cache bug: keys are the content
@needs_faces
def test_a_photo_replaced_under_the_same_name_gets_the_new_persons_descriptor(tmp_path, cache):
    photo = tmp_path / "x.jpg"
    shutil.copy(ANN, photo)
    first, _ = image_descriptors([photo])
    shutil.copy(BOB, photo)  # another person, same folder and file name
    again, _ = image_descriptors([photo])
    uncached, _ = image_descriptors([BOB], cache=False)
    np.testing.assert_allclose(again, uncached, atol=1e-6)
    assert np.linalg.norm(again - first) > 0.3  # two people: far apart (0.6 is dlib's same-person distance)
    points_now, _ = image_landmarks([photo])
    points_bob, _ = image_landmarks([BOB], cache=False)
    np.testing.assert_array_equal(points_now, points_bob)
    moved = tmp_path / "moved" / "y.jpg"  # the same bytes elsewhere: served from the cache
    moved.parent.mkdir()
    shutil.copy(BOB, moved)
    monkey_backend = {"torch": lambda *a: pytest.fail("the content-keyed cache was not used")}
    saved = dict(dd.BACKENDS)
    dd.BACKENDS.update(monkey_backend)
    try:
        np.testing.assert_array_equal(image_descriptors([moved])[0], again)
    finally:
        dd.BACKENDS.update(saved)
    assert not list(REPO_ROOT.glob("**/landmarks-v2-*.npz"))


# ---------------------------------------------------------------- faceless photos with fallback="none"
@needs_faces
def test_fallback_none_skips_faceless_photos_and_caches_a_mix(tmp_path, cache):
    blank = _blank(tmp_path / "blank.jpg")
    settings = LandmarkSettings(fallback="none")
    desc, found = image_descriptors([ANN, blank, BOB], settings=settings)
    assert found.tolist() == [True, False, True]
    assert np.isfinite(desc[[0, 2]]).all() and np.isnan(desc[1]).all()
    finding = find_faces([ANN, blank, BOB], settings)
    assert finding.stages.tolist() == ["hog", "none", "hog"] and finding.usable.tolist() == [True, False, True]
    again, found_again = image_descriptors([blank, ANN], settings=settings)  # both from the cache
    np.testing.assert_array_equal(again[1], desc[0])
    assert np.isnan(again[0]).all() and found_again.tolist() == [False, True]
    centred, found_c = image_descriptors([blank])  # the default fallback: a centred box
    assert found_c.tolist() == [False] and np.isfinite(centred).all()
    assert find_faces([blank]).stages.tolist() == ["center"]


# ---------------------------------------------------------------- the choice of face
def _two_faces(tmp_path):
    """A 600x300 photo: Bob small near the centre, Ann large at the left edge."""
    ann = Image.open(ANN).convert("RGB").crop((60, 60, 190, 190)).resize((260, 260))
    bob = Image.open(BOB).convert("RGB").crop((60, 60, 190, 190))
    canvas = Image.new("RGB", (600, 300), (90, 90, 90))
    canvas.paste(ann, (5, 20))
    canvas.paste(bob, (300, 85))
    path = tmp_path / "two.jpg"
    canvas.save(path, quality=95)
    return path


@needs_faces
def test_face_choice_is_selectable_in_the_dlib_pipeline(tmp_path, cache):
    photo = _two_faces(tmp_path)
    image = np.asarray(Image.open(photo))
    centre = FaceFinder(select="center")(image)
    largest = FaceFinder(select="largest")(image)
    assert centre.num_faces == largest.num_faces == 2
    assert centre.landmarks[:, 0].mean() > 300 > largest.landmarks[:, 0].mean()  # Bob right of 300, Ann left
    d_centre, _ = image_descriptors([photo], settings=LandmarkSettings(select="center"))
    d_largest, _ = image_descriptors([photo], settings=LandmarkSettings(select="largest"))
    d_ann, _ = image_descriptors([ANN])
    d_bob, _ = image_descriptors([BOB])
    assert np.linalg.norm(d_largest - d_ann) < 0.5 < np.linalg.norm(d_largest - d_bob)
    assert np.linalg.norm(d_centre - d_bob) < 0.5 < np.linalg.norm(d_centre - d_ann)


# ---------------------------------------------------------------- large photos: detected on a smaller copy
@needs_faces
def test_large_photos_are_detected_on_a_copy_and_mapped_back(monkeypatch):
    big = np.asarray(Image.open(ANN).convert("RGB").resize((1500, 1500), Image.BICUBIC))
    seen = []
    finder = FaceFinder(max_side=500)
    real = finder._detect
    monkeypatch.setattr(finder, "_detect", lambda stage, img: (seen.append(img.shape), real(stage, img))[1])
    small = finder(big)
    full = FaceFinder(max_side=None)(big)
    assert seen == [(500, 500, 3)]
    assert small.stage == full.stage == "hog"
    eye_gap = np.linalg.norm(full.landmarks[0] - full.landmarks[2])
    assert np.abs(small.landmarks - full.landmarks).max() < 0.1 * eye_gap  # the same face, at full resolution


# ---------------------------------------------------------------- bounded memory and progress
@needs_faces
def test_descriptors_stream_in_bounded_blocks_with_a_progress_bar(tmp_path, cache, monkeypatch, capsys):
    photos = []
    for i in range(7):  # seven distinct files (a pixel differs), all Ann
        img = np.array(Image.open(ANN).convert("RGB"))
        img[0, 0] = i
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        photos.append(tmp_path / f"{i}.png")
    blocks = []

    def recorder(model, batch_size, device):
        def run(chips):
            blocks.append(len(chips))
            return np.zeros((len(chips), 128), np.float32)
        return run

    monkeypatch.setitem(dd.BACKENDS, "torch", recorder)
    monkeypatch.setattr(dd, "BLOCK_BATCHES", 1)
    desc, _ = image_descriptors(photos, batch_size=3, progress=True)
    assert blocks == [3, 3, 1] and desc.shape == (7, 128)
    assert "descriptors" in capsys.readouterr().err


# ---------------------------------------------------------------- the detector chain
def test_dlib_points_from_arcface_five_points_follow_a_similarity():
    from facekit.detection.alignment import ARCFACE_TEMPLATE

    arc = ARCFACE_TEMPLATE.numpy()
    angle, scale, shift = 0.3, 2.5, np.array([40.0, -7.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = dlib_points_from_five(arc @ rot.T + shift)
    np.testing.assert_allclose(moved, dlib_points_from_five(arc) @ rot.T + shift, atol=1e-9)
    with pytest.raises(ValueError, match=r"expected \(5, 2\) finite points"):
        dlib_points_from_five(np.zeros((4, 2)))


@needs_faces
def test_the_chain_records_which_stage_found_the_face(tmp_path, monkeypatch):
    finder = FaceFinder(("hog", "mtcnn"), fallback="none")
    image = np.asarray(Image.open(ANN).convert("RGB"))
    assert finder(image).stage == "hog"  # the first detector that finds it wins
    assert finder(np.full((120, 120, 3), 128, np.uint8)).stage == "none"
    if not HAS_MTCNN:
        pytest.skip("facenet-pytorch is not installed: the MTCNN stage is not run")
    real = finder._detect
    monkeypatch.setattr(finder, "_detect", lambda stage, img: (np.zeros((0, 4)), np.zeros(0), None)
                        if stage == "hog" else real(stage, img))  # HOG misses: MTCNN's turn
    found = finder(image)
    reference = FaceFinder(("hog",))(image).landmarks
    assert found.stage == "mtcnn" and found.num_faces >= 1
    eye_gap = np.linalg.norm(reference[0] - reference[2])
    assert np.abs(found.landmarks - reference).max() < 0.2 * eye_gap  # MTCNN's points in dlib's order


@pytest.mark.parametrize("module", ["facekit.pretrained.finding", "facekit.pretrained.keyed_cache",
                                    "facekit.detection.baselines", "facekit.data.lfw"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.skipif(not HAS_MTCNN, reason="facenet-pytorch is not installed (MTCNN)")
def test_facenet_embeddings_stream_in_bounded_blocks(tmp_path, cache, monkeypatch, capsys):
    import torch

    from facekit.pretrained import crops

    photos = [_blank(tmp_path / f"{i}.png", size=(180 + i, 180)) for i in range(5)]  # five distinct files
    sizes = []

    class Recorder(torch.nn.Module):
        def forward(self, x):  # (b, 3, 160, 160) -> (b, 512)
            sizes.append(len(x))
            return torch.zeros(len(x), 512)

    monkeypatch.setattr(crops, "BLOCK_BATCHES", 1)
    emb, found, num = crops.image_embeddings(photos, model=Recorder(), batch_size=2, progress=True)
    assert sizes == [2, 2, 1] and emb.shape == (5, 512)
    assert not found.any() and (num == 0).all()  # blank photos: no face, the centred square
    assert "FaceNet embeddings" in capsys.readouterr().err
