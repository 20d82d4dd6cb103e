"""The fine-tuning engine: the training config and its default presets, unfreezing plans, discriminative learning
rates, schedules, augmentation presets, checkpoints and the training loop."""

from ..data.augment import PRESETS, train_transform  # the presets live with the data transforms
from .checkpoint import load_checkpoint, save_checkpoint
from .config import CURVE_FINE_TUNE_EPOCHS, FINE_TUNE_DEFAULTS, SCRATCH_DEFAULTS, TrainConfig
from .loop import Interrupted, Trainer, save_training_curves
from .lr import SCHEDULERS, lr_find, make_scheduler
from .plan import SCHEDULES, Stage, apply_stage, build_plan, param_groups

__all__ = [
    "CURVE_FINE_TUNE_EPOCHS", "FINE_TUNE_DEFAULTS", "PRESETS", "SCHEDULERS", "SCHEDULES", "SCRATCH_DEFAULTS",
    "Interrupted", "Stage", "TrainConfig", "Trainer", "apply_stage", "build_plan", "load_checkpoint", "lr_find",
    "make_scheduler", "param_groups", "save_checkpoint", "save_training_curves", "train_transform",
]
