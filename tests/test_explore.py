"""facekit.explore: the frontend decision, the Exploration runner, and each exploration's pure functions."""

from __future__ import annotations

import math
import types

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

from facekit.config import ConfigError
from facekit.explore import core
from facekit.explore.core import Choice, Exploration, Slider, frontend

PNG_MAGIC = b"\x89PNG"


# -- frontend ------------------------------------------------------------------------------------------------------
class ZMQInteractiveShell:  # the class name ipykernel's shell has
    kernel = object()
    events = types.SimpleNamespace(register=lambda *args: None)  # pyplot registers a hook


@pytest.fixture
def kernel(monkeypatch):
    """Pretend to run inside a Jupyter kernel; no Jupyter server, VS Code or Colab in the environment."""
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: ZMQInteractiveShell())
    for var in (core.STATIC_ENV, "JPY_SESSION_NAME", "VSCODE_PID"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_frontend_plain_python_is_static(monkeypatch):
    monkeypatch.delenv(core.STATIC_ENV, raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "x.ipynb")  # even a stray session variable: no kernel, no widget
    assert frontend()[0] == "static"


def test_frontend_kernel_without_server_session_is_static(kernel):
    mode, reason = frontend()  # what papermill and nbval look like
    assert mode == "static" and "papermill" in reason


def test_frontend_jupyter_server_session_is_widget(kernel):
    pytest.importorskip("ipywidgets")
    kernel.setenv("JPY_SESSION_NAME", "/home/me/notebooks/01.ipynb")
    assert frontend()[0] == "widget"


@pytest.mark.parametrize("env, watched", [({}, False), ({"JPY_SESSION_NAME": "01.ipynb"}, True),
                                           ({"VSCODE_PID": "42"}, True)])
def test_progress_and_explorations_share_one_frontend_rule(kernel, env, watched):
    """Progress bars and explorations ask the same question (is a live frontend watching this kernel?) and
    agree for each kind of kernel: live bars exactly where widgets are shown."""
    pytest.importorskip("ipywidgets")
    from facekit import progress

    kernel.delenv(progress.ENV_VAR, raising=False)
    kernel.delenv(progress.REPORT_ENV_VAR, raising=False)
    for var, value in env.items():
        kernel.setenv(var, value)
    assert progress.kernel_frontend()[0] == ("watched" if watched else "unwatched")
    assert (frontend()[0] == "widget") is watched
    assert (progress.mode() == "live") is watched


def test_frontend_env_forces_either_way(kernel):
    pytest.importorskip("ipywidgets")
    kernel.setenv("JPY_SESSION_NAME", "01.ipynb")
    kernel.setenv(core.STATIC_ENV, "1")
    assert frontend()[0] == "static"
    kernel.delenv("JPY_SESSION_NAME")
    kernel.setenv(core.STATIC_ENV, "0")
    assert frontend()[0] == "widget"
    kernel.setenv(core.STATIC_ENV, "maybe")
    with pytest.raises(ConfigError, match="FACEKIT_STATIC"):
        frontend()


# -- the runner ----------------------------------------------------------------------------------------------------
def _toy(calls=None):
    def draw(fig, x, kind):
        if calls is not None:
            calls.append((x, kind))
        ax = fig.subplots()
        ax.plot([0, 1], [0, x], color="red" if kind == "a" else "blue")
        ax.set_ylim(0, 5)

    return Exploration(draw, {"x": Slider(0, 5, 0.5, 1.0), "kind": Choice(("a", "b"), "a")},
                       figsize=(3, 2), static_grid=[{"x": 4.0}, {"kind": "b"}])


def test_slider_and_choice_validate():
    with pytest.raises(ConfigError):
        Slider(0, 1, 0.1, 2.0)
    with pytest.raises(ConfigError):
        Choice(("a",), "b")
    s = Slider(0, 1, 0.25, 0.5)
    assert s.values() == [0, 0.25, 0.5, 0.75, 1.0]
    assert s.check("x", 1.0 + 1e-12) == 1.0  # a widget's rounding at the end is accepted
    with pytest.raises(ConfigError, match=r"x=1.5"):
        s.check("x", 1.5)
    assert Slider(1, 8, 1, 4, integer=True).values() == list(range(1, 9))


def test_exploration_update_changes_the_png_and_checks_names():
    ex = _toy()
    first = ex.update()
    assert first.startswith(PNG_MAGIC)
    assert ex.update(x=4.0) != first and ex.params["x"] == 4.0
    assert ex.update(x=1.0) == first  # the same parameters draw the same image
    with pytest.raises(ConfigError, match="unknown control"):
        ex.update(y=1)
    with pytest.raises(ConfigError, match="kind='c'"):
        ex.update(kind="c")
    with pytest.raises(ConfigError):
        Exploration(lambda fig: None, {})
    with pytest.raises(ConfigError):  # a static setting out of range is caught when the exploration is built
        Exploration(lambda fig, x: None, {"x": Slider(0, 1, 0.5, 0)}, static_grid=[{"x": 3}])


def test_static_display_shows_default_and_grid(monkeypatch, kernel):
    import IPython.display

    shown, calls = [], []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    ex = _toy(calls)
    ex._ipython_display_()
    assert len(shown) == 2  # the default figure and one figure with the grid
    assert calls[0] == (1.0, "a") and {(4.0, "a"), (1.0, "b")} <= set(calls)
    assert all(type(s).__name__ == "Figure" for s in shown)


def test_widget_display_and_slider_move(monkeypatch, kernel):
    ipywidgets = pytest.importorskip("ipywidgets")
    import IPython.display

    kernel.setenv("JPY_SESSION_NAME", "t.ipynb")
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    ex = _toy()
    ex._ipython_display_()
    (ui,) = shown
    assert isinstance(ui, ipywidgets.VBox)
    image = next(w for w in ui.children if isinstance(w, ipywidgets.Image))
    slider = next(w for box in ui.children if isinstance(box, ipywidgets.HBox) for w in box.children
                  if isinstance(w, ipywidgets.FloatSlider))
    before = image.value
    slider.value = 3.0
    assert image.value != before and ex.params["x"] == 3.0


def test_update_times_measures_each_move():
    times = core.update_times(_toy(), "x", n=5)
    assert len(times) == 5 and all(wall > 0 and cpu > 0 for wall, cpu in times)


# -- ch4: threshold ------------------------------------------------------------------------------------------------
def test_operating_point_against_counting():
    from facekit.explore.threshold import operating_point
    from facekit.metrics.verification import roc

    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 300)]
    same = np.r_[np.ones(200, bool), np.zeros(300, bool)]
    for t in (-1.0, 0.3, scores[17], 2.5):
        p = operating_point(scores, same, t)
        assert p.tar == np.mean(scores[same] >= t) and p.far == np.mean(scores[~same] >= t)
        assert p.frr == pytest.approx(1 - p.tar)
        assert p.accuracy == pytest.approx(np.mean((scores >= t) == same))
    curve = roc(scores, same)
    k = 50
    p = operating_point(scores, same, curve.thresholds[k])
    assert (p.far, p.tar) == pytest.approx((curve.far[k], curve.tar[k]))


