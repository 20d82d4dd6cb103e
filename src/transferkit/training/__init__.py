"""The fine-tuning engine: unfreezing plans, discriminative learning rates, schedules, augmentation presets,
checkpoints and the training loop."""

from ..data.augment import PRESETS, train_transform  # the presets live with the data transforms
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import Interrupted, TrainConfig, Trainer, save_training_curves
from .lr import SCHEDULERS, lr_find, make_scheduler
from .plan import SCHEDULES, Stage, apply_stage, build_plan, param_groups

__all__ = [
    "PRESETS", "SCHEDULERS", "SCHEDULES", "Interrupted", "Stage", "TrainConfig", "Trainer", "apply_stage",
    "build_plan", "load_checkpoint", "lr_find", "make_scheduler", "param_groups", "save_checkpoint",
    "save_training_curves", "train_transform",
]
