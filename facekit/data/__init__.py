"""Data: the synthetic-face generator (the offline default) and loaders for real face datasets.

>>> from facekit.data import SyntheticFaces
>>> image, label = SyntheticFaces(num_identities=2, images_per_identity=2, image_size=32)[3]
>>> tuple(image.shape), label
((3, 32, 32), 1)
"""

from facekit.data.closed_set import ClosedSet, load_closed_set
from facekit.data.detection import DlibFaceBoxes
from facekit.data.download import DownloadError, download_lfw, fetch
from facekit.data.folders import ImageFolderFaces
from facekit.data.images import IMAGE_EXTENSIONS, ImageReadError, read_image
from facekit.data.lfw import LFWPairs, Pair, PairsFile, lfw_people, read_pairs
from facekit.data.orl import load_orl
from facekit.data.pairs import Pairs, count_pairs, make_pairs
from facekit.data.registry import DatasetNotFound, available_datasets, find_data_root, load_dataset
from facekit.data.samplers import IdentityBatchSampler
from facekit.data.scenes import SyntheticScenes
from facekit.data.splits import OpenSet, TensorImages, split_people, split_per_identity, synthetic_open_set
from facekit.data.synthetic import Difficulty, Identity, Nuisance, SyntheticFaces, render_face, sample_identity

__all__ = [
    "DlibFaceBoxes", "DownloadError", "download_lfw", "fetch", "ImageFolderFaces", "IMAGE_EXTENSIONS",
    "ImageReadError", "read_image", "LFWPairs", "Pair", "PairsFile", "lfw_people", "read_pairs", "load_orl",
    "Pairs", "count_pairs", "make_pairs", "IdentityBatchSampler",
    "DatasetNotFound", "available_datasets", "find_data_root", "load_dataset", "SyntheticScenes",
    "TensorImages", "split_per_identity", "Difficulty", "Identity", "Nuisance", "SyntheticFaces",
    "render_face", "sample_identity", "ClosedSet", "load_closed_set", "OpenSet", "split_people",
    "synthetic_open_set",
]
