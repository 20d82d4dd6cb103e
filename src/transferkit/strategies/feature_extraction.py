"""Feature extraction: a frozen pretrained backbone, cached features, and a new head on top.

The classic recipe (Donahue et al., "DeCAF", ICML 2014; Razavian et al., "CNN Features off-the-shelf", 2014):
features from a network trained on a large source task, a linear classifier (or any scikit-learn estimator)
trained on the target labels. The backbone never changes, so its features are computed once and cached.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import TransferkitError
from ..backbones import Backbone, create_backbone
from ..data import ImageDataset, check_trainable
from ..data.seen import training_digests
from ..features import extract_features
from ..features.extract import DEFAULT_MAX_BAD_FRACTION
from ..heads import ModuleHead, head_to_module, make_head
from ..heads.persist import module_head_state, restore_module_head, restore_sklearn_head, sklearn_head_state
from ._base import TransferClassifier, as_dataset, class_values, full_proba


def with_options(backbone: str | Backbone, options: dict[str, Any] | None, pretrained: bool = True) -> str | Backbone:
    """What a strategy's ``backbone`` parameter takes: the spec itself, or with source ``options`` (text:
    ``pooling``, ``max_length``) the backbone they configure, created here (the options are then checked)."""
    if not options or isinstance(backbone, Backbone):
        return backbone
    return create_backbone(backbone, pretrained=pretrained, **options)


def resolve_backbone(backbone: str | Backbone, pretrained: bool = True) -> Backbone:
    if isinstance(backbone, Backbone):
        if pretrained or not backbone.weights.pretrained:
            return backbone
        # pretrained=False means the architecture only, for a Backbone object too (the scratch baseline); a text
        # backbone is rebuilt with the options it was created with (pooling, max_length), which its trunk applies
        fresh = create_backbone(backbone.arch_spec, pretrained=False, **backbone.options)
        if fresh.modality != "text":  # e.g. an image size chosen for the transfer model
            fresh.preprocessing = backbone.preprocessing
        return fresh
    return create_backbone(backbone, pretrained=pretrained)


class FeatureExtractionClassifier(TransferClassifier):
    """Frozen backbone → cached features → head.

    Args:
        backbone: a spec such as ``packaged:efficientnet_lite0`` or a :class:`Backbone`.
        layer: feature layer (default: pooled pre-logits); see ``Backbone.layers``.
        head: ``logistic`` (default: L2 strength and standardisation chosen by 5-fold cross-validation on the
            features, see :mod:`transferkit.heads.tuned`), ``svm`` (a linear SVM, tuned the same way), ``linear``,
            ``mlp``, ``random-forest``, ``gradient-boosting``, or any scikit-learn classifier (cloned, then fitted
            on the features). ``fit_info_["head"]`` records what was chosen.
        pretrained: False uses the same architecture randomly initialised.
        cache: True (default location), a directory, or False.
        batch_size, num_workers, device: extraction settings (``device='auto'`` picks CUDA when present).
        max_bad_fraction: fail when more inputs than this fraction are unreadable.
        seed: seed of the head.
        progress: show progress bars on stderr.

    Example:
        >>> clf = FeatureExtractionClassifier("packaged:efficientnet_lite0").fit(load_embedded())
        >>> clf.predict(images[:3])
        array(['Sneaker', 'Bag', 'Trouser'], dtype='<U11')
    """

    strategy_name = "feature-extraction"
    trains_backbone = False  # the backbone's weights stay as they came: only the head learns the training items

    def __init__(
        self,
        backbone: str | Backbone = "packaged:efficientnet_lite0",
        layer: str | None = None,
        head: Any = "logistic",
        pretrained: bool = True,
        cache: Any = True,
        batch_size: int = 64,
        num_workers: int = 0,
        device: str = "auto",
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        seed: int = 0,
        progress: bool = True,
    ):
        self.backbone = backbone
        self.layer = layer
        self.head = head
        self.pretrained = pretrained
        self.cache = cache
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = device
        self.max_bad_fraction = max_bad_fraction
        self.seed = seed
        self.progress = progress

    def _extract(self, ds: ImageDataset) -> Any:
        return extract_features(
            self.backbone_, ds, layer=self.layer_, cache=self.cache, batch_size=self.batch_size,
            num_workers=self.num_workers, device=self.device, progress=self.progress,
            max_bad_fraction=self.max_bad_fraction,
        )

    def fit(self, X: Any, y: Any = None) -> FeatureExtractionClassifier:
        """Extract (or reuse cached) features of ``X`` and fit the head on them."""
        start = time.perf_counter()
        backbone = resolve_backbone(self.backbone, self.pretrained)
        ds = as_dataset(X, y, modality=backbone.modality)
        check_trainable(ds)
        self.backbone_ = backbone
        self.layer_ = self.backbone_._check_layer(self.layer)
        extracted = self._extract(ds)
        assert extracted.features is not None and ds.labels is not None  # fit extracts with return_features=True
        labels = ds.labels[extracted.index]
        check_trainable(ImageDataset(extracted.index, labels, ds.classes, ds.name))
        head = make_head(self.head, self.seed)
        head_start = time.perf_counter()
        try:
            head.fit(extracted.features, labels)
        except ValueError as e:
            raise TransferkitError(f"The {self.head!r} head could not be fitted: {str(e).splitlines()[0]}") from None
        choice = getattr(head, "choice_", None)
        adaptation = getattr(head, "adaptation_", None)
        # tuned and adapted heads: what was chosen is kept below; the bundle stores the plain estimator
        if getattr(head, "bundles_estimator", False):
            head = head.estimator_
        self.head_ = head
        self.head_classes_ = np.asarray(head.classes_, dtype=np.int64)
        exported = head_to_module(head)
        self.head_module_: Any = exported[0] if exported else None
        self.head_config_: Any = exported[1] if exported else None
        self.classes_ = class_values(ds, y)
        self.train_items_ = training_digests(keys=extracted.keys)
        self.fit_info_ = {
            "strategy": self.strategy_name,
            "train_images": int(len(extracted.index)),
            "modality": self.backbone_.modality,
            "extraction": extracted.summary(),
            "head": {"name": self.head if isinstance(self.head, str) else type(self.head).__name__,
                     "estimator": type(head).__name__, **({"choice": choice} if choice else {}),
                     **({"adaptation": adaptation} if adaptation else {})},
            "head_seconds": round(time.perf_counter() - head_start, 3),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Features ``(N, D)`` of ``X`` at the fitted layer (through the cache)."""
        self._check_fitted()
        return self._extract(as_dataset(X, modality=self.modality_)).features

    def _bundle_state(self, directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The head: as a torch module when it has an exact one (``head_module_``), else in ``head.skops``."""
        if self.head_module_ is not None:
            return module_head_state(self.head_module_, self.head_config_, self._head_name())
        return sklearn_head_state(self.head_, self._head_name(), directory), {}

    def _restore_state(self, directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        if meta.get("head", {}).get("type") == "sklearn":
            self.head_ = restore_sklearn_head(directory, meta)
            self.head_module_, self.head_config_ = None, None
        else:
            self.head_module_, self.head_config_ = restore_module_head(directory, meta, tensors)
            self.head_ = None

    def _head_proba(self, features: np.ndarray) -> np.ndarray:
        if self.head_module_ is not None:
            proba = ModuleHead(self.head_module_, self.head_config_).predict_proba(features)
        else:
            proba = self.head_.predict_proba(features)
        return full_proba(proba, self.head_classes_, len(self.classes_))

    def _predict_proba_dataset(self, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        extracted = extract_features(
            self.backbone_, ds, layer=self.layer_, cache=self.cache, batch_size=self.batch_size,
            num_workers=self.num_workers, device=self.device, progress=self.progress, max_bad_fraction=1.0,
            shard=False,  # prediction is not collective: in a distributed run only rank 0 evaluates
        )
        if not len(extracted.index) or extracted.features is None:
            return np.zeros((0, len(self.classes_))), extracted.index, extracted.skipped
        return self._head_proba(extracted.features), extracted.index, extracted.skipped
