"""facekit.pretrained.crops (MTCNN crops for FaceNet), .facenet_lfw (LFW pairs) and .transfer.

Crops are checked against facenet-pytorch's own ``extract_face``, face selection against a naive loop,
the cache by forbidding a second detection; the transfer pieces against naive loops and the whole
network. Tests that need facenet-pytorch or real LFW are skipped, with the reason, when absent.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from facekit.config import ConfigError
from facekit.data.registry import REPO_ROOT
from facekit.pretrained import crops as facenet_crops
from facekit.pretrained import facenet_lfw
from facekit.pretrained.crops import CropSettings, FaceBoxes, crop_face, select_face
from facekit.pretrained.transfer import (DLIB_STAGES, DlibSlice, FacenetSlice, choose_open_set_threshold, enrol, few_shot_split, identify,
                                         keep_norm_stats, open_set_metrics)

pytestmark = pytest.mark.usefixtures("one_thread")

LFW = REPO_ROOT.parent / "shared" / "datasets" / "lfw"
ONE_FACE = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
MULTI_FACE = "Benjamin_Netanyahu/Benjamin_Netanyahu_0001.jpg"  # MTCNN: 3 faces, the most confident at the edge
HAS_FACENET_PYTORCH = importlib.util.find_spec("facenet_pytorch") is not None
needs_facenet_pytorch = pytest.mark.skipif(not HAS_FACENET_PYTORCH, reason="facenet-pytorch is not installed "
                                           "(pip install --no-deps facenet-pytorch)")
needs_lfw = pytest.mark.skipif(not (LFW / MULTI_FACE).is_file(), reason=f"real LFW not found at {LFW}")


# ---------------------------------------------------------------- selection and crops (no data)
def test_select_face_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(1, 6))
        xy = rng.uniform(0, 200, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (k, 2))], 1).astype(np.float32)
        faces = FaceBoxes(boxes, rng.uniform(0.7, 1, k).astype(np.float32), np.zeros((k, 5, 2), np.float32))
        w, h = 250, 230
        dist = [((b[0] + b[2]) / 2 - w / 2) ** 2 + ((b[1] + b[3]) / 2 - h / 2) ** 2 for b in boxes.astype(float)]
        area = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes.astype(float)]
        assert select_face(faces, w, h, "center") == min(range(k), key=dist.__getitem__)
        assert select_face(faces, w, h, "confident") == max(range(k), key=lambda i: faces.probs[i])
        assert select_face(faces, w, h, "largest") == max(range(k), key=area.__getitem__)
    empty = FaceBoxes(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    assert select_face(empty, 10, 10, "center") is None


def test_bad_settings_name_the_parameter():
    with pytest.raises(ConfigError, match="select='biggest'.*center, confident, largest"):
        CropSettings(select="biggest")
    with pytest.raises(ConfigError, match="margin"):
        CropSettings(margin=200)
    with pytest.raises(ValueError, match="select"):
        select_face(FaceBoxes(np.zeros((1, 4)), np.ones(1), None), 1, 1, "first")
    assert CropSettings(select="confident").tag() == "mtcnn20-0.6-0.7-0.7-s160-m32-confident"


@needs_facenet_pytorch
def test_crop_face_equals_facenet_pytorch_extract_face():
    from facenet_pytorch.models.utils.detect_face import extract_face
    from PIL import Image

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (250, 240, 3), dtype=np.uint8))
    for box in ([60.3, 70.9, 170.2, 190.7], [-20.5, 100.1, 60.0, 260.4], [200.0, 5.5, 245.0, 60.0]):
        ours = crop_face(img, np.array(box, np.float32), 160, 32)
        ref = extract_face(img, np.array(box, np.float32).astype(np.float64), 160, 32)
        assert ours.shape == (160, 160, 3) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, ref.permute(1, 2, 0).round().byte().numpy())
    centre = crop_face(img, None, 160, 32)
    np.testing.assert_array_equal(centre, np.asarray(img)[45:205, 40:200])
    small = crop_face(np.zeros((112, 92, 3), np.uint8), None, 160, 32)  # ORL-sized: its centred square, resized
    assert small.shape == (160, 160, 3)


# ---------------------------------------------------------------- real LFW images through MTCNN
@needs_facenet_pytorch
@needs_lfw
def test_face_crops_on_real_lfw_and_the_choice_of_face(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path))
    paths = [LFW / ONE_FACE, LFW / MULTI_FACE]
    crops, found, num_faces = facenet_crops.face_crops(paths, CropSettings(select="center"))
    assert crops.shape == (2, 160, 160, 3) and crops.dtype == np.uint8
    assert found.all() and num_faces[1] > 1
    assert list(tmp_path.rglob("detections-*.npz")), "the detections were not cached"

    class NoDetector:  # the second pass must come from the cache
        def __init__(self, *args, **kwargs):
            raise AssertionError("MTCNN ran again despite the cache")

    monkeypatch.setattr("facekit.detection.baselines.MTCNNDetector", NoDetector)
    again, _, _ = facenet_crops.face_crops(paths, CropSettings(select="center"))
    np.testing.assert_array_equal(again, crops)
    confident, _, _ = facenet_crops.face_crops(paths, CropSettings(select="confident"))
    np.testing.assert_array_equal(confident[0], crops[0])  # one face: the choice does not matter
    assert np.abs(confident[1].astype(int) - crops[1]).mean() > 20  # another face of the photo


@needs_facenet_pytorch
@needs_lfw
def test_embedding_cache_recomputes_only_the_faces_another_rule_picks(tmp_path, monkeypatch):
    from facekit.pretrained import facenet, facenet_graph

    try:
        facenet_graph.facenet_graph_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path))
    torch.manual_seed(0)
    tiny = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 512))
    seen = []
    tiny.register_forward_hook(lambda m, args, out: seen.append(len(out)))
    monkeypatch.setattr(facenet, "load_facenet", lambda *a, **k: tiny)  # the default model, without the graph
    paths = [LFW / ONE_FACE, LFW / MULTI_FACE]
    center, found, num_faces = facenet_crops.image_embeddings(paths, CropSettings(select="center"))
    assert center.shape == (2, 512) and found.all() and seen == [2]
    again, _, _ = facenet_crops.image_embeddings(paths, CropSettings(select="center"))
    np.testing.assert_array_equal(again, center)
    assert seen == [2], "cached embeddings were recomputed"
    confident, _, _ = facenet_crops.image_embeddings(paths, CropSettings(select="confident"))
    assert seen == [2, 1], "only the multi-face image needs another embedding"
    np.testing.assert_array_equal(confident[0], center[0])
    crops, _, _ = facenet_crops.face_crops(paths, CropSettings(select="confident"))
    np.testing.assert_allclose(confident, facenet_crops.embed_crops(tiny, crops), atol=1e-6)


@needs_lfw
def test_lfw_pair_subset_is_fixed_and_balanced():
    sub = facenet_lfw.lfw_pair_subset(LFW.parent, folds=[0, 9], pairs_per_fold=6)
    assert [len(f) for f in sub.folds] == [6, 6]
    assert sub.is_same.tolist() == [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3
    assert sub.images == list(dict.fromkeys(p for pair in zip(sub.paths_a, sub.paths_b) for p in pair))
    emb = {p: np.eye(len(sub.images))[i] for i, p in enumerate(sub.images)}
    result, dist = facenet_lfw.pair_kfold(emb, sub)
    assert dist.shape == (12,) and len(result.accuracies) == 2


# ---------------------------------------------------------------- transfer pieces
@needs_facenet_pytorch
def test_facenet_slices_compose_to_the_whole_network_and_keep_norm_stats():
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1().eval()
    x = torch.randn(2, 3, 160, 160)
    trunk, head = FacenetSlice(net, stop="block8"), FacenetSlice(net, start="block8")
    with torch.no_grad():
        whole, feats = net(x), trunk(x)
        assert feats.shape == (2, 1792, 3, 3)
        torch.testing.assert_close(head(feats), whole, atol=1e-5, rtol=0)
    assert {n for n, _ in head.named_parameters()} <= {f"stages.{n}" for n, _ in net.named_parameters()}
    assert keep_norm_stats(head) > 0
    head.train()
    head.stages["dropout"].p = 0.0  # dropout is meant to act in train(); the norms are not
    before = head.stages["last_bn"].running_mean.clone()
    with torch.no_grad():
        torch.testing.assert_close(head(feats), whole, atol=1e-5, rtol=0)  # train() but stored statistics
    torch.testing.assert_close(head.stages["last_bn"].running_mean, before)
    with pytest.raises(ValueError, match="not a FaceNet stage"):
        FacenetSlice(net, start="block9")


@pytest.mark.parametrize("weights", ["random", "dlib"])
def test_dlib_slices_recombine_into_the_whole_model_exactly(weights):
    from facekit.pretrained import DlibFaceResNet, load_dlib_resnet

    torch.manual_seed(0)
    if weights == "random":
        net = DlibFaceResNet().eval()
    else:
        try:
            net = load_dlib_resnet()
        except (ImportError, FileNotFoundError) as err:
            pytest.skip(f"dlib's .dat file (face_recognition_models) is not available: {err}")
    x = torch.rand(2, 3, 150, 150) * 255  # chips in [0, 255]
    with torch.no_grad():
        whole = net(x)
        assert torch.equal(DlibSlice(net)(x), whole)  # no start, no stop: the whole model
        for cut in ("block0", "block7", "block10", "block13", "fc"):
            trunk, head = DlibSlice(net, stop=cut), DlibSlice(net, start=cut)
            assert torch.equal(head(trunk(x)), whole), cut
        for a, b in (("block3", "block10"), ("block10", "fc")):  # three pieces
            pieces = DlibSlice(net, stop=a), DlibSlice(net, start=a, stop=b), DlibSlice(net, start=b)
            assert torch.equal(pieces[2](pieces[1](pieces[0](x))), whole)
        assert DlibSlice(net, stop="block10")(x).shape == (2, 128, 8, 8)
    # the slices share the model's parameters (no copy), and split them without overlap
    trunk, head = DlibSlice(net, stop="block10"), DlibSlice(net, start="block10")
    ids = lambda m: {id(p) for p in m.parameters()}  # noqa: E731
    assert ids(trunk) | ids(head) == ids(net) and not ids(trunk) & ids(head)
    assert [n.split(".")[1] for n, _ in head.named_parameters()][:1] == ["block10"]
    assert len(DLIB_STAGES) == len(net.blocks) + 2
    with pytest.raises(ValueError, match="not a stage of dlib's ResNet"):
        DlibSlice(net, start="block14")
    with pytest.raises(ValueError, match="empty slice"):
        DlibSlice(net, start="fc", stop="block3")
    with pytest.raises(ValueError, match="give a DlibFaceResNet"):
        DlibSlice(torch.nn.Linear(2, 2))


def test_enrol_and_identify_match_a_naive_loop():
    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(30, 8)), rng.integers(0, 5, 30)
    gallery = enrol(emb, labels)
    for c, person in enumerate(gallery.labels):
        mean = (emb[labels == person] / np.linalg.norm(emb[labels == person], axis=1, keepdims=True)).mean(0)
        np.testing.assert_allclose(gallery.templates[c], mean / np.linalg.norm(mean), atol=1e-12)
    probes = rng.normal(size=(7, 8))
    pred, score = identify(gallery, probes)
    for i, p in enumerate(probes):
        cos = [p @ t / np.linalg.norm(p) for t in gallery.templates]
        assert pred[i] == gallery.labels[int(np.argmax(cos))] and np.isclose(score[i], max(cos))


def test_few_shot_split_and_open_set_threshold_against_brute_force():
    labels = np.repeat(np.arange(4), 5)
    enrol_idx, probe_idx = few_shot_split(labels, shots=3, seed=1)
    assert np.bincount(labels[enrol_idx]).tolist() == [3] * 4 and not set(enrol_idx) & set(probe_idx)
    assert len(enrol_idx) + len(probe_idx) == 20
    with pytest.raises(ValueError, match="leaves no probe"):
        few_shot_split(labels, shots=5)
    rng = np.random.default_rng(2)
    ks, kc, us = rng.uniform(0.3, 1, 40), rng.random(40) < 0.9, rng.uniform(0, 0.7, 25)
    t = choose_open_set_threshold(ks, kc, us)
    grid = np.linspace(-0.01, 1.01, 5001)
    best = max(open_set_metrics(g, ks, kc, us).accuracy for g in grid)
    r = open_set_metrics(t, ks, kc, us)
    assert r.accuracy == pytest.approx(best)
    naive = (sum(s >= t and c for s, c in zip(ks, kc)) + sum(s < t for s in us)) / 65
    assert r.accuracy == pytest.approx(naive) and r.unknown_rejection == pytest.approx(np.mean(us < t))
