"""Evaluate your own faces: any pair list, any course model, the LFW protocol, intervals, and a record of
how each photo's face was found.

``pairs`` reads LFW's ``pairs.txt`` or a CSV/TSV (``path1, path2, same[, fold]``) with errors that name
the file and line; ``models`` turns "dlib", "facenet" or a callable into an embedding function with a
face-finding stage per photo; ``evaluate`` is :func:`verify_pairs` (k-fold accuracy, AUC, EER, TAR@FAR,
ROC, intervals resampling people, a table per detector stage, the bad inputs by kind); ``identify``
enrols a folder of people and queries another (rank-1, CMC, open-set rejection at a target FAR).
``notebooks/11_verify_your_faces`` is the report (``facekit report 11 -p pairs=... -p images=...``).

>>> from facekit.verify import verify_pairs, identify_folders, read_pair_list
"""

from facekit.verify.evaluate import (INTERVAL_FAR, NO_FACE_WARN, REPORT_FARS, NoFaceWarning, VerifyResult,
                                     verify_pairs)
from facekit.verify.identify import IdentifyResult, folder_images, identify_folders
from facekit.verify.models import DLIB_CHAIN, MODEL_OPTIONS, MODELS, Embedded, make_embedder
from facekit.verify.pairs import (DEFAULT_FOLDS, InputError, PairList, PairListError, pairs_from_folder,
                                  read_pair_list, write_pair_list)

__all__ = ["VerifyResult", "verify_pairs", "NoFaceWarning", "NO_FACE_WARN", "REPORT_FARS", "INTERVAL_FAR",
           "IdentifyResult", "identify_folders", "folder_images", "Embedded", "MODELS", "MODEL_OPTIONS", "DLIB_CHAIN",
           "make_embedder", "PairList",
           "PairListError", "InputError", "read_pair_list", "write_pair_list", "pairs_from_folder",
           "DEFAULT_FOLDS"]
