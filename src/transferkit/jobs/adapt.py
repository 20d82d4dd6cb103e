"""``transferkit adapt``: a labelled source, an unlabelled target of another distribution (see
:mod:`transferkit.adaptation`).

Two families, by backbone:

- a pretrained backbone (any spec): frozen features through the cache, then a head adapted on them — ``coral``
  (the source features re-coloured to the target's) or ``self-training`` (class-balanced pseudo-labels). The adapted
  model is a normal feature-extraction bundle in ``out``;
- ``small-cnn``: a small CNN from scratch on both domains at the images' own size, the setting of the published
  digit benchmarks — ``adabn``, ``coral`` (deep CORAL), ``dann``, ``mcc``, ``self-training``. It is not saved as a
  bundle (like the verdict's small CNN); the report is.

Every run trains the source-only model beside the adapted one and reports both: accuracy on ``target_test`` when
given (labelled target items no method sees while training), the domain gap of the features before and after
(proxy A-distance, MMD), and the label-free information-maximisation score on the target
(:mod:`transferkit.adaptation.validation`). ``method="auto"`` runs every method of the family and keeps the one
with the best label-free score, never the target-test accuracy. A warning says when the adapted model did worse
than source-only: on ``target_test`` when given, else by the label-free score.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError, TransferkitError, did_you_mean
from .._utils import write_json_atomic

SMALL_CNN = "small-cnn"
FEATURE_METHODS = ("coral", "self-training")
CNN_METHODS = ("adabn", "coral", "dann", "mcc", "self-training")


@dataclass
class AdaptConfig:
    """Everything ``transferkit adapt`` needs.

    Attributes:
        source: labelled source data (folder, CSV, text file or built-in name).
        target_unlabeled: target data; its labels, if any, are not read.
        out: output directory (``adapt.json``; the adapted bundle for pretrained backbones).
        backbone: a backbone spec (or :class:`~transferkit.Backbone`), or ``small-cnn`` for the from-scratch deep
            methods.
        method: ``auto``, or one of ``coral``/``self-training`` (pretrained) or ``adabn``/``coral``/``dann``/``mcc``/
            ``self-training`` (``small-cnn``).
        target_test: labelled target data to report accuracy on (never used to train or select).
        layer: feature layer of a pretrained backbone (default: pooled pre-logits).
        steps: training steps of ``small-cnn`` runs.
        text_column, label_column, encoding: how text files are read.
        device, batch_size, num_workers, cache, progress, seed: as for ``fit``.
    """

    source: str
    target_unlabeled: str
    out: str
    backbone: Any = "packaged:efficientnet_lite0"
    method: str = "auto"
    target_test: str | None = None
    layer: str | None = None
    steps: int = 1000
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    device: str = "auto"
    batch_size: int = 64
    num_workers: int = 0
    cache: bool = True
    progress: bool = True
    seed: int = 0


def methods_for(cfg: AdaptConfig) -> tuple[str, ...]:
    """The methods ``cfg.method`` stands for (``auto``: every method of the backbone's family)."""
    family = CNN_METHODS if cfg.backbone == SMALL_CNN else FEATURE_METHODS
    if cfg.method == "auto":
        return family
    if cfg.method not in family:
        where = ("with `backbone` 'small-cnn'" if cfg.method in CNN_METHODS else "")
        hint = f" ({cfg.method} runs {where})" if where else f"{did_you_mean(cfg.method, family)}"
        raise TransferkitError(f"`method` must be auto or one of {', '.join(family)} for backbone {cfg.backbone!r}. "
                               f"Got {cfg.method!r} instead{hint}.")
    return (cfg.method,)


def adapt(cfg: AdaptConfig) -> dict[str, Any]:
    """Train source-only and adapted models and report them (see the module docstring)."""
    from ..data import open_dataset

    start = time.perf_counter()
    methods = methods_for(cfg)
    read = {"text_column": cfg.text_column, "label_column": cfg.label_column, "encoding": cfg.encoding}
    source = open_dataset(cfg.source, **read)
    target = dataclasses.replace(open_dataset(cfg.target_unlabeled, **read), labels=None)  # never read
    test = open_dataset(cfg.target_test, **read) if cfg.target_test else None
    if source.labels is None:
        raise DataError("The source needs labels: `source` must be labelled data (class folders or a label column).")
    if test is not None and (test.labels is None or not set(test.classes) <= set(source.classes)):
        raise DataError(f"`target_test` must be labelled with the source's classes ({', '.join(source.classes)}). "
                        f"Got {test.classes if test.labels is not None else 'no labels'} instead.")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = _cnn_runs if cfg.backbone == SMALL_CNN else _feature_runs
    runs, chosen_model, extra = runner(cfg, source, target, test, methods)
    best = max((r for r in runs if r["method"] != "source-only"), key=lambda r: r["information_maximization"])
    baseline = next(r for r in runs if r["method"] == "source-only")
    warnings = _warnings(best, baseline)
    report: dict[str, Any] = {
        "source": source.name, "target": target.name, "target_test": test.name if test is not None else None,
        "backbone": cfg.backbone if isinstance(cfg.backbone, str) else cfg.backbone.spec, "method": best["method"], "selected_by": "information_maximization",
        "runs": runs, "warnings": warnings, **extra, "seconds": round(time.perf_counter() - start, 2)}
    if cfg.backbone != SMALL_CNN:
        from ..bundle import save_bundle

        model = chosen_model[best["method"]]
        save_bundle(model, out, extra={"adaptation": {k: v for k, v in best.items() if k != "bundle"}})
        report["bundle"] = str(out)
    else:
        report["bundle"] = None
    write_json_atomic(out / "adapt.json", report)
    return report


def _scores(model: Any, target: Any, test: Any) -> dict[str, Any]:
    from ..adaptation import information_maximization, snd

    proba = model.predict_proba(target)
    row: dict[str, Any] = {"information_maximization": round(information_maximization(proba), 4),
                           "snd": round(snd(proba), 4)}
    if test is not None:
        row["target_test_accuracy"] = round(_accuracy(model, test), 4)
    return row


def _accuracy(model: Any, test: Any) -> float:
    proba = model.predict_proba(test)
    classes = [str(c) for c in np.asarray(model.classes_)]
    names = np.asarray(test.classes)[np.asarray(test.labels)]
    predicted = np.asarray(classes)[proba.argmax(1)]
    if len(predicted) != len(names):  # unreadable test items: score what was read
        raise DataError("Some target_test items could not be read; remove them and run again.")
    return float(np.mean(predicted == names))


def _feature_runs(cfg: AdaptConfig, source: Any, target: Any, test: Any,
                  methods: tuple[str, ...]) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    from ..adaptation import CORAL, domain_gap
    from ..adaptation.heads import AdaptedHead
    from ..backbones import create_backbone
    from ..strategies import FeatureExtractionClassifier

    backbone = create_backbone(cfg.backbone) if isinstance(cfg.backbone, str) else cfg.backbone
    common: dict[str, Any] = {"layer": cfg.layer, "cache": cfg.cache, "batch_size": cfg.batch_size, "num_workers": cfg.num_workers,
              "device": cfg.device, "seed": cfg.seed, "progress": cfg.progress}
    baseline = FeatureExtractionClassifier(backbone, **common).fit(source)
    xs, xt = baseline.transform(source), baseline.transform(target)
    gap_before = domain_gap(xs, xt, seed=cfg.seed)
    runs = [{"method": "source-only", **_scores(baseline, target, test), "gap": gap_before}]
    models: dict[str, Any] = {"source-only": baseline}
    for method in methods:
        model = FeatureExtractionClassifier(backbone, head=AdaptedHead(method, xt, seed=cfg.seed), **common)
        model.fit(source)
        moved = CORAL().fit(xs, xt).transform(xs) if method == "coral" else None
        gap = domain_gap(moved, xt, seed=cfg.seed) if moved is not None else None
        runs.append({"method": method, **_scores(model, target, test),
                     "gap": gap, "gap_note": None if gap else "the features are unchanged: only the head adapts",
                     "adaptation": model.fit_info_["head"].get("adaptation")})
        models[method] = model
    return runs, models, {"layer": baseline.layer_, "gap_before": gap_before}


def _cnn_runs(cfg: AdaptConfig, source: Any, target: Any, test: Any,
              methods: tuple[str, ...]) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    from ..adaptation import domain_gap
    from ..adaptation.cnn import AdaptedCNNClassifier

    if getattr(source, "modality", "image") != "image":
        raise DataError("`backbone` 'small-cnn' reads images; use a pretrained backbone for texts or audio.")
    runs: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    for method in ("source-only",) + methods:
        if method == "adabn":  # source-only training, then target statistics: the model above, not a second run
            model = models["source-only"].with_target_batchnorm(target)
        else:
            model = AdaptedCNNClassifier(method=method, steps=cfg.steps, seed=cfg.seed, progress=cfg.progress)
            model.fit(source, target)
        gap = domain_gap(model.features(source), model.features(target), seed=cfg.seed)
        runs.append({"method": method, **_scores(model, target, test), "gap": gap,
                     "pseudo_labels": model.fit_info_["pseudo_labels"] or None,
                     "seconds": model.fit_info_["seconds"]})
        models[method] = model
    return runs, models, {"steps": cfg.steps,
                          "note": "small-cnn models are not saved as bundles; the report is in adapt.json"}


def _warnings(best: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    if "target_test_accuracy" in best:
        if best["target_test_accuracy"] < baseline["target_test_accuracy"]:
            return [f"negative transfer: {best['method']} scored {best['target_test_accuracy']:.3f} on the target "
                    f"test items, below source-only ({baseline['target_test_accuracy']:.3f}); keep the source-only "
                    f"model (transferkit fit SOURCE) or try another method."]
        return []
    if best["information_maximization"] < baseline["information_maximization"]:
        return [f"the label-free check fell ({best['information_maximization']:.3f} < source-only "
                f"{baseline['information_maximization']:.3f}): adaptation may have hurt; label a few target items "
                f"(target_test) to know."]
    return []

