"""facekit.pretrained: dlib's .dat reader, the torch ResNet, the face chips and the descriptor pipeline.

The reader is checked against a small writer of dlib's format (the oracle, below) and on the real
``dlib_face_recognition_resnet_model_v1.dat``; the model and chips against dlib itself on real LFW
images. Tests that need dlib, the model files or LFW are skipped, with the reason, when absent.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import facekit.pretrained as fp
from facekit.data.registry import REPO_ROOT
from facekit.pretrained.dlib_dat import DlibFormatError, read_dlib_net
from facekit.pretrained.dlib_resnet import DlibFaceResNet, add_padded, expected_layer_kinds, state_dict_from_dlib

LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw"
LFW_IMAGES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg",
              "Laura_Bush/Laura_Bush_0024.jpg", "Yao_Ming/Yao_Ming_0005.jpg"]
HAS_DLIB = importlib.util.find_spec("dlib") is not None


def _model_file(name: str) -> Path:
    try:
        path = fp.dlib_model_path(name)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="dlib is not installed (pip install dlib-bin)")


# ---------------------------------------------------------------- a writer of dlib's format: the oracle
def w_int(v: int) -> bytes:
    mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def w_str(s: str) -> bytes:
    return w_int(len(s)) + s.encode()


def w_float(x: float) -> bytes:
    mantissa, exponent = float(x).as_integer_ratio()  # exact: x = mantissa / 2**k
    return w_int(mantissa) + w_int(-int(math.log2(exponent)))


def w_tensor(a: np.ndarray) -> bytes:
    shape = (list(a.shape) + [1, 1, 1, 1])[:4]
    return w_int(2) + b"".join(map(w_int, shape)) + np.asarray(a, "<f4").tobytes()


def w_alias(*shape) -> bytes:
    return w_int(1) + b"".join(w_int(d) for d in (list(shape) + [1, 1, 1])[:4])


def w_state() -> bytes:  # setup_called, gradient_input_is_stale, disabled, then 3 empty tensors
    return b"100" + w_tensor(np.zeros((0, 0, 0, 0))) * 3


def tiny_fc_net(fc_w: np.ndarray) -> bytes:
    """loss_metric<fc_no_bias<N, relu<input_rgb_image_sized<4>>>> with a tag between fc and relu."""
    n_in, n_out = fc_w.shape
    out = w_int(1) + w_str("loss_metric_2") + w_float(0.25) + w_float(-1.5)
    out += w_int(2) + w_int(1) + w_int(3)  # fc's add_layer, a tag, relu's base add_layer (around the input)
    out += w_str("input_rgb_image_sized") + w_float(1.0) + w_float(2.0) + w_float(3.0) + w_int(4) + w_int(4)
    out += w_str("relu_") + w_state() + w_int(1)  # + sample_expansion_factor (version 3)
    out += w_str("fc_2") + w_int(n_out) + w_int(n_in) + w_tensor(fc_w.reshape(-1))
    out += w_alias(n_in, n_out) + w_alias(0) + w_int(1) + w_float(1) * 4 + w_state()
    return out


def test_reader_against_writer(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 7 - 0.5
    path = tmp_path / "tiny.dat"
    path.write_bytes(tiny_fc_net(w))
    net = read_dlib_net(path)
    assert net.loss.kind == "loss_metric" and net.loss.values == {"margin": 0.25, "dist_thresh": -1.5}
    assert net.kinds() == ["input_rgb_image_sized", "relu", "tag_or_skip", "fc"]
    assert net.input.values == {"avg_red": 1.0, "avg_green": 2.0, "avg_blue": 3.0, "nr": 4, "nc": 4}
    fc = net.layers[-1]
    assert fc.values == {"num_outputs": 4, "num_inputs": 3, "has_bias": False}
    np.testing.assert_array_equal(fc.arrays["weights"], w)


@pytest.mark.parametrize("value", [0, 1, -1, 255, 256, -70000, 2**62])
def test_integer_encoding_round_trip(tmp_path, value):
    from facekit.pretrained.dlib_dat import _Reader

    reader = _Reader(w_int(value) + w_float(value / 3), tmp_path / "x")
    assert reader.int() == value and reader.float() == value / 3 and reader.pos == len(reader.data)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_dlib_net(tmp_path / "nope.dat")
    with pytest.raises(FileNotFoundError):
        fp.load_dlib_resnet(tmp_path / "nope.dat")


@pytest.mark.parametrize("cut", [1, 5, 40, 120, -3])
def test_truncated_file(tmp_path, cut):
    data = tiny_fc_net(np.ones((3, 4), np.float32))
    path = tmp_path / "cut.dat"
    path.write_bytes(data[:cut])
    with pytest.raises(DlibFormatError, match=r"cut\.dat.*(truncated|ends early)"):
        read_dlib_net(path)


def test_trailing_bytes_and_garbage(tmp_path):
    path = tmp_path / "x.dat"
    path.write_bytes(tiny_fc_net(np.ones((3, 4), np.float32)) + b"\x00")
    with pytest.raises(DlibFormatError, match="unexpected byte"):
        read_dlib_net(path)
    path.write_bytes(b"<html>not a network</html>")
    with pytest.raises(DlibFormatError, match=r"x\.dat"):
        read_dlib_net(path)


def test_unknown_layer_and_other_network(tmp_path):
    path = tmp_path / "other.dat"
    path.write_bytes(tiny_fc_net(np.ones((3, 4), np.float32)).replace(b"\x05relu_", b"\x05htan_"))
    with pytest.raises(DlibFormatError, match="unsupported layer 'htan_'"):
        read_dlib_net(path)
    path.write_bytes(tiny_fc_net(np.ones((3, 4), np.float32)))  # a valid dlib network, but not the ResNet
    with pytest.raises(DlibFormatError, match=r"other\.dat: not dlib's face recognition ResNet"):
        fp.load_dlib_resnet(path)


def test_shape_predictor_is_not_a_network():
    with pytest.raises(DlibFormatError, match="shape_predictor_5_face_landmarks.dat"):
        read_dlib_net(_model_file("five_point"))


# ---------------------------------------------------------------- the real model file
@pytest.fixture(scope="module")
def real_net():
    return read_dlib_net(_model_file("face_recognition"))


@pytest.fixture(scope="module")
def model(real_net):
    net = DlibFaceResNet()
    net.load_state_dict(state_dict_from_dlib(real_net))
    return net.eval()


def test_real_file_layers(real_net):
    assert real_net.kinds() == expected_layer_kinds()
    assert len(real_net.layers) == 131 and real_net.loss.kind == "loss_metric"
    assert real_net.loss.values["dist_thresh"] == pytest.approx(0.6)
    convs = [layer for layer in real_net.layers if layer.kind == "con"]
    assert len(convs) == 29 and sum(layer.kind == "affine" for layer in real_net.layers) == 29
    assert convs[0].arrays["filters"].shape == (32, 3, 7, 7) and convs[0].values["padding_y"] == 0
    assert convs[-1].arrays["filters"].shape == (256, 256, 3, 3) and convs[-1].arrays["biases"].shape == (256,)
    strided = [c.values["stride_y"] for c in convs]
    assert strided.count(2) == 5  # the stem and four ares_down blocks
    fc = real_net.layers[-1]
    assert fc.arrays["weights"].shape == (256, 128) and not fc.values["has_bias"]
    assert real_net.input.values["nr"] == 150
    assert real_net.input.values["avg_red"] == pytest.approx(122.782, abs=1e-4)


def test_model_shapes_and_padded_add():
    a, b = torch.randn(2, 3, 3, 3), torch.randn(2, 5, 4, 4)
    expected = torch.zeros(2, 5, 4, 4)
    expected[:, :3, :3, :3] += a  # naive oracle of dlib's add_prev for different shapes
    expected += b
    torch.testing.assert_close(add_padded(a, b), expected)
    net = DlibFaceResNet().eval()
    with torch.no_grad():
        assert net.features(torch.zeros(1, 3, 150, 150)).shape == (1, 256, 2, 2)


def test_state_dict_round_trip(model, tmp_path):
    torch.save(model.state_dict(), tmp_path / "dlib_resnet.pt")
    other = DlibFaceResNet()
    other.load_state_dict(torch.load(tmp_path / "dlib_resnet.pt", weights_only=True))
    x = torch.rand(2, 3, 150, 150, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        torch.testing.assert_close(other.eval()(x), model(x), rtol=0, atol=0)


def test_batched_descriptors_equal_single(model):
    chips = (torch.rand(3, 3, 150, 150, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    batched = fp.compute_descriptors(model, chips, batch_size=2)
    with torch.no_grad():
        single = torch.cat([model(chips[i:i + 1]) for i in range(3)])
    assert batched.shape == (3, 128) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- chips
def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    m = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    got_m, got_b = fp.similarity_transform(src, src @ m.T + shift)
    np.testing.assert_allclose(got_m, m, atol=1e-12)
    np.testing.assert_allclose(got_b, shift, atol=1e-10)


def test_chip_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(5, 2\) landmarks"):
        fp.face_chip(np.zeros((10, 10, 3), np.uint8), np.zeros((68, 2)))
    with pytest.raises(ValueError, match="RGB uint8"):
        fp.face_chip(np.zeros((10, 10, 3), np.float32), np.zeros((5, 2)))


def _dlib_shape(points):
    import dlib

    return dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in points])


@needs_dlib
@pytest.mark.parametrize(("scale", "center", "angle"),
                         [(60, (12, 10), 0.1), (100, (125, 125), 0.5), (40, (5, 240), 1.0)])  # corner, centre, edge
def test_chip_matches_dlib_on_synthetic_image(scale, center, angle):
    import dlib

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (200, 250, 3), dtype=np.uint8)
    rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    points = np.round((fp.TEMPLATE_5 - 0.5) @ rot * scale + center)
    ref = dlib.get_face_chip(img, _dlib_shape(points), size=150, padding=0.25)
    np.testing.assert_array_equal(fp.face_chip(img, points), ref)  # same pixels, black outside the image too


@pytest.fixture(scope="module")
def lfw_faces():
    if not HAS_DLIB:
        pytest.skip("dlib is not installed (pip install dlib-bin)")
    if not (LFW / LFW_IMAGES[0]).is_file():
        pytest.skip(f"real LFW not found at {LFW}")
    _model_file("five_point")
    from facekit.pretrained.descriptors import _read_rgb

    faces = []
    for name in LFW_IMAGES:
        img = _read_rgb(LFW / name)
        points, found = fp.dlib_landmarks(img)
        faces.append((img, points, found))
    return faces


@pytest.mark.realdata
def test_chips_match_dlib_on_lfw(lfw_faces):
    import dlib

    for img, points, found in lfw_faces:
        assert found and points.shape == (5, 2)
        ref = dlib.get_face_chip(img, _dlib_shape(points), size=150, padding=0.25)
        diff = np.abs(fp.face_chip(img, points).astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # measured: identical on 120 LFW faces


@pytest.mark.realdata
def test_descriptors_match_dlib_on_lfw(lfw_faces, model):
    import dlib

    rec = dlib.face_recognition_model_v1(str(_model_file("face_recognition")))
    chips = np.stack([fp.face_chip(img, points) for img, points, _ in lfw_faces])  # (4, 150, 150, 3)
    ours = fp.compute_descriptors(model, chips).numpy()
    ref = np.stack([np.asarray(rec.compute_face_descriptor(chip)) for chip in chips])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)  # measured max 5e-7 on 120 faces
    full = np.asarray(rec.compute_face_descriptor(lfw_faces[0][0], _dlib_shape(lfw_faces[0][1])))
    np.testing.assert_allclose(ours[0], full, rtol=0, atol=1e-5)  # dlib's own chip + descriptor: raw, not unit-norm
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)


def test_dlib_landmarks_without_dlib(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_dlib(name, *args, **kwargs):
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dlib)
    with pytest.raises(fp.DlibNotInstalled, match="pip install dlib"):
        fp.dlib_landmarks(np.zeros((20, 20, 3), np.uint8))


# ---------------------------------------------------------------- pipeline, cache and LFW protocol
@needs_dlib
def test_lfw_protocol_on_look_alike(lfw_dir, tmp_path, monkeypatch):
    """The fake LFW (random pixels, no faces: the centred fallback box) through the whole pipeline."""
    _model_file("face_recognition")
    _model_file("five_point")
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path / "cache"))
    result = fp.evaluate_lfw_pairs(lfw_dir, backend="torch")
    assert result.distances.shape == (8,) and result.is_same.sum() == 4
    assert result.num_images == 12 and result.num_without_face == 12
    assert len(result.kfold.accuracies) == 2 and 0 <= result.fixed_threshold_accuracy <= 1
    cached = sorted(p.name for p in (tmp_path / "cache" / "dlib_resnet").iterdir())
    assert [n.split("-")[0] for n in cached] == ["descriptors", "landmarks"]
    monkeypatch.setitem(fp.BACKENDS, "torch", lambda *a: pytest.fail("the cache was not used"))
    again = fp.evaluate_lfw_pairs(lfw_dir, backend="torch")
    np.testing.assert_array_equal(again.distances, result.distances)
    assert not list(REPO_ROOT.glob("**/descriptors-*.npz"))


@pytest.mark.parametrize("module", ["dlib_dat", "dlib_resnet", "face_chip", "descriptors"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"facekit.pretrained.{module}"))
    assert result.failed == 0


def test_import_loads_nothing():
    import subprocess
    import sys

    code = ("import sys, facekit.pretrained; "
            "assert 'dlib' not in sys.modules and 'face_recognition_models' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
