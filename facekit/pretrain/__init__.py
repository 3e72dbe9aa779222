"""Self-supervised pretraining on unlabelled faces: a masked autoencoder on the ViT, SimCLR on a CNN, and the
checkpoints that carry the pretrained backbones to the fine-tuning chapter.

- :mod:`facekit.pretrain.masking`: per-sample random patch masking, patchify / unpatchify;
- :mod:`facekit.pretrain.mae`: ``MaskedAutoencoder`` (encoder = a plain ``VisionTransformer``);
- :mod:`facekit.pretrain.contrastive`: NT-Xent, the projection head, ``SimCLR``, two-view augmentation;
- :mod:`facekit.pretrain.checkpoints`: ``save_pretrained`` / ``load_pretrained``.
"""

from facekit.pretrain.checkpoints import (ARCHITECTURES, arch_of, build_arch, load_pretrained, pretrained_path,
                                          save_pretrained)
from facekit.pretrain.contrastive import (NTXentLoss, ProjectionHead, SimCLR, SimCLRConfig, TwoViews,
                                          backbone_features, nt_xent_loss, simclr_augment, two_views)
from facekit.pretrain.mae import MAEConfig, MAEOutput, MaskedAutoencoder
from facekit.pretrain.masking import (PatchMask, gather_tokens, mask_image, num_masked_patches, patchify,
                                      random_masking, unpatchify)

__all__ = ["ARCHITECTURES", "arch_of", "build_arch", "load_pretrained", "pretrained_path", "save_pretrained",
           "NTXentLoss", "ProjectionHead", "SimCLR", "SimCLRConfig", "TwoViews", "backbone_features",
           "nt_xent_loss", "simclr_augment", "two_views", "MAEConfig", "MAEOutput", "MaskedAutoencoder",
           "PatchMask", "gather_tokens", "mask_image", "num_masked_patches", "patchify", "random_masking",
           "unpatchify"]
