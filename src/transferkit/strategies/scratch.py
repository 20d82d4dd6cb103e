"""The from-scratch baseline: the same architecture, randomly initialised, trained on the same split.

Every transfer result is judged against it: a pretrained backbone that does not beat this is not helping
(negative or neutral transfer, Rosenstein et al., "To Transfer or Not To Transfer", NIPS 2005 workshop).
It is also how ``transferkit pretrain`` trains a source model of your own.
"""

from __future__ import annotations

from ..backbones import Backbone
from ..features.extract import DEFAULT_MAX_BAD_FRACTION
from ..training import TrainConfig
from .fine_tune import FineTuneClassifier


class ScratchClassifier(FineTuneClassifier):
    """Random initialisation, every layer trained from the first step (the ``full`` schedule).

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
    schedule = "full"
    head_epochs = 0
    epochs_per_stage = 1
    unfreeze_top = None
    lr_decay = 1.0
    train_bn = False
    lr_find = False
    peft = None  # the scratch baseline trains every weight
    lora_rank = 8
    prompt_tokens = 20
    prompt_init = None

    def __init__(
        self,
        backbone: str | Backbone = "packaged:efficientnet_lite0",
        epochs: int = 15,
        lr: float = 2e-3,
        scheduler: str = "cosine",
        warmup_fraction: float = 0.05,
        batch_size: int = 32,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.0,
        class_weight: str | None = None,
        balanced_sampling: bool = False,
        augment: str = "light",
        early_stopping: int | None = None,
        precise_bn: int = 0,
        monitor: str = "val_accuracy",
        validation_fraction: float = 0.1,
        precision: str = "auto",
        image_size: int | None = None,
        run_dir: str | None = None,
        checkpoint_every: int | None = None,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        device: str = "auto",
        num_workers: int = 0,
        seed: int = 0,
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
        return TrainConfig(**{**base.__dict__, "schedule": "full", "head_epochs": 0, "lr_head": self.lr,
                              "lr_backbone": self.lr})
