"""``--strategy auto``: choose how to transfer from the amount of labels and how far the target is from the source.

The practice this encodes (Yosinski, Clune, Bengio, Lipson, "How transferable are features in deep neural networks?",
NeurIPS 2014; Kornblith, Shlens, Le, "Do Better ImageNet Models Transfer Better?", CVPR 2019; the CS231n transfer
learning notes):

| labels per class | target vs source | choice |
|---|---|---|
| few (< 20) | similar or related | feature extraction at the best-scoring layer (usually the last) |
| few (< 20) | different | feature extraction at the best-scoring *shallower* layer: generic features, no labels to spare |
| more (20–199) | similar | fine-tune the top of the network (partial, two-stage) |
| more (20–199) | related or different | fine-tune every layer (two-stage: head first, then all at a low rate) |
| many (>= 200) | any | fine-tune every layer; when different, with a higher backbone learning rate |

The table is a prior, not the last word: when it says fine-tune with some labels (20-199 per class), both candidates
are cross-validated on the same
sample (:data:`CHECK_FOLDS` folds: the fine-tune with the settings auto would use, and feature extraction with its
tuned head), and fine-tuning is kept only when its estimate is not below feature extraction's. On a grey 28-px
target far from ImageNet with 30 labels per class the table alone chose full fine-tuning, which scored 0.45 held out
against feature extraction's 0.74.

Two measurements, both on a sample and both cheap: the domain shift of the target from the source's own BatchNorm
statistics (:mod:`transferkit.transferability.shift`), and LogME (:mod:`transferkit.transferability.logme`) of the
pooled features at every feature layer, which picks the layer and confirms the shift (a shallower layer scoring
clearly higher than the last one means the source's high-level features do not fit the target).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..backbones import Backbone, create_backbone
from ..data import ImageDataset, per_class
from ..features.extract import extract_layers
from ..transferability import logme
from ..transferability.shift import batchnorm_shift

FEW, MANY = 20, 200  # labels per class
SIMILAR, DIFFERENT = 0.15, 0.8  # BatchNorm shift (mean symmetric KL per channel); see module docstring
LAYER_MARGIN = 0.05  # LogME gain a shallower layer needs over the last one to be chosen (per-sample evidence units)
CHECK_FOLDS = 3  # folds of the cross-validated check of a fine-tune choice


@dataclass
class AutoDecision:
    """What ``auto`` chose, and why (``to_dict`` goes into the bundle and ``--json``)."""

    strategy: str
    layer: str | None
    train: dict[str, Any]
    labels_per_class: int
    size: str
    similarity: str
    shift: dict[str, Any] | None
    layer_scores: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    #: the cross-validated check of a fine-tune choice: ``feature_extraction`` and ``fine_tune`` accuracy, ``images``,
    #: ``folds`` (None when the table chose feature extraction, or the check was off)
    estimates: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        where = f" at layer {self.layer}" if self.layer else ""
        return f"auto chose {self.strategy}{where}: " + " ".join(self.reasons)


def similarity_of(shift: dict[str, Any] | None, layer_scores: dict[str, float]) -> str:
    """``similar``, ``related``, ``different`` from the BatchNorm shift, or from LogME alone when there is none."""
    if shift is not None:
        value = shift["overall"]
        return "similar" if value < SIMILAR else "different" if value >= DIFFERENT else "related"
    if len(layer_scores) > 1:
        *shallower, last = layer_scores.values()
        return "different" if max(shallower) > last + LAYER_MARGIN else "unknown"
    return "unknown"


def choose_strategy(data: ImageDataset, backbone: str | Backbone = "packaged:efficientnet_lite0", *,
                    sample: int = 128, seed: int = 0, device: str = "auto", cache: Any = True,
                    batch_size: int = 64, progress: bool = False, check: bool = True,
                    fine_tune_options: dict[str, Any] | None = None) -> AutoDecision:
    """Decide feature extraction vs partial vs full fine-tuning for ``data`` with ``backbone``.

    Args:
        data: the labeled training images.
        backbone: spec or :class:`Backbone`.
        sample: about this many images, balanced over classes and at least 2 per class, for the measurements.
        seed: seeds the sample.
        device, cache, batch_size, progress: as for :func:`~transferkit.extract_features`.
        check: with 20-199 labels per class, cross-validate a fine-tune choice against feature extraction on the
            sample (minutes on a CPU:
            :data:`CHECK_FOLDS` fine-tunes of the sample) and fall back to feature extraction when it scores lower.
        fine_tune_options: what the run will fine-tune with beyond auto's own settings (a user's ``epochs``,
            ``image_size``, ``layer``, schedule options): the check fine-tunes with them too, so that it measures the
            fine-tune that would run, not another one.

    Returns:
        An :class:`AutoDecision` with the strategy, the layer, training settings and the reasons.

    Example:
        >>> decision = choose_strategy(tk.per_class(tk.load_fashion_mnist(), 5))
        >>> decision.strategy
        'feature-extraction'
    """
    bb = create_backbone(backbone) if isinstance(backbone, str) else backbone
    counts = np.bincount(data.labels, minlength=len(data.classes)) if data.labels is not None else np.zeros(1)
    labels_per_class = int(np.median(counts[counts > 0])) if counts.any() else 0
    probe = per_class(data, max(2, sample // max(1, len(data.classes))), seed=seed)
    shift = batchnorm_shift(bb, probe, sample=len(probe), device=device, seed=seed)
    layer_scores: dict[str, float] = {}
    extracted = extract_layers(bb, probe, bb.layers, cache=cache, batch_size=batch_size, device=device,
                               progress=progress)
    for layer, out in extracted.items():
        assert out.features is not None and probe.labels is not None  # always returned; per_class needs labels
        layer_scores[layer] = float(logme(out.features, probe.labels[out.index]))
    decision = decide(labels_per_class, shift, layer_scores, groups=len(bb.layer_groups()))
    # with many labels the sample is a sliver of what the real fine-tune trains on (its few steps scored 27.5% on
    # Fashion-MNIST where the full fine-tune reaches 0.8): the check only speaks where the sample is most of the data
    if check and decision.strategy == "fine-tune" and decision.size == "some":
        fe_layer = feature_layer(layer_scores, decision.similarity)
        estimates = cross_check(bb, probe, extracted[fe_layer], decision, seed=seed, device=device,
                                progress=progress, options=fine_tune_options)
        if estimates is not None:
            decision = prefer_measured(decision, estimates, fe_layer, last=list(layer_scores)[-1])
    elif decision.strategy == "fine-tune":
        why = ("the check was turned off" if not check else
               f"with {labels_per_class} labels per class a {len(probe)}-image sample is too small a part of the data "
               f"to judge a fine-tune of all of it")
        decision.reasons.append(f"Not cross-checked against feature extraction: {why}.")
    return decision


def cross_check(bb: Backbone, probe: ImageDataset, features: Any, decision: AutoDecision, *, seed: int, device: str,
                progress: bool, options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Out-of-fold accuracy on ``probe`` of the chosen fine-tune (with ``options`` over auto's settings) and of
    feature extraction (tuned head), same folds.

    Both train on the same fold of the sample, with the recipes of the real run (epochs are passes over the data),
    so the fine-tune takes fewer optimizer steps than it will on all the data: a bias against fine-tuning, the safe
    side for a check that may only veto it. None when a class of the sample has fewer than 2 images.
    """
    from .._progress import progress_bar
    from ..data.split import fold_indices
    from ..heads.tuned import fit_tuned
    from ..strategies.fine_tune import FineTuneClassifier
    from .race import count_correct

    assert probe.labels is not None  # per_class kept labelled images only
    usable = np.asarray(features.index)
    probe, x = probe.subset(usable), np.asarray(features.features)
    labels = np.asarray(probe.labels)
    counts = np.bincount(labels)
    k = int(min(CHECK_FOLDS, counts[counts > 0].min()))
    if k < 2:
        return None
    fe_right = ft_right = 0
    with progress_bar(k, "auto: cross-validating fine-tune vs feature extraction", progress) as advance:
        for train, val in fold_indices(labels, k, seed):
            head, _ = fit_tuned("logistic", x[train], labels[train], seed=seed)
            fe_right += int(np.sum(head.predict(x[val]) == labels[val]))
            settings = {"layer": decision.layer, **decision.train, **(options or {})}
            model = FineTuneClassifier(bb, seed=seed, device=device, progress=False, **settings)
            ft_right += count_correct(model.fit(probe.subset(train)), probe.subset(val))
            advance(1)
    return {"feature_extraction": fe_right / len(labels), "fine_tune": ft_right / len(labels), "images": len(labels),
            "folds": k}


def feature_layer(layer_scores: dict[str, float], similarity: str) -> str:
    """The layer feature extraction reads: a shallower one when LogME prefers it clearly (or the target is far)."""
    best = max(layer_scores, key=layer_scores.__getitem__)
    last = list(layer_scores)[-1]
    clearly_better = layer_scores[best] > layer_scores[last] + LAYER_MARGIN
    return best if best != last and (clearly_better or similarity == "different") else last


def prefer_measured(decision: AutoDecision, estimates: dict[str, Any], fe_layer: str, *, last: str) -> AutoDecision:
    """Keep a fine-tune choice only when its cross-validated accuracy is not below feature extraction's."""
    ft, fe = estimates["fine_tune"], estimates["feature_extraction"]
    measured = (f"Cross-validated on {estimates['images']} sampled images ({estimates['folds']} folds): fine-tuning "
                f"{100 * ft:.1f}%, feature extraction {100 * fe:.1f}%")
    if ft >= fe:
        return replace(decision, estimates=estimates, reasons=[*decision.reasons, measured + ": fine-tuning stays."])
    where = f" at layer {fe_layer}" if fe_layer != last else ""
    return replace(decision, strategy="feature-extraction", layer=None if fe_layer == last else fe_layer, train={},
                   estimates=estimates,
                   reasons=[*decision.reasons, measured + f": feature extraction{where} instead, as measured."])


def decide(labels_per_class: int, shift: dict[str, Any] | None, layer_scores: dict[str, float], *,
           groups: int) -> AutoDecision:
    """The rule table of the module docstring, applied to measurements (``layer_scores`` ordered input → output)."""
    similarity = similarity_of(shift, layer_scores)
    size = "few" if labels_per_class < FEW else "many" if labels_per_class >= MANY else "some"
    best_layer = max(layer_scores, key=layer_scores.__getitem__)
    last = list(layer_scores)[-1]
    reasons = [f"{labels_per_class} labeled images per class ({size}: < {FEW} few, >= {MANY} many);"]
    if shift is not None:
        reasons.append(f"the target is {similarity} to the source (BatchNorm shift {shift['overall']:.2f}; "
                       f"< {SIMILAR} similar, >= {DIFFERENT} different);")
    else:
        reasons.append(f"no BatchNorm statistics to compare with the source, similarity from LogME: {similarity};")
    reasons.append(f"LogME is best at {best_layer} ({layer_scores[best_layer]:.3f}; last layer "
                   f"{layer_scores[last]:.3f}).")
    train: dict[str, Any] = {}
    layer: str | None = None
    if size == "few":
        strategy = "feature-extraction"
        layer = feature_layer(layer_scores, similarity)
        reasons.append("Too few labels to fine-tune safely: a frozen backbone and a linear head"
                       + (f", from the shallower layer {layer} whose more generic features fit this target better."
                          if layer != last else "."))
    elif size == "some" and similarity == "similar":
        strategy = "fine-tune"
        train = {"schedule": "two-stage", "unfreeze_top": max(1, groups // 3)}
        reasons.append(f"Enough labels to adapt, and the source features fit: fine-tune the top "
                       f"{train['unfreeze_top']} of {groups} layer groups after training the head.")
    else:
        strategy = "fine-tune"
        train = {"schedule": "two-stage"}
        if size == "many" and similarity == "different":
            train["lr_backbone"] = 1e-3
        target = {"different": "a target far from the source", "related": "a target unlike the source",
                  "similar": "a target similar to the source",
                  "unknown": "no measure of how close the target is to the source"}[similarity]
        reasons.append(f"Enough labels and {target}: fine-tune every layer (two-stage: head first, then all at a "
                       "lower rate"
                       + (", with a higher backbone rate" if "lr_backbone" in train else "") + ").")
    return AutoDecision(strategy=strategy, layer=None if layer == last else layer, train=train,
                        labels_per_class=labels_per_class, size=size, similarity=similarity, shift=shift,
                        layer_scores=layer_scores, reasons=reasons)
