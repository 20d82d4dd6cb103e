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
from ..data import MISSING, ImageDataset, MultiTaskDataset, check_trainable
from ..data.multitask import check_tasks_trainable
from ..data.seen import training_digests
from ..features import FeatureCache, extract_features
from ..features.backbone_cache import cached_backbone, remember_backbone
from ..features.extract import DEFAULT_MAX_BAD_FRACTION
from ..heads import ModuleHead, MultiTaskHead, head_to_module, make_head, multitask_config
from ..heads.persist import module_head_state, restore_module_head, restore_sklearn_head, sklearn_head_state
from . import _multitask
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

    Fitted on several tasks (a :class:`~transferkit.data.MultiTaskDataset`, or ``y`` as ``{task: labels}``), the
    features are extracted once and one ``head`` is fitted per task on the items labelled for it; ``predict``
    returns ``(N, T)`` labels and ``predict_proba`` a list (see :mod:`transferkit.strategies._multitask`).

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

    def _backbone(self) -> Backbone:
        """The backbone to extract with: from the feature cache's copy when it holds one for these weights (built
        only if some feature is missing, :mod:`transferkit.features.backbone_cache`), else created (and copied
        there for the next fit)."""
        cache = self.cache
        cache = FeatureCache() if cache is True else FeatureCache(cache) if isinstance(cache, (str, Path)) else cache
        if not isinstance(cache, FeatureCache) or not isinstance(self.backbone, str):
            return resolve_backbone(self.backbone, self.pretrained)
        cached = cached_backbone(cache, self.backbone, self.pretrained)
        if cached is not None:
            return cached
        backbone = resolve_backbone(self.backbone, self.pretrained)
        remember_backbone(cache, self.backbone, self.pretrained, backbone)
        return backbone

    def _extract(self, ds: ImageDataset) -> Any:
        return extract_features(
            self.backbone_, ds, layer=self.layer_, cache=self.cache, batch_size=self.batch_size,
            num_workers=self.num_workers, device=self.device, progress=self.progress,
            max_bad_fraction=self.max_bad_fraction,
        )

    def fit(self, X: Any, y: Any = None) -> FeatureExtractionClassifier:
        """Extract (or reuse cached) features of ``X`` and fit the head on them (one head per task)."""
        start = time.perf_counter()
        backbone = self._backbone()
        ds = as_dataset(X, y, modality=backbone.modality)
        multitask = isinstance(ds, MultiTaskDataset)
        (check_tasks_trainable if multitask else check_trainable)(ds)
        self.backbone_ = backbone
        self.layer_ = self.backbone_._check_layer(self.layer)
        extracted = self._extract(ds)
        assert extracted.features is not None and ds.labels is not None  # fit extracts with return_features=True
        head_start = time.perf_counter()
        if multitask:
            head_info = self._fit_task_heads(ds, extracted.features, extracted.index)
        else:
            labels = ds.labels[extracted.index]
            check_trainable(ImageDataset(extracted.index, labels, ds.classes, ds.name))
            head, head_info = self._fit_head(extracted.features, labels)
            self.tasks_ = None
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
            "head": head_info,
            "head_seconds": round(time.perf_counter() - head_start, 3),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return self

    def _fit_head(self, features: np.ndarray, labels: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """A fresh ``head`` fitted on ``features``; the estimator bundles keep, and what was chosen."""
        head = make_head(self.head, self.seed)
        try:
            head.fit(features, labels)
        except ValueError as e:
            raise TransferkitError(f"The {self.head!r} head could not be fitted: {str(e).splitlines()[0]}") from None
        choice = getattr(head, "choice_", None)
        adaptation = getattr(head, "adaptation_", None)
        # tuned and adapted heads: what was chosen is kept below; the bundle stores the plain estimator
        if getattr(head, "bundles_estimator", False):
            head = head.estimator_
        return head, {"name": self.head if isinstance(self.head, str) else type(self.head).__name__,
                      "estimator": type(head).__name__, **({"choice": choice} if choice else {}),
                      **({"adaptation": adaptation} if adaptation else {})}

    def _fit_task_heads(self, ds: MultiTaskDataset, features: np.ndarray, index: np.ndarray) -> dict[str, Any]:
        """One head per task on the items labelled for it (the features were extracted once, for all).

        The heads are kept as one :class:`~transferkit.heads.MultiTaskHead` when each has an exact torch form,
        else together in one scikit-learn ``MultiOutputClassifier`` (one ``head.skops`` file in the bundle)."""
        from sklearn.base import clone
        from sklearn.multioutput import MultiOutputClassifier

        heads, infos, head_classes = [], {}, []
        for t, task in enumerate(ds.tasks):
            labels = ds.labels[index, t]
            rows = labels != MISSING
            check_trainable(ImageDataset(index[rows], labels[rows], ds.classes[t], f"{ds.name}[{task}]"))
            head, infos[task] = self._fit_head(features[rows], labels[rows])
            heads.append(head)
            head_classes.append(np.asarray(head.classes_, dtype=np.int64))
        _multitask.set_tasks(self, ds, head_classes)
        self.head_ = MultiOutputClassifier(clone(heads[0]))  # a container: its fitted heads are estimators_
        self.head_.estimators_ = heads
        exported = [head_to_module(h) for h in heads]
        if all(e is not None for e in exported):
            config = multitask_config([e[1] for e in exported if e is not None], None)
            self.head_module_ = MultiTaskHead([e[0] for e in exported if e is not None],
                                              [len(h) for h in head_classes]).eval()
            self.head_config_ = config
        else:
            self.head_module_, self.head_config_ = None, None
        return {"name": infos[ds.tasks[0]]["name"], "tasks": infos}

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
        if meta.get("head", {}).get("type") == "sklearn":  # several tasks: a MultiOutputClassifier of their heads
            self.head_ = restore_sklearn_head(directory, meta)
            self.head_module_, self.head_config_ = None, None
        else:
            self.head_module_, self.head_config_ = restore_module_head(directory, meta, tensors)
            self.head_ = None

    def _head_proba(self, features: np.ndarray) -> np.ndarray:
        if _multitask.tasks_of(self):  # each task's head, its classes placed among all of the task's
            if self.head_module_ is not None:
                with torch.inference_mode():
                    logits = self.head_module_(torch.as_tensor(features, dtype=torch.float32))
                parts = [z.softmax(-1).numpy() for z in self.head_module_.split(logits)]
            else:
                parts = [h.predict_proba(features) for h in self.head_.estimators_]
            return np.concatenate([full_proba(p, h, len(c)) for p, h, c in
                                   zip(parts, self.head_classes_, self.classes_, strict=True)], axis=1)
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
            width = sum(_multitask.task_sizes(self)) if _multitask.tasks_of(self) else len(self.classes_)
            return np.zeros((0, width)), extracted.index, extracted.skipped
        return self._head_proba(extracted.features), extracted.index, extracted.skipped
