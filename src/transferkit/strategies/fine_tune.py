"""Fine-tuning: train a new head on the frozen backbone, then unfreeze the backbone at a low learning rate.

The two-stage recipe of Yosinski et al., "How transferable are features in deep neural networks?" (NeurIPS
2014) and Kumar et al., "Fine-Tuning can Distort Pretrained Features" (ICLR 2022; LP-FT): a random head
trained jointly with the backbone first sends large gradients into pretrained weights, so the head goes first.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from .._utils import resolve_device, set_seed
from ..backbones import Backbone
from ..data import ImageDataset, check_trainable
from ..features.extract import DEFAULT_MAX_BAD_FRACTION, check_bad_fraction
from ..heads import build_head_module
from ._base import TransferClassifier, as_dataset
from ._train import Stage, TransferModel, predict_logits, scan_images, train_stages
from .feature_extraction import resolve_backbone


class FineTuneClassifier(TransferClassifier):
    """Head first with the backbone frozen, then the whole network at a lower learning rate.

    Args:
        backbone: spec or :class:`Backbone`.
        layer: feature layer the head reads (default: pre-logits).
        head_epochs: epochs of the first stage (backbone frozen, BatchNorm statistics fixed).
        epochs: epochs of the second stage (all groups trainable).
        lr_head: learning rate of the head in both stages.
        lr_backbone: learning rate of the backbone in the second stage (typically 10-100x lower).
        batch_size, weight_decay: optimiser settings (AdamW).
        augment: ``light`` (random resized crop + flip) or ``none``.
        image_size: train and predict at this square size instead of the weights' own.
        pretrained: False trains the same architecture from a random initialisation.
        device, num_workers, seed, progress: as everywhere.
    """

    strategy_name = "fine-tune"

    def __init__(
        self,
        backbone: str | Backbone = "packaged:efficientnet_lite0",
        layer: str | None = None,
        head_epochs: int = 2,
        epochs: int = 3,
        lr_head: float = 1e-3,
        lr_backbone: float = 1e-4,
        batch_size: int = 32,
        weight_decay: float = 1e-4,
        augment: str = "light",
        image_size: int | None = None,
        pretrained: bool = True,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        device: str = "auto",
        num_workers: int = 0,
        seed: int = 0,
        progress: bool = True,
    ):
        self.backbone = backbone
        self.layer = layer
        self.head_epochs = head_epochs
        self.epochs = epochs
        self.lr_head = lr_head
        self.lr_backbone = lr_backbone
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.augment = augment
        self.image_size = image_size
        self.pretrained = pretrained
        self.max_bad_fraction = max_bad_fraction
        self.device = device
        self.num_workers = num_workers
        self.seed = seed
        self.progress = progress

    def _stages(self) -> list[Stage]:
        return [
            Stage("head", self.head_epochs, self.lr_head, 0.0, trainable_groups=[]),
            Stage("fine-tune", self.epochs, self.lr_head, self.lr_backbone, trainable_groups=None),
        ]

    def _build(self, backbone: Backbone, n_classes: int) -> tuple[TransferModel, dict[str, Any]]:
        if self.image_size is not None:
            backbone.preprocessing = backbone.preprocessing.with_image_size(self.image_size)
        layer = backbone._check_layer(self.layer)
        config = {"type": "linear", "in_features": backbone.layer_dim(layer), "out_features": n_classes,
                  "standardize": False}
        return TransferModel(backbone, build_head_module(config), layer), config

    def fit(self, X: Any, y: Any = None, *, validation: Any = None) -> FineTuneClassifier:
        """Train on ``X``; ``validation`` (optional) is evaluated after every epoch into ``history_``."""
        start = time.perf_counter()
        set_seed(self.seed)
        ds = as_dataset(X, y)
        check_trainable(ds)
        if self.augment not in ("none", "light"):
            from .._errors import TransferkitError

            raise TransferkitError(f"augment must be 'none' or 'light'. Got {self.augment!r} instead.")
        backbone = resolve_backbone(self.backbone, self.pretrained)
        if backbone is self.backbone:  # training changes weights and preprocessing: never the caller's object
            backbone = copy.deepcopy(backbone)
        good, skipped = scan_images(ds, backbone.preprocessing.channels, self.num_workers)
        check_bad_fraction(len(skipped), len(ds), self.max_bad_fraction, ds.name or "the dataset")
        train = ds.subset(good)
        check_trainable(train)
        device = resolve_device(self.device)
        model, head_config = self._build(backbone, len(ds.classes))
        val = as_dataset(validation) if validation is not None else None
        self.history_ = train_stages(
            model, train, self._stages(), device=device, batch_size=self.batch_size,
            weight_decay=self.weight_decay, augment=self.augment, seed=self.seed, num_workers=self.num_workers,
            validation=val, progress=self.progress,
        )
        model.cpu()
        self.model_ = model
        self.backbone_ = model.backbone
        self.layer_ = model.layer
        self.head_module_ = model.head
        self.head_config_ = head_config
        self.head_classes_ = np.arange(len(ds.classes))
        self.classes_ = np.asarray(ds.classes)
        self.fit_info_ = {
            "strategy": self.strategy_name, "train_images": int(len(train)),
            "skipped": [list(s) for s in ds.skipped + skipped], "history": self.history_,
            "seconds": round(time.perf_counter() - start, 3),
        }
        return self

    def _predict_proba_dataset(self, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        device = resolve_device(self.device)
        logits, index, skipped = predict_logits(self.model_, ds, device, self.batch_size, self.num_workers,
                                                progress=self.progress and len(ds) > 256)
        self.model_.cpu()
        return torch.from_numpy(logits).softmax(-1).numpy(), index, skipped
