"""The from-scratch baseline: the same architecture, randomly initialised, trained on the same split.

Every transfer result is judged against it: a pretrained backbone that does not beat this is not helping
(negative or neutral transfer, Rosenstein et al., "To Transfer or Not To Transfer", NIPS 2005 workshop).
It is also how ``transferkit pretrain`` trains a source model of your own.
"""

from __future__ import annotations

from ..backbones import Backbone
from ..backbones.adapters import DEFAULT_LORA_RANK
from ..backbones.prompt_tuning import DEFAULT_PROMPT_TOKENS
from ..features.extract import DEFAULT_MAX_BAD_FRACTION
from ..training import SCRATCH_DEFAULTS, TrainConfig
from .fine_tune import FineTuneClassifier


class ScratchClassifier(FineTuneClassifier):
    """Random initialisation, every layer trained from the first step (the ``full`` schedule).

    The training defaults are :data:`~transferkit.training.SCRATCH_DEFAULTS` (each with its reason there).

    Args:
        backbone: the architecture to use (its weights are ignored), e.g. ``packaged:efficientnet_lite0``.
        epochs: training epochs.
        lr: learning rate of every layer (AdamW).
        image_size: square input size; small images (e.g. 28 px Fashion-MNIST) train far faster at 64-112 px.
        Others as in :class:`FineTuneClassifier`.
    """

    strategy_name = "scratch"
    # Fixed for this strategy (not constructor parameters): whole network, random init, pooled features.
    layer = None
    pretrained = False
    schedule = SCRATCH_DEFAULTS.schedule
    head_epochs = SCRATCH_DEFAULTS.head_epochs
    epochs_per_stage = SCRATCH_DEFAULTS.epochs_per_stage
    unfreeze_top = SCRATCH_DEFAULTS.unfreeze_top
    lr_decay = SCRATCH_DEFAULTS.lr_decay
    train_bn = SCRATCH_DEFAULTS.train_bn
    lr_find = False
    peft = None  # the scratch baseline trains every weight
    lora_rank = DEFAULT_LORA_RANK
    prompt_tokens = DEFAULT_PROMPT_TOKENS
    prompt_init = None
    task_weighting = "equal"

    def __init__(
        self,
        backbone: str | Backbone = "packaged:efficientnet_lite0",
        epochs: int = SCRATCH_DEFAULTS.epochs,
        lr: float = SCRATCH_DEFAULTS.lr_head,
        scheduler: str = SCRATCH_DEFAULTS.scheduler,
        warmup_fraction: float = SCRATCH_DEFAULTS.warmup_fraction,
        batch_size: int = SCRATCH_DEFAULTS.batch_size,
        weight_decay: float = SCRATCH_DEFAULTS.weight_decay,
        label_smoothing: float = SCRATCH_DEFAULTS.label_smoothing,
        class_weight: str | None = SCRATCH_DEFAULTS.class_weight,
        balanced_sampling: bool = SCRATCH_DEFAULTS.balanced_sampling,
        augment: str = SCRATCH_DEFAULTS.augment,
        early_stopping: int | None = SCRATCH_DEFAULTS.early_stopping,
        precise_bn: int = SCRATCH_DEFAULTS.precise_bn,
        monitor: str = SCRATCH_DEFAULTS.monitor,
        validation_fraction: float = 0.1,
        precision: str = SCRATCH_DEFAULTS.precision,
        image_size: int | None = None,
        run_dir: str | None = None,
        checkpoint_every: int | None = SCRATCH_DEFAULTS.checkpoint_every,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        device: str = "auto",
        num_workers: int = SCRATCH_DEFAULTS.num_workers,
        seed: int = SCRATCH_DEFAULTS.seed,
        progress: bool = True,
    ):
        self.backbone = backbone
        self.epochs = epochs
        self.lr = lr
        self.scheduler = scheduler
        self.warmup_fraction = warmup_fraction
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.balanced_sampling = balanced_sampling
        self.augment = augment
        self.early_stopping = early_stopping
        self.precise_bn = precise_bn
        self.monitor = monitor
        self.validation_fraction = validation_fraction
        self.precision = precision
        self.image_size = image_size
        self.run_dir = run_dir
        self.checkpoint_every = checkpoint_every
        self.max_bad_fraction = max_bad_fraction
        self.device = device
        self.num_workers = num_workers
        self.seed = seed
        self.progress = progress

    def train_config(self) -> TrainConfig:
        base = super().train_config()
        return TrainConfig(**{**base.__dict__, "schedule": self.schedule, "head_epochs": self.head_epochs,
                              "lr_head": self.lr, "lr_backbone": self.lr})
