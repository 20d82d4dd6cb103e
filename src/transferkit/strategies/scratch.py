"""The from-scratch baseline: the same architecture, randomly initialised, trained on the same split.

Every transfer result is judged against it: a pretrained backbone that does not beat this is not helping
(negative or neutral transfer, Rosenstein et al., "To Transfer or Not To Transfer", NIPS 2005 workshop).
"""

from __future__ import annotations

from ..backbones import Backbone
from ..features.extract import DEFAULT_MAX_BAD_FRACTION
from ._train import Stage
from .fine_tune import FineTuneClassifier


class ScratchClassifier(FineTuneClassifier):
    """Random initialisation, all layers trained from the first step.

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

    def __init__(
        self,
        backbone: str | Backbone = "packaged:efficientnet_lite0",
        epochs: int = 15,
        lr: float = 2e-3,
        batch_size: int = 32,
        weight_decay: float = 5e-4,
        augment: str = "light",
        image_size: int | None = None,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        device: str = "auto",
        num_workers: int = 0,
        seed: int = 0,
        progress: bool = True,
    ):
        self.backbone = backbone
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.augment = augment
        self.image_size = image_size
        self.max_bad_fraction = max_bad_fraction
        self.device = device
        self.num_workers = num_workers
        self.seed = seed
        self.progress = progress

    def _stages(self) -> list[Stage]:
        return [Stage("scratch", self.epochs, self.lr, self.lr, trainable_groups=None)]
