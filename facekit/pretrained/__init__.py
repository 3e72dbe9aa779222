"""Pretrained face models from elsewhere, as PyTorch modules: dlib's face recognition ResNet and FaceNet.

``dlib_dat`` reads dlib's ``.dat`` network files (no dlib code runs), ``dlib_resnet`` is the
network as a ``torch.nn.Module``, ``face_chip`` makes dlib's aligned 150x150 chips from 5
landmarks, ``finding`` finds the face of a photo with a detector chain (HOG, dlib's CNN, MTCNN) and
records which stage found it, and ``descriptors`` runs the pipeline on many images and on LFW's pairs.
``facenet_graph`` reads FaceNet's frozen TensorFlow graph (protobuf, no TensorFlow; imported lazily)
and ``facenet`` loads it into facenet-pytorch's ``InceptionResnetV1`` (:func:`load_facenet`);
``crops`` is FaceNet's photo pipeline (MTCNN, the choice of face, 160x160 crops, cached embeddings),
``facenet_lfw`` LFW's pairs with it; ``transfer`` cuts FaceNet and dlib's ResNet into stages for fine-tuning and does few-shot enrolment and open-set rejection.

>>> from facekit.pretrained import load_dlib_resnet, face_chip, dlib_landmarks
>>> net = load_dlib_resnet()  # doctest: +SKIP
>>> points, found = dlib_landmarks(image)  # doctest: +SKIP
>>> descriptor = net(torch.from_numpy(face_chip(image, points)).permute(2, 0, 1)[None])  # doctest: +SKIP
"""

from facekit.pretrained.descriptors import (BACKENDS, FaceFinding, LandmarkSettings, LFWDescriptorResult,
                                            compute_descriptors, dlib_embedder, evaluate_lfw_pairs, find_faces,
                                            image_descriptors, image_landmarks)
from facekit.pretrained.finding import STAGES, FaceFinder, FaceFound, dlib_points_from_five
from facekit.pretrained.dlib_dat import DlibFormatError, DlibLayer, DlibNet, dlib_model_path, read_dlib_net
from facekit.pretrained.dlib_resnet import (CHIP_SIZE, DESCRIPTOR_DIM, MEAN_RGB, SAME_PERSON_DISTANCE, DlibFaceResNet,
                                            expected_layer_kinds, load_dlib_resnet, state_dict_from_dlib)
from facekit.pretrained.face_chip import (CHIP_PADDING, TEMPLATE_5, ChipDetails, DlibNotInstalled, chip_details,
                                          extract_chip, face_chip, similarity_transform)
from facekit.pretrained.landmarks import dlib_landmarks
from facekit.pretrained.facenet import facenet_cache_dir, load_facenet, standardize_faces
from facekit.pretrained.facenet_graph import (FacenetGraphError, facenet_graph_path, read_frozen_graph,
                                              state_dict_from_graph)
from facekit.pretrained.crops import (SELECT_CHOICES, CropSettings, FaceBoxes, crop_face, detect_faces, embed_crops,
                                      face_crops, image_embeddings, select_face)
from facekit.pretrained.facenet_lfw import (FacenetLFWResult, PairSubset, evaluate_facenet_lfw, lfw_pair_subset,
                                            pair_kfold)
from facekit.pretrained.transfer import (DLIB_STAGES, FACENET_STAGES, DlibSlice, FacenetSlice, Gallery, OpenSetResult,
                                         choose_open_set_threshold, enrol, few_shot_split, identify, keep_norm_stats,
                                         open_set_metrics)

__all__ = ["DlibFormatError", "DlibLayer", "DlibNet", "dlib_model_path", "read_dlib_net",
           "DlibFaceResNet", "load_dlib_resnet", "state_dict_from_dlib", "expected_layer_kinds",
           "CHIP_SIZE", "CHIP_PADDING", "DESCRIPTOR_DIM", "MEAN_RGB", "SAME_PERSON_DISTANCE", "TEMPLATE_5",
           "ChipDetails", "chip_details", "extract_chip", "face_chip", "similarity_transform", "dlib_landmarks",
           "DlibNotInstalled", "compute_descriptors", "image_landmarks", "image_descriptors", "evaluate_lfw_pairs",
           "LandmarkSettings", "LFWDescriptorResult", "BACKENDS", "FaceFinding", "find_faces",
           "dlib_embedder", "STAGES", "FaceFinder", "FaceFound", "dlib_points_from_five",
           "load_facenet", "standardize_faces", "facenet_cache_dir", "FacenetGraphError", "facenet_graph_path",
           "read_frozen_graph", "state_dict_from_graph",
           "SELECT_CHOICES", "CropSettings", "FaceBoxes", "FacenetLFWResult", "PairSubset", "crop_face", "detect_faces",
           "embed_crops", "evaluate_facenet_lfw", "face_crops", "image_embeddings", "lfw_pair_subset", "pair_kfold",
           "select_face", "DLIB_STAGES", "DlibSlice", "FACENET_STAGES", "FacenetSlice", "Gallery", "OpenSetResult", "choose_open_set_threshold",
           "enrol", "few_shot_split", "identify", "keep_norm_stats", "open_set_metrics"]
