"""A small numpy executor of a frozen TensorFlow graph's inference ops: the test oracle for converted models.

It runs the nodes of a :class:`facekit.pretrained.facenet_graph.FrozenGraph` as TensorFlow defines
them, in float64 by default, with no PyTorch and no TensorFlow: NHWC tensors, HWIO filters,
``SAME`` padding split ``total // 2`` before and the rest after, ``VALID`` pooling, ``ConcatV2`` on
the axis the graph names, and the constant-folded ``Reshape`` shapes the graph holds (the FaceNet
graph has batch 1 baked into them, so :func:`run_graph` is called one image at a time there).

Supported ops: Const, Placeholder, Identity, Conv2D, BiasAdd, Relu, MaxPool, AvgPool, ConcatV2,
Mul, Add, AddV2, MatMul, Reshape, FusedBatchNorm (inference), Square, Sum, Maximum, Rsqrt.

Kept under tests/ (it is an oracle, not part of the package).

>>> out = run_graph(read_frozen_graph(facenet_graph_path()), {"input": x}, "embeddings")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pad_nhwc(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], padding: str, value: float = 0.0):
    if padding == "VALID":
        return x
    if padding != "SAME":
        raise ValueError(f"padding {padding!r} is not supported (SAME or VALID)")
    (t, b), (left, r) = _same_pads(x.shape[1], k[0], s[0]), _same_pads(x.shape[2], k[1], s[1])
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) -> (N, Ho, Wo, C, kh, kw) strided windows (a view)."""
    return sliding_window_view(x, k, axis=(1, 2))[:, ::s[0], ::s[1]]


def conv2d_nhwc(x: np.ndarray, w: np.ndarray, strides, padding: str) -> np.ndarray:
    """TensorFlow's Conv2D: x (N, H, W, Cin), w (kh, kw, Cin, Cout) -> (N, Ho, Wo, Cout)."""
    k, s = w.shape[:2], (strides[1], strides[2])
    patches = _windows(_pad_nhwc(x, k, s, padding), k, s)  # (N, Ho, Wo, Cin, kh, kw)
    return np.einsum("nhwcij,ijco->nhwo", patches, w, optimize=True)


def pool_nhwc(x: np.ndarray, ksize, strides, padding: str, kind: str) -> np.ndarray:
    """TensorFlow's MaxPool / AvgPool (VALID; SAME max pooling pads with -inf)."""
    k, s = (ksize[1], ksize[2]), (strides[1], strides[2])
    if kind == "AvgPool" and padding != "VALID":
        raise ValueError("AvgPool with SAME padding (which averages over valid cells only) is not supported")
    windows = _windows(_pad_nhwc(x, k, s, padding, -np.inf), k, s)
    return windows.max(axis=(-2, -1)) if kind == "MaxPool" else windows.mean(axis=(-2, -1))


def _fused_batch_norm(x, scale, offset, mean, var, attrs):
    if attrs.get("is_training", False) or attrs.get("data_format", "NHWC") != "NHWC":
        raise ValueError("only inference-mode NHWC FusedBatchNorm is supported")
    return (x - mean) / np.sqrt(var + attrs["epsilon"]) * scale + offset


_OPS = {
    "Identity": lambda a, x: x,
    "Conv2D": lambda a, x, w: conv2d_nhwc(x, w, a["strides"], a["padding"]),
    "BiasAdd": lambda a, x, b: x + b,
    "Relu": lambda a, x: np.maximum(x, 0),
    "MaxPool": lambda a, x: pool_nhwc(x, a["ksize"], a["strides"], a["padding"], "MaxPool"),
    "AvgPool": lambda a, x: pool_nhwc(x, a["ksize"], a["strides"], a["padding"], "AvgPool"),
    "ConcatV2": lambda a, *xs: np.concatenate(xs[:-1], axis=int(xs[-1])),
    "Mul": lambda a, x, y: x * y,
    "Add": lambda a, x, y: x + y,
    "AddV2": lambda a, x, y: x + y,
    "MatMul": lambda a, x, y: (x.T if a.get("transpose_a") else x) @ (y.T if a.get("transpose_b") else y),
    "Reshape": lambda a, x, shape: x.reshape([int(d) for d in shape]),
    "FusedBatchNorm": lambda a, *xs: _fused_batch_norm(*xs, a),
    "Square": lambda a, x: x * x,
    "Sum": lambda a, x, axes: x.sum(axis=tuple(np.atleast_1d(axes).tolist()), keepdims=bool(a.get("keep_dims"))),
    "Maximum": lambda a, x, y: np.maximum(x, y),
    "Rsqrt": lambda a, x: 1.0 / np.sqrt(x),
}


def run_graph(graph, feeds: dict[str, np.ndarray], fetch: str, dtype=np.float64) -> np.ndarray:
    """Evaluate node ``fetch`` of a frozen graph given its placeholders' values.

    Args:
        graph: a :class:`facekit.pretrained.facenet_graph.FrozenGraph`.
        feeds: placeholder name -> array (NHWC for images).
        fetch: the node to compute, e.g. "embeddings".
        dtype: float type of the computation (float constants are cast to it; int ones are kept).

    Returns:
        The node's value as ``dtype``.

    Raises:
        KeyError: a node the graph lacks, or a placeholder not fed; NotImplementedError: an op not listed above.
    """
    def source(ref: str) -> str:
        name, _, port = ref.partition(":")
        if port not in ("", "0"):
            raise NotImplementedError(f"output {ref!r}: only a node's first output is supported")
        return name

    order, seen, stack = [], set(), [fetch]  # iterative depth-first post-order over data inputs
    while stack:
        name = stack[-1]
        if name in seen:
            stack.pop()
            continue
        pending = [source(i) for i in graph.nodes[name].inputs if not i.startswith("^")]
        pending = [p for p in pending if p not in seen]
        if pending:
            stack.extend(pending)
        else:
            seen.add(name)
            order.append(name)
            stack.pop()
    uses: dict[str, int] = {}
    for name in order:
        for i in graph.nodes[name].inputs:
            if not i.startswith("^"):
                uses[source(i)] = uses.get(source(i), 0) + 1
    values: dict[str, np.ndarray] = {}
    for name in order:
        node = graph.nodes[name]
        if node.op == "Const":
            value = graph.consts[name]
            values[name] = value.astype(dtype) if value.dtype.kind == "f" else value
            continue
        if node.op == "Placeholder":
            values[name] = np.asarray(feeds[name], dtype=dtype)
            continue
        if node.op not in _OPS:
            raise NotImplementedError(f"op {node.op} (node {name}) is not supported; supported: {', '.join(_OPS)}")
        args = [values[source(i)] for i in node.inputs if not i.startswith("^")]
        values[name] = np.asarray(_OPS[node.op](node.attrs, *args))
        for i in node.inputs:  # free what no later node reads
            if not i.startswith("^"):
                uses[source(i)] -= 1
                if uses[source(i)] == 0 and source(i) != fetch:
                    del values[source(i)]
    return values[fetch].astype(dtype)


__all__ = ["run_graph", "conv2d_nhwc", "pool_nhwc"]