def test_threshold_exploration_starts_at_eer():
    from facekit.explore import explore_threshold
    from facekit.metrics.verification import eer

    rng = np.random.default_rng(1)
    scores, same = rng.normal(size=100) + np.r_[np.ones(50), np.zeros(50)], np.r_[np.ones(50), np.zeros(50)]
    ex = explore_threshold(scores, same)
    assert ex.params["threshold"] == pytest.approx(eer(scores, same)[1])
    assert ex.update(threshold=ex.controls["threshold"].hi).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="both genuine and impostor"):
        explore_threshold(scores, np.ones(100))


# -- ch4: margins --------------------------------------------------------------------------------------------------
AXES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


@pytest.mark.parametrize("name, m, gap", [
    ("ArcFace", 0.3, lambda m: 4 * m / (2 * math.pi)),  # each boundary opens by m
    ("CosFace", 0.2, lambda m: 4 * 2 * math.asin(m / math.sqrt(2)) / (2 * math.pi)),  # cos(t) - sin(t) > m
    ("SphereFace", 1.5, lambda m: 4 * (math.pi / 2 - math.pi / (m + 1)) / (2 * math.pi)),  # m t < pi/2 - t
])
def test_margin_gap_matches_geometry(name, m, gap):
    from facekit.explore.margins import make_head, margin_regions

    assert margin_regions(AXES, make_head(name, 0.0 if name != "SphereFace" else 1.0)).gap_fraction == 0.0
    r = margin_regions(AXES, make_head(name, m), resolution=7200)
    assert r.gap_fraction == pytest.approx(gap(m), abs=2e-3)


def test_meets_margin_against_a_loop():
    from facekit.explore.margins import make_head, meets_margin

    rng = np.random.default_rng(0)
    feats, labels, w = rng.normal(size=(60, 2)), rng.integers(0, 4, 60), rng.normal(size=(4, 2))
    head = make_head("ArcFace", 0.4)
    got = meets_margin(feats, labels, w, head)
    fu = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    wu = w / np.linalg.norm(w, axis=1, keepdims=True)
    for i in range(60):
        cos = wu @ fu[i]
        psi = head.target_logit(torch.tensor([cos[labels[i]]], dtype=torch.float64)).item()
        assert got[i] == (psi > max(np.delete(cos, labels[i])))


def test_margin_exploration_checks_inputs():
    from facekit.explore import explore_margins

    ex = explore_margins(AXES, torch.randn(10, 2), torch.randint(0, 4, (10,)), ArcFace=0.2)
    assert ex.params["ArcFace"] == 0.2 and ex.update(CosFace=0.5).startswith(PNG_MAGIC)
    with pytest.raises(ConfigError, match="labels go up to"):
        explore_margins(AXES, torch.randn(3, 2), [0, 1, 7])
    with pytest.raises(ConfigError, match="unknown margin"):
        explore_margins(AXES, ArcFac=0.2)


# -- ch8: quantisation ---------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*quantized tensor creation:UserWarning")
def test_quantize_embeddings_against_torch():
    from facekit.explore.quantization import quantize_embeddings

    emb = torch.randn(6, 32)
    codes, hat = quantize_embeddings(emb, 8, "per-embedding")
    for row, c in zip(emb, codes):
        lo, hi = min(float(row.min()), 0.0), max(float(row.max()), 0.0)
        scale = (hi - lo) / 255
        ref = torch.quantize_per_tensor(row, scale, int(round(-lo / scale)), torch.quint8)
        assert torch.equal(c, ref.int_repr().long())
    c4, h4 = quantize_embeddings(emb, 4, "per-tensor")
    assert int(c4.max()) <= 15 and len(torch.unique(h4)) <= 16
    assert float((emb - h4).abs().max()) <= float(emb.max() - emb.min()) / 15 / 2 + 1e-6
    with pytest.raises(ConfigError, match="bits=0"):
        quantize_embeddings(emb, 0)
    with pytest.raises(ConfigError, match="scheme"):
        quantize_embeddings(emb, 4, "per-row")


def test_bits_sweep_reaches_fp32():
    from facekit.explore.quantization import bits_sweep

    g = torch.Generator().manual_seed(0)
    ids = torch.randn(50, 64, generator=g)
    emb = torch.cat([ids, ids + 0.8 * torch.randn(50, 64, generator=g)])  # image 2 of each person: index + 50
    a = np.r_[np.arange(50), np.arange(50)]
    b = np.r_[np.arange(50) + 50, (np.arange(50) + 1) % 50 + 50]
    same = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    perm = np.random.default_rng(0).permutation(100)
    sweep = bits_sweep(emb, a[perm], b[perm], same[perm], bits=(1, 2, 8, 16), folds=5)
    for scheme in ("per-embedding", "per-tensor"):
        assert sweep.cosine[scheme][-1] > 0.99999 and sweep.cosine[scheme][2] > 0.999
        assert sweep.cosine[scheme][0] < sweep.cosine[scheme][2]
        assert sweep.accuracy[scheme][-1] == pytest.approx(sweep.fp32_accuracy, abs=0.02)


# -- ch9: privacy --------------------------------------------------------------------------------------------------
def test_epsilon_grid_is_the_accountant():
    from facekit.explore.privacy import epsilon_grid
    from facekit.privacy import epsilon_for

    g = epsilon_grid(500, 32, 1e-5, sigmas=(0.6, 1.0, 2.5), max_epochs=5)
    assert g.steps_per_epoch == 16 and g.sample_rate == 1 / 16
    for i, s in enumerate(g.sigmas):
        for e in (1, 3, 5):
            assert g.epsilon[i, e - 1] == pytest.approx(epsilon_for(s, 1 / 16, 16 * e, 1e-5), rel=1e-9)
    assert np.all(np.diff(g.epsilon, axis=1) > 0) and np.all(np.diff(g.epsilon, axis=0) < 0)


def test_privacy_draw_clip_norm_moves_noise_not_epsilon():
    from matplotlib.figure import Figure

    from facekit.explore.privacy import draw_privacy, epsilon_grid

    g = epsilon_grid(500, 32, 1e-5, sigmas=(1.0, 2.0), max_epochs=4)
    norms = np.linspace(0.1, 3.0, 30)
    a = draw_privacy(Figure(), g, 1.0, 0.5, 3, batch_size=32, measured=[(math.inf, 0.9), (2.0, 0.5)],
                     grad_norms=norms)
    b = draw_privacy(Figure(), g, 1.0, 2.0, 3, batch_size=32, grad_norms=norms)
    assert a["epsilon"] == b["epsilon"] == g.epsilon[0, 2]
    assert b["noise_std"] == pytest.approx(4 * a["noise_std"])
    assert a["clipped_fraction"] == np.mean(norms > 0.5)


def test_explorations_accept_tensors_that_require_grad():
    from facekit.explore import explore_bits, explore_margins, explore_privacy

    norms = torch.rand(20, requires_grad=True) * 3  # as a notebook computes them
    ex = explore_privacy(200, 20, 1e-5, grad_norms=norms, max_epochs=3, epochs=2)
    assert ex.update(clip_norm=0.5).startswith(PNG_MAGIC)
    w = torch.randn(4, 2, requires_grad=True)
    assert explore_margins(w, torch.randn(8, 2, requires_grad=True), torch.arange(8) % 4).update().startswith(PNG_MAGIC)
    emb = torch.randn(20, 8, requires_grad=True)
    idx = np.arange(10)
    assert explore_bits(emb, idx, idx + 10, idx % 2 == 0, folds=2).update(bits=3).startswith(PNG_MAGIC)


# -- ch2: attention ------------------------------------------------------------------------------------------------
def test_query_attention_is_a_row_of_the_maps():
    from facekit.explore.attention import attention_maps_of, query_attention
    from facekit.models import VisionTransformer
    from facekit.models.vit import cls_attention_map

    torch.manual_seed(0)
    vit = VisionTransformer(5, image_size=32, patch_size=8, dim=32, depth=2, num_heads=2)
    img = torch.rand(3, 32, 32)
    maps = attention_maps_of(vit, img)
    ref = vit.eval().attention_maps(img[None])
    a = query_attention(maps, 1, 1, 2, 3)
    torch.testing.assert_close(a.flatten(), ref[1][0, 1, 1 + 2 * 4 + 3, 1:])
    cls = query_attention(maps, 1, "mean", None, None)
    torch.testing.assert_close(cls, cls_attention_map(ref[1], (4, 4), normalize=False)[0])
    assert float(cls.sum()) < 1.0  # the class token's own weight is left out
    with pytest.raises(ConfigError, match="layer=2"):
        query_attention(maps, 2, 0, 0, 0)
    with pytest.raises(ConfigError, match="not a patch"):
        query_attention(maps, 0, 0, 4, 0)


# -- ch1: convolution ----------------------------------------------------------------------------------------------
def test_feature_maps_are_the_conv_outputs():
    from facekit.explore.convolution import conv_layers, feature_maps
    from facekit.models import ArticleCNN

    torch.manual_seed(0)
    net = ArticleCNN(4, in_channels=1, image_size=16)
    img = torch.rand(1, 16, 16)
    fm = feature_maps(net, img)
    assert conv_layers(net) == ["conv1", "conv2"]
    torch.testing.assert_close(fm.maps["conv1"], net.conv1(img[None])[0].detach())
    assert fm.maps["conv2"].shape == (64, 8, 8)


def _textbook(layers):
    """Receptive field size by the recursion r += (k - 1) * jump, jump *= stride."""
    r, jump = 1, 1
    for k, s in layers:
        r, jump = r + (k - 1) * jump, jump * s
    return r


@pytest.mark.parametrize("net, chain, layer", [
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1)),
     [(3, 1), (2, 2), (3, 1)], "3"),
    (nn.Sequential(nn.Conv2d(1, 2, 5, stride=2, padding=2), nn.BatchNorm2d(2), nn.ReLU(),
                   nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)),
     [(5, 2), (3, 2), (3, 1)], "5"),
])
def test_receptive_field_matches_the_recursion(net, chain, layer):
    from facekit.explore.convolution import receptive_field

    rows, cols = np.nonzero(receptive_field(net, (1, 64, 64), layer, 4, 4))
    size = _textbook(chain)
    assert rows.max() - rows.min() + 1 == size and cols.max() - cols.min() + 1 == size


def test_field_template_slides_like_the_real_field():
    from facekit.explore.convolution import feature_maps, field_templates, receptive_field
    from facekit.models import SmallResNet

    torch.manual_seed(0)
    net = SmallResNet(3, in_channels=1, widths=(4, 8))
    img = torch.rand(1, 32, 32)
    fm = feature_maps(net, img)
    fields = field_templates(net, (1, 32, 32), fm)
    for layer in list(fm.maps)[-2:]:
        h, w = fm.maps[layer].shape[1:]
        for r, c in [(0, 0), (h - 1, w // 3), (h // 2, w - 1)]:
            rows, cols = np.nonzero(receptive_field(net, (1, 32, 32), layer, r, c))
            assert fields[layer].box(r, c) == (rows.min(), cols.min(), rows.max(), cols.max()), (layer, r, c)


def test_conv_exploration_draws_every_layer():
    from facekit.explore import explore_conv
    from facekit.models import ArticleCNN

    net = ArticleCNN(4, in_channels=3, image_size=16)
    ex = explore_conv(net, torch.rand(3, 16, 16))
    assert ex.params["layer"] == "conv2"
    assert ex.update(layer="conv1", filter=63, unit_row=0.0).startswith(PNG_MAGIC)  # filter clamped to conv1's 32
    with pytest.raises(ConfigError, match="not a convolution"):
        explore_conv(net, torch.rand(3, 16, 16), layer="fc1")


# -- ch3: detection ------------------------------------------------------------------------------------------------
def _detector():
    from facekit.detection import FaceDetector

    torch.manual_seed(0)
    det = FaceDetector().eval()
    for head in det.heads:  # a face prior of ~0.4 instead of 0.01: many candidates, as a half-trained detector
        head.bias.data.view(det.config.anchors.anchors_per_cell, -1)[:, 0] = -0.4
    return det


def test_detections_at_equals_detect():
    from facekit.explore.detection import detections_at, raw_detections

    det, img = _detector(), torch.rand(3, 96, 128)
    raw = raw_detections(det, img)
    for score, iou in [(0.3, 0.4), (0.45, 0.7), (0.5, 1.0)]:
        ours = detections_at(raw, score, iou)
        ref = det.detect([img], score_threshold=score, iou_threshold=iou)[0]
        assert torch.equal(ours.boxes, ref.boxes) and torch.equal(ours.scores, ref.scores)


def test_detection_point_is_the_last_point_of_the_curve():
    from facekit.explore.detection import detection_point, detections_at, raw_detections
    from facekit.metrics.detection import precision_recall

    det, img = _detector(), torch.rand(3, 96, 128)
    found = detections_at(raw_detections(det, img), 0.4, 0.3)
    truth = found.boxes[:3] + 2.0  # three found faces, slightly moved, and one missed
    truth = torch.cat([truth, torch.tensor([[0.0, 0.0, 10.0, 10.0]])])
    p = detection_point(found, truth)
    pr = precision_recall([found], [truth])
    assert p.faces == 4 and p.kept == len(found.boxes)
    assert (p.precision, p.recall) == pytest.approx((pr.precision[-1], pr.recall[-1]))


def test_detection_exploration_moves():
    from facekit.explore import explore_detection

    ex = explore_detection(_detector(), torch.rand(3, 64, 96), torch.tensor([[10.0, 10.0, 40.0, 40.0]]))
    assert ex.update(score_threshold=0.45, iou_threshold=0.2) != ex.update(score_threshold=0.3)


# -- ch0: generator ------------------------------------------------------------------------------------------------
def test_identity_grid_is_the_dataset():
    from facekit.data import SyntheticFaces
    from facekit.explore.generator import identity_grid

    ds = SyntheticFaces(3, 4, 32, seed=5, difficulty="hard")
    grid = identity_grid(2, 4, 32, seed=5, difficulty="hard")
    torch.testing.assert_close(grid, torch.stack([ds[2 * 4 + j][0] for j in range(4)]))
    assert not torch.equal(identity_grid(2, 4, 32, seed=5, difficulty="hard", yaw=0.0), grid)
    with pytest.raises(TypeError, match="yaww"):
        identity_grid(0, 2, 32, yaww=3)


def test_generator_exploration_static_grid_is_the_presets():
    from facekit.data.synthetic import Difficulty
    from facekit.explore import explore_generator

    ex = explore_generator(images=3, image_size=32)
    assert ex.params["yaw"] == Difficulty().yaw
    assert ex.static_grid[1]["occlusion_prob"] == Difficulty.preset("hard").occlusion_prob
    assert ex.update(person=3).startswith(PNG_MAGIC)


def test_frontend_without_ipywidgets_is_static(kernel, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_widgets(name, *args, **kwargs):
        if name == "ipywidgets":
            raise ImportError("no ipywidgets")
        return real_import(name, *args, **kwargs)

    kernel.setenv("JPY_SESSION_NAME", "01.ipynb")
    monkeypatch.setattr(builtins, "__import__", no_widgets)
    assert frontend() == ("static", "ipywidgets is not installed")


def test_importing_explore_imports_no_widgets():
    import subprocess
    import sys

    code = "import sys, facekit.explore; print(any(m.startswith(('ipywidgets', 'matplotlib')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
