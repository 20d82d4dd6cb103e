"""Zero-shot text classification: embed the label names, classify a text by its nearest label embedding.

"Dataless classification" (Chang et al., "Importance of Semantic Representation: Dataless Classification",
AAAI 2008) with a sentence encoder in place of ESA: the encoder maps each label (its name, or a short
description, through a template such as ``"This text is about {}."``) and each text into one space; the
predicted class is the label with the highest cosine similarity. Nothing is trained. Probabilities are the
softmax of the similarities divided by a temperature (default 0.05: the scale 20 that sentence-transformers'
contrastive loss trains all-MiniLM-L6-v2 with; the ranking, hence ``predict``, does not depend on it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import DataError, TransferkitError
from ..backbones import Backbone
from ..data import from_texts
from ..features import extract_features
from ..heads import ModuleHead, build_head_module
from ..heads.persist import module_head_state, restore_module_head
from ._base import TransferClassifier, as_dataset
from .feature_extraction import resolve_backbone

DEFAULT_TEMPERATURE = 0.05


def parse_labels(labels: str | Sequence[str]) -> list[tuple[str, str]]:
    """``[(name, text to embed)]`` from ``"a,b,c"`` or a list whose items are ``"name"`` or ``"name: description"``.

    Raises:
        TransferkitError: fewer than two labels, an empty name, or a name given twice.
    """
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    parsed = []
    for item in items:
        if not isinstance(item, str):
            raise TransferkitError(f"labels must be strings ('name' or 'name: description'). Got {item!r} instead.")
        name, sep, description = item.partition(":")
        name, description = name.strip(), description.strip()
        if not name:
            raise TransferkitError(f"Every label needs a name ('name' or 'name: description'). Got {item!r} instead.")
        parsed.append((name, description if sep and description else name))
    names = [n for n, _ in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TransferkitError(f"Label {repeated[0]!r} is given more than once; each class needs one label.")
    if len(parsed) < 2:
        raise TransferkitError(f"Zero-shot classification needs at least two labels, e.g. `labels='sports,cooking'`. "
                               f"Got {names} instead.")
    return parsed


class ZeroShotClassifier(TransferClassifier):
    """Classify texts by cosine similarity to embedded label names; no training.

    Args:
        backbone: a text backbone spec (``packaged:all-minilm-l6-v2``, ``hf:...``, ``vectors:...``) or object.
        labels: ``"a,b,c"`` or a list of ``"name"`` / ``"name: description"``; the description (else the name)
            is what gets embedded, the name is the class.
        template: format string the label text is put into before embedding, e.g. ``"This text is about {}."``.
        temperature: probabilities are ``softmax(cos / temperature)``.
        batch_size, device, cache, num_workers, progress: extraction settings, as
            :class:`FeatureExtractionClassifier`.
        max_bad_fraction, seed: accepted like every strategy's; texts are never unreadable and nothing is random.

    ``fit`` embeds the labels and, when given labeled data, checks that every class of the data is one of the
    labels (``X`` may be None). The label embeddings are the head's weights, so a bundle predicts identically.

    Example:
        >>> clf = ZeroShotClassifier("packaged:all-minilm-l6-v2", labels="sports,cooking").fit()
        >>> clf.predict(["The striker scored twice.", "Simmer the sauce for ten minutes."])
        array(['sports', 'cooking'], dtype='<U7')
    """

    strategy_name = "zero-shot"

    def __init__(
        self,
        backbone: str | Backbone = "packaged:all-minilm-l6-v2",
        labels: str | Sequence[str] | None = None,
        template: str = "{}",
        temperature: float = DEFAULT_TEMPERATURE,
        batch_size: int = 64,
        device: str = "auto",
        cache: Any = True,
        num_workers: int = 0,
        max_bad_fraction: float = 1.0,
        seed: int = 0,
        progress: bool = True,
    ):
        self.backbone = backbone
        self.labels = labels
        self.template = template
        self.temperature = temperature
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.num_workers = num_workers
        self.max_bad_fraction = max_bad_fraction
        self.seed = seed
        self.progress = progress

    def _check_params(self) -> list[tuple[str, str]]:
        if self.labels is None:
            raise TransferkitError("ZeroShotClassifier needs `labels`, e.g. `labels='sports,cooking'`.")
        probe = "\x00label\x00"
        try:
            placed = self.template.format(probe)
        except (IndexError, KeyError, ValueError):
            placed = ""
        if placed.count(probe) != 1:  # also "{} and {}", "About {}: {topic}" and "{{}}" (no label put in)
            raise TransferkitError(f"template must contain '{{}}' exactly once, where the label goes, and no other "
                                   f"braces (write a literal brace as '{{{{'). Got {self.template!r} instead.")
        if not self.temperature > 0:
            raise TransferkitError(f"temperature must be > 0. Got {self.temperature!r} instead.")
        return parse_labels(self.labels)

    def fit(self, X: Any = None, y: Any = None) -> ZeroShotClassifier:
        """Embed the labels; ``X`` (optional, labeled or not) is only checked against them, never trained on."""
        start = time.perf_counter()
        parsed = self._check_params()
        backbone = resolve_backbone(self.backbone)
        if backbone.modality != "text":
            raise TransferkitError(f"Zero-shot classification embeds label names, so it needs a text backbone. Got "
                                   f"{backbone.spec} ({backbone.modality}); use packaged:all-minilm-l6-v2 or hf:<model>.")
        names = [n for n, _ in parsed]
        if X is not None:
            ds = as_dataset(X, y, modality="text")
            unknown = [c for c in ds.classes if c not in names] if ds.labels is not None else []
            if unknown:
                raise DataError(f"The data's class {unknown[0]!r} is not among the zero-shot labels ({', '.join(names)}); "
                                f"the labels must name the data's classes: {', '.join(ds.classes)}.")
        prompts = [self.template.format(text) for _, text in parsed]
        prompt_set: Any = from_texts(prompts, name="labels")
        extracted = extract_features(backbone, prompt_set, cache=False, batch_size=self.batch_size,
                                     device=self.device, progress=False, max_bad_fraction=0.0, shard=False)
        config = {"type": "cosine", "in_features": backbone.num_features, "out_features": len(names),
                  "temperature": float(self.temperature)}
        head: Any = build_head_module(config)
        head.weight.copy_(torch.as_tensor(extracted.features, dtype=torch.float32))
        self.backbone_ = backbone
        self.layer_ = backbone._check_layer(None)
        self.head_module_, self.head_config_ = head.eval(), config
        self.head_ = None
        self.classes_ = np.asarray(names)
        self.head_classes_ = np.arange(len(names))
        self.fit_info_ = {"strategy": self.strategy_name, "modality": "text", "train_images": 0,
                          "labels": dict(parsed), "prompts": prompts, "template": self.template,
                          "temperature": float(self.temperature), "seconds": round(time.perf_counter() - start, 3)}
        return self

    def _bundle_state(self, directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The cosine head: the label embeddings are its weights."""
        return module_head_state(self.head_module_, self.head_config_, self._head_name())

    def _restore_state(self, directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.head_module_, self.head_config_ = restore_module_head(directory, meta, tensors)
        self.head_ = None

    def _predict_proba_dataset(self, ds: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        extracted = extract_features(
            self.backbone_, ds, layer=self.layer_, cache=self.cache, batch_size=self.batch_size,
            num_workers=self.num_workers, device=self.device, progress=self.progress, max_bad_fraction=1.0, shard=False,
        )
        if not len(extracted.index) or extracted.features is None:
            return np.zeros((0, len(self.classes_))), extracted.index, extracted.skipped
        return ModuleHead(self.head_module_, self.head_config_).predict_proba(extracted.features), extracted.index, \
            extracted.skipped
