"""Rank candidate backbones and layers for a labeled target set by a transferability score, before any training.

Each (candidate, layer) pair costs one feature extraction through the feature cache (a repeated ranking is nearly
free) and one score on those features. Candidates are any backbone specs, including ``random:<spec>`` (the same
architecture, untrained: a floor every real candidate should clear) and ``bundle:<dir>`` models you trained yourself.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from .._errors import BackboneError, DataError, OfflineError, python_spelling, spell_parameters
from ..backbones import Backbone, create_backbone
from ..data import ImageDataset, per_class
from ..data.seen import count_seen, first_copies
from ..features.extract import extract_layers
from ..transferability import METRICS, score

DEFAULT_LAYER = "pre_logits"


def parse_candidates(candidates: str | list[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` → a list of specs, duplicates removed, order kept."""
    items = candidates.split(",") if isinstance(candidates, str) else list(candidates)
    specs = list(dict.fromkeys(c.strip() for c in items if c and c.strip()))
    if not specs:
        raise DataError("`candidates` needs at least one backbone spec, e.g. packaged:efficientnet_lite0. "
                        f"Got {candidates!r} instead.")
    return specs


def layers_for(backbone: Backbone, layers: str | list[str]) -> list[str]:
    """``last``, ``all`` or explicit names (checked against the backbone, with the closest names on a typo)."""
    if isinstance(layers, str):
        if layers in ("last", ""):
            return [DEFAULT_LAYER]
        if layers == "all":
            return list(backbone.layers)
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    return list(dict.fromkeys(backbone._check_layer(name) for name in layers))  # each layer once


def sample_balanced(data: ImageDataset, sample: int | None, seed: int) -> ImageDataset:
    """About ``sample`` images: ceil(sample / classes) of each class (all of a smaller class; every image when
    ``sample`` is None), so a class is never left out."""
    if data.labels is None:
        raise DataError("Ranking needs labeled images (a class-per-folder tree or a CSV with labels).")
    if sample is None or sample >= len(data):
        return data
    return per_class(data, max(1, math.ceil(sample / len(data.classes))), seed=seed)


def source_probabilities(backbone: Backbone, features: np.ndarray) -> np.ndarray | None:
    """Softmax of the source classifier on pooled pre-logits features, or None when it was not kept."""
    head = backbone.source_head
    if head is None:
        return None
    with torch.inference_mode():
        logits = head.float().cpu()(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
        return torch.softmax(logits.double(), dim=1).numpy()


def rank_backbones(data: ImageDataset, candidates: str | list[str], *, layers: str | list[str] = "last",
                   sample: int | None = None, metric: str = "logme", seed: int = 0, device: str = "auto",
                   cache: Any = True, batch_size: int = 64, progress: bool = True,
                   backbone_options: dict[str, Any] | None = None,
                   image_size: int | None = None) -> list[dict[str, Any]]:
    """Score every (candidate, layer) on ``data`` and return the rows best first.

    Args:
        data: labeled target images.
        candidates: backbone specs (``"a,b"`` or a list); ``random:<spec>`` and ``bundle:<dir>`` included.
        layers: ``last`` (pooled pre-logits), ``all`` feature layers, or names (``"blocks.4,pre_logits"``).
        sample: score on at most this many images, balanced over classes (default: all).
        metric: a name from :data:`~transferkit.transferability.METRICS` (``logme``, ``hscore``, ``leep``, ``nce``).
        seed: seeds the sample.
        device, cache, batch_size, progress: as for :func:`~transferkit.extract_features`.
        backbone_options: given to :func:`~transferkit.create_backbone` for every candidate (text: ``pooling``,
            ``max_length``; a candidate that does not take them is refused).
        image_size: score image candidates at this square input size instead of their weights' own: the size you
            will fine-tune at (``fit --image-size``), so the scored features are the ones training starts from.

    Returns:
        One dict per (candidate, layer), best first: ``rank``, ``backbone``, ``layer``, ``score``, ``metric``,
        ``seconds`` (extraction + score), ``dim``, ``licence``, ``pretrained``, ``source_task``, ``images`` (each
        distinct image once), ``copies`` (images left out as copies of another with the same label),
        ``source_seen`` (how many of the scored items the candidate's weights were trained on, when its bundle keeps
        that: more than 0 makes its score optimistic; None when unknown), and ``error`` (then ``score`` is None and
        the row is last) when the candidate cannot be scored.

    Example:
        >>> rows = rank_backbones(tk.load_embedded(), "packaged:efficientnet_lite0,random:packaged:efficientnet_lite0")
        >>> rows[0]["backbone"]
        'packaged:efficientnet_lite0'
    """
    specs = parse_candidates(candidates)
    name = metric.strip().lower().replace("-", "").replace("_", "")
    if name not in METRICS:
        score(metric, labels=[0, 1])  # raises the one-line error with the closest names
    info = METRICS[name]
    subset = sample_balanced(data, sample, seed)
    rows: list[dict[str, Any]] = []
    reasons: list[str] = []  # why rows have no score, parameters in backticks (a row's "error" spells them)
    for spec in specs:
        try:
            backbone = create_backbone(spec, **(backbone_options or {}))
        except OfflineError as e:
            reasons.append(e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e))
            rows.append({"backbone": spec, "layer": None, "score": None, "metric": name, "error": str(e)})
            continue
        backbone.preprocessing = backbone.preprocessing.with_image_size(image_size)  # text/audio: one-line error
        base = {"backbone": backbone.spec, "metric": name, "licence": backbone.weights.licence,
                "pretrained": backbone.weights.pretrained, "source_task": backbone.weights.source_task}
        names = layers_for(backbone, layers)
        start = time.perf_counter()
        extracted = extract_layers(backbone, subset, names, cache=cache, batch_size=batch_size, device=device,
                                   progress=progress)
        shared = (time.perf_counter() - start) / len(names)  # one pass served every layer: split its time
        first = extracted[names[0]]
        keep = first_copies(first.keys, subset.labels[first.index])  # type: ignore[index]
        base["copies"] = int(len(first.index) - len(keep))
        # counted over the distinct images, as "images" is: a copy of a training image is one seen image
        base["source_seen"] = count_seen(backbone.source_items, keys=[first.keys[i] for i in keep])
        for layer in names:
            start = time.perf_counter() - shared
            out = extracted[layer]
            assert out.features is not None  # extract_layers always returns the features
            features, labels = out.features[keep], subset.labels[out.index[keep]]  # type: ignore[index]
            row = {**base, "layer": layer, "dim": int(features.shape[1]), "images": int(len(keep)),
                   "input_size": list(getattr(backbone.preprocessing, "input_size", ())) or None}
            if info.needs == "features":
                row["score"] = score(name, features=features, labels=labels)
            elif layer != DEFAULT_LAYER or (probs := source_probabilities(backbone, features)) is None:
                row["score"] = None
                reasons.append(f"{name} needs the source classifier's probabilities: only at layer {DEFAULT_LAYER} of "
                               "backbones that keep their source head; use `metric='logme'` for this one")
                row["error"] = spell_parameters(reasons[-1], python_spelling)
            else:
                row["score"] = score(name, source_probabilities=probs, labels=labels)
            row["seconds"] = round(time.perf_counter() - start, 3)
            rows.append(row)
    if all(r["score"] is None for r in rows):
        raise BackboneError(f"No candidate could be scored: {reasons[0] if reasons else 'unknown reason'}")
    rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows
