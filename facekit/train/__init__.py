"""The course's single training loop, its callbacks and checkpoints."""

from facekit.train.callbacks import Callback, EarlyStopping, PlotHistory
from facekit.train.checkpoint import load_checkpoint, save_checkpoint
from facekit.train.loop import TrainConfig, History, FitState, accuracy, evaluate, fit, predict
from facekit.train.plots import plot_history
from facekit.train.seed import epoch_seed, resolve_device, seed_everything

__all__ = ["Callback", "EarlyStopping", "PlotHistory", "TrainConfig", "History", "FitState", "accuracy",
           "evaluate", "fit", "predict", "plot_history", "load_checkpoint", "save_checkpoint",
           "epoch_seed", "resolve_device", "seed_everything"]
