"""The course's single training loop, its callbacks and checkpoints, and the fine-tuning pieces."""

from facekit.train.callbacks import Callback, EarlyStopping, PlotHistory
from facekit.train.checkpoint import load_checkpoint, save_checkpoint
from facekit.train.finetune import (count_trainable, freeze, freeze_norm_stats, layer_decay_scales, layer_prefixes,
                                    linear_probe, param_groups, trainable_parameters, unfreeze)
from facekit.train.config import TrainConfig
from facekit.train.evaluate import accuracy, evaluate, predict
from facekit.train.loop import fit
from facekit.train.optim import OPTIMIZERS, SCHEDULERS, lr_at, make_optimizer, register_optimizer
from facekit.train.state import FitState, History
from facekit.viz.history import plot_history
from facekit.train.seed import epoch_seed, resolve_device, seed_everything

__all__ = ["Callback", "EarlyStopping", "PlotHistory", "TrainConfig", "History", "FitState", "accuracy",
           "evaluate", "fit", "predict", "plot_history", "load_checkpoint", "save_checkpoint",
           "epoch_seed", "resolve_device", "seed_everything", "freeze", "freeze_norm_stats", "unfreeze",
           "trainable_parameters", "count_trainable", "param_groups", "layer_decay_scales", "layer_prefixes",
           "linear_probe", "OPTIMIZERS", "SCHEDULERS", "make_optimizer", "register_optimizer", "lr_at"]
