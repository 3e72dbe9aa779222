"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a PyTorch module.

The network of dlib's ``dnn_face_recognition_ResNet_model_v1.cpp`` example, input first::

    input_rgb_image_sized<150>         (x - mean_rgb) / 256, mean_rgb = (122.782, 117.001, 104.298)
    con<32,7,7,2,2> affine relu        150 -> 72  (dlib pads a strided conv by 0)
    max_pool<3,3,2,2>                  72 -> 35
    3 x ares<32>                       35
    ares_down<64>, 3 x ares<64>        35 -> 17
    ares_down<128>, 2 x ares<128>      17 -> 8
    ares_down<256>, 2 x ares<256>      8 -> 4   (conv branch 3x3, zero-padded to the shortcut's 4x4)
    ares_down<256>                     4 -> 2   (conv branch 1x1, zero-padded to 2x2)
    avg_pool_everything, fc_no_bias<128>

``ares`` is ``relu(x + affine(con3x3(relu(affine(con3x3(x))))))``; ``ares_down`` strides the first
conv by 2 (padding 0) and takes the shortcut through ``avg_pool<2,2,2,2>``. dlib's ``add_prev``
adds tensors of different shapes by zero-padding the smaller one at the end of each axis
(channels, rows, columns), so the widened channels get no shortcut and, in the last two
stages, the conv branch lands in the top-left corner. ``affine`` is batch norm folded into a
per-channel scale and shift. The descriptor is the raw 128-d fc output (dlib's ``loss_metric``
does not normalise it); two faces are the same person when their Euclidean distance is < 0.6.

>>> from facekit.pretrained import load_dlib_resnet
>>> net = load_dlib_resnet()  # doctest: +SKIP
>>> net(torch.full((2, 3, 150, 150), 128.0)).shape  # doctest: +SKIP
torch.Size([2, 128])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facekit.pretrained.dlib_dat import TAG_OR_SKIP, DlibFormatError, DlibNet, dlib_model_path, read_dlib_net

CHIP_SIZE = 150  # input_rgb_image_sized<150>
MEAN_RGB = (122.782, 117.001, 104.298)  # input_rgb_image_sized's avg_red, avg_green, avg_blue
INPUT_SCALE = 256.0  # dlib divides by 256, not 255
DESCRIPTOR_DIM = 128
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the Euclidean distance (loss_metric's dist_thresh)
STEM_WIDTH = 32
# residual blocks from the input outwards: (output channels, stride); stride 2 = ares_down
BLOCKS: tuple[tuple[int, int], ...] = (
    (32, 1), (32, 1), (32, 1),
    (64, 2), (64, 1), (64, 1), (64, 1),
    (128, 2), (128, 1), (128, 1),
    (256, 2), (256, 1), (256, 1),
    (256, 2),
)
# the layers dlib stores for each part, input first (tag/skip wrappers included)
_STEM_KINDS = ["con", "affine", "relu", "max_pool"]
_BLOCK_KINDS = [TAG_OR_SKIP, "con", "affine", "relu", "con", "affine"]
_ADD_KINDS = {1: ["add_prev", "relu"], 2: [TAG_OR_SKIP, TAG_OR_SKIP, "avg_pool", "add_prev", "relu"]}
_HEAD_KINDS = ["avg_pool", "fc"]


def expected_layer_kinds() -> list[str]:
    """The layer kinds of ``dlib_face_recognition_resnet_model_v1.dat`` in file order (input first)."""
    kinds = ["input_rgb_image_sized", *_STEM_KINDS]
    for _, stride in BLOCKS:
        kinds += _BLOCK_KINDS + _ADD_KINDS[stride]
    return kinds + _HEAD_KINDS


class Affine(nn.Module):
    """dlib's ``affine_`` in conv mode: ``y = gamma[c] * x + beta[c]`` (a batch norm folded for inference)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return torch.addcmul(self.beta[:, None, None], x, self.gamma[:, None, None])


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: ``a + b`` where the smaller tensor is zero-padded at the end of C, H and W.

    >>> add_padded(torch.ones(1, 1, 1, 1), torch.ones(1, 2, 2, 2))[0, :, :, 0].tolist()
    [[2.0, 1.0], [1.0, 1.0]]
    """
    shape = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]  # (C, H, W)

    def pad(t):
        c, h, w = t.shape[1:]
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c)) if [c, h, w] != shape else t

    return pad(a) + pad(b)


class DlibResidualBlock(nn.Module):
    """``ares`` (stride 1) or ``ares_down`` (stride 2): ``relu(shortcut(x) (+) affine(conv(relu(affine(conv(x))))))``.

    A strided conv has no padding, as in dlib (``con_``'s default padding is ``nr/2`` only at stride 1).

    >>> DlibResidualBlock(32, 64, 2)(torch.zeros(1, 32, 35, 35)).shape
    torch.Size([1, 64, 17, 17])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1 if stride == 1 else 0)
        self.affine1 = Affine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        self.affine2 = Affine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.stride == 2 else x
        return F.relu(add_padded(y, shortcut))


class DlibFaceResNet(nn.Module):
    """The 29-conv ResNet of dlib's face recognition model; ``forward`` maps RGB chips to 128-d descriptors.

    Args:
        (none: the architecture is fixed; load the weights with :func:`load_dlib_resnet`.)

    Input: ``(B, 3, 150, 150)`` RGB chips with values in [0, 255] (float, or uint8), as made by
    :func:`facekit.pretrained.face_chip.extract_face_chip`. Output: ``(B, 128)`` float32 raw
    descriptors (not unit-norm), equal to ``dlib.face_recognition_model_v1.compute_face_descriptor``.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.conv1 = nn.Conv2d(3, STEM_WIDTH, 7, 2, padding=0)
        self.affine1 = Affine(STEM_WIDTH)
        blocks, width = [], STEM_WIDTH
        for out_channels, stride in BLOCKS:
            blocks.append(DlibResidualBlock(width, out_channels, stride))
            width = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(width, DESCRIPTOR_DIM, bias=False)

    def normalize(self, chips: torch.Tensor) -> torch.Tensor:
        """``(chips - mean_rgb) / 256``, as ``input_rgb_image_sized`` does."""
        if chips.ndim != 4 or chips.shape[1] != 3:
            raise ValueError(f"expected RGB chips of shape (B, 3, H, W), got {tuple(chips.shape)}")
        return (chips.to(self.mean_rgb.dtype) - self.mean_rgb) / INPUT_SCALE

    def features(self, chips: torch.Tensor) -> torch.Tensor:
        """(B, 3, 150, 150) in [0, 255] -> (B, 256, 2, 2), the last feature map."""
        x = F.relu(self.affine1(self.conv1(self.normalize(chips))))  # (B, 32, 72, 72)
        x = F.max_pool2d(x, 3, 2)  # (B, 32, 35, 35)
        return self.blocks(x)  # (B, 256, 2, 2)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(chips).mean(dim=(2, 3)))  # (B, 128)


