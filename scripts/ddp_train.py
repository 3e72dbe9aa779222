"""Train an embedding backbone with a margin head on synthetic faces, on N processes (DDP).

Launch with torchrun (one process per GPU; on a CPU-only machine gloo runs N CPU processes)::

    torchrun --standalone --nproc_per_node=4 scripts/ddp_train.py --epochs 5 --batch-size 256
    torchrun --standalone --nproc_per_node=2 scripts/ddp_train.py --device cpu --epochs 1 --batch-size 32 \\
        --identities 20 --images 10        # a quick check on a laptop
    python scripts/ddp_train.py --epochs 1  # a single process: the same code, no process group

``--batch-size`` is the global batch (each of the N processes takes batch/N); the learning rate is not
rescaled, so a run on 1 GPU and a run on 4 GPUs with the same flags take the same steps. Rank 0 prints
and writes ``--checkpoint`` (resumed when it exists).
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn


class Classifier(nn.Module):
    """Backbone embeddings followed by a linear classifier over the training identities."""

    def __init__(self, backbone: nn.Module, embedding_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(embedding_dim, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128, help="the global batch, split over the processes")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--identities", type=int, default=100, help="synthetic identities")
    p.add_argument("--images", type=int, default=40, help="images per identity")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (a GPU per process when CUDA is there), cpu or cuda")
    p.add_argument("--checkpoint", default=None, help="checkpoint file written by rank 0 after each epoch")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    from facekit.data import SyntheticFaces
    from facekit.train.distributed import cleanup_distributed, default_backend, fit_distributed, init_distributed

    use_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    info = init_distributed(default_backend("cuda" if use_cuda else "cpu"))
    try:
        train = SyntheticFaces(num_identities=args.identities, images_per_identity=args.images,
                               image_size=args.image_size, seed=args.seed)
        torch.manual_seed(args.seed)  # every rank builds the same model; DDP also broadcasts rank 0's weights
        backbone = nn.Sequential(  # a small CNN: swap in facekit.models' IResNet or MobileFaceNet
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        model = Classifier(backbone, 64, args.identities)
        if info.is_main:
            print(f"{info.world_size} process(es), global batch {args.batch_size} "
                  f"({args.batch_size // info.world_size} per process), {len(train)} images", flush=True)
        history = fit_distributed(model, train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  seed=args.seed, device="cuda" if use_cuda else "cpu",
                                  checkpoint=args.checkpoint, progress=info.is_main)
        if info.is_main:
            last = history.records[-1]
            print(f"done: epoch {last['epoch']}, train_loss {last['train_loss']:.4f}, "
                  f"train_accuracy {last['train_accuracy']:.4f}", flush=True)
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
