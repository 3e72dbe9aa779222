"""Privacy: DP-SGD with Opacus, federated averaging, template protection and face anonymisation.

Every library is imported when used, never at ``import facekit.privacy``.

>>> from facekit.privacy import TemplateCipher, RandomProjection, fedavg, epsilon_for, anonymise
"""

from facekit.privacy.anonymise import METHODS, anonymise, anonymise_faces
from facekit.privacy.dp import (DPConfig, DPResult, accountant_epsilon_matches, clipped_noisy_gradient, epsilon_for,
                                gaussian_epsilon, make_dp_compatible, train_private)
from facekit.privacy.federated import (FedConfig, FedResult, fedavg, local_train, split_by_identity, split_iid,
                                       weighted_average)
from facekit.privacy.templates import (EncryptedTemplate, RandomProjection, TemplateCipher, TemplateIntegrityError,
                                       hamming_similarity)

__all__ = ["METHODS", "anonymise", "anonymise_faces", "DPConfig", "DPResult", "accountant_epsilon_matches",
           "clipped_noisy_gradient", "epsilon_for", "gaussian_epsilon", "make_dp_compatible", "train_private",
           "FedConfig", "FedResult", "fedavg", "local_train", "split_by_identity", "split_iid", "weighted_average",
           "EncryptedTemplate", "RandomProjection", "TemplateCipher", "TemplateIntegrityError", "hamming_similarity"]