def _check_kinds(net: DlibNet) -> None:
    got, want = net.kinds(), expected_layer_kinds()
    if got == want:
        return
    i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    raise DlibFormatError(
        f"{net.path}: not dlib's face recognition ResNet v1: layer {i} (input = 0) is "
        f"{got[i] if i < len(got) else 'missing'!s}, expected {want[i] if i < len(want) else 'the end'!s} "
        f"({len(got)} layers, expected {len(want)}; loss {net.loss.kind})"
    )


def _copy(param: torch.Tensor, value, net: DlibNet, what: str) -> None:
    value = torch.as_tensor(value)
    if tuple(value.shape) != tuple(param.shape):
        raise DlibFormatError(f"{net.path}: {what} has shape {tuple(value.shape)}, expected {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(value)


def state_dict_from_dlib(net: DlibNet) -> dict[str, torch.Tensor]:
    """The :class:`DlibFaceResNet` state_dict held by a parsed ``.dat`` file (checked layer by layer)."""
    _check_kinds(net)
    inp = net.input.values
    if (inp["nr"], inp["nc"]) != (CHIP_SIZE, CHIP_SIZE) or any(
            abs(inp[k] - m) > 1e-3 for k, m in zip(("avg_red", "avg_green", "avg_blue"), MEAN_RGB)):
        raise DlibFormatError(f"{net.path}: input layer {inp} differs from input_rgb_image_sized<150> "
                              f"with means {MEAN_RGB}")
    model = DlibFaceResNet()
    convs = [layer for layer in net.layers if layer.kind == "con"]
    affines = [layer for layer in net.layers if layer.kind == "affine"]
    fc = next(layer for layer in net.layers if layer.kind == "fc")
    targets = [(model.conv1, model.affine1)] + [
        pair for block in model.blocks for pair in ((block.conv1, block.affine1), (block.conv2, block.affine2))]
    for i, ((conv, affine), con, aff) in enumerate(zip(targets, convs, affines)):
        if con.values.get("use_relu") or not con.values["use_bias"] or aff.values.get("disabled"):
            raise DlibFormatError(f"{net.path}: conv {i} has options this model does not have: {con.values}")
        if (con.values["padding_y"], con.values["padding_x"]) != conv.padding:
            raise DlibFormatError(f"{net.path}: conv {i} padding {con.values} differs from {conv.padding}")
        # dlib's filters are (num_filters, in_channels, nr, nc), torch's (out, in, kh, kw): the same order
        _copy(conv.weight, con.arrays["filters"], net, f"conv {i} filters")
        _copy(conv.bias, con.arrays["biases"], net, f"conv {i} biases")
        _copy(affine.gamma, aff.arrays["gamma"], net, f"affine {i} gamma")
        _copy(affine.beta, aff.arrays["beta"], net, f"affine {i} beta")
    if fc.values["has_bias"]:
        raise DlibFormatError(f"{net.path}: the fc layer has a bias; dlib's face model uses fc_no_bias")
    _copy(model.fc.weight, fc.arrays["weights"].T, net, "fc weights")  # dlib: (in, out), x @ W
    return model.state_dict()


def load_dlib_resnet(path=None, *, device="cpu") -> DlibFaceResNet:
    """:class:`DlibFaceResNet` with the weights of dlib's ``.dat`` file, in eval mode.

    Args:
        path: the ``.dat`` file; default: ``dlib_face_recognition_resnet_model_v1.dat`` of the
            ``face_recognition_models`` package.
        device: where to put the model.

    Raises:
        FileNotFoundError, DlibFormatError: see :func:`facekit.pretrained.dlib_dat.read_dlib_net`;
        DlibFormatError also for a valid dlib network that is not this ResNet.

    >>> net = load_dlib_resnet()  # doctest: +SKIP
    >>> sum(p.numel() for p in net.parameters())  # doctest: +SKIP
    5614592
    """
    net = read_dlib_net(dlib_model_path("face_recognition") if path is None else path)
    model = DlibFaceResNet()
    model.load_state_dict(state_dict_from_dlib(net))
    return model.eval().to(device)


__all__ = ["DlibFaceResNet", "DlibResidualBlock", "Affine", "add_padded", "load_dlib_resnet", "state_dict_from_dlib",
           "expected_layer_kinds", "CHIP_SIZE", "MEAN_RGB", "DESCRIPTOR_DIM", "SAME_PERSON_DISTANCE"]
