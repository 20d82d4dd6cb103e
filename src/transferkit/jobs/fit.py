"""``transferkit fit``: fit the configured strategy, evaluate it on a held-out split, write a bundle, and judge the
transfer against a baseline trained from scratch (:mod:`.baseline`).

The CLI only maps its flags to a :class:`FitConfig` and prints what :func:`fit_bundle` returns.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._dist import barrier, is_main_process, rank_and_world
from .._errors import TransferkitError
from ..bundle import load_bundle, output_folder, read_meta, save_bundle, update_bundle_meta
from ..data import (
    ImageDataset,
    TextDataset,
    drop_unreadable,
    open_dataset,
    per_class,
    select_classes,
    stratified_split,
)
from ..data.seen import count_seen, seen_warnings
from ..evaluation import evaluate
from ._fit_config import (
    DEFAULT_BACKBONE,
    FitConfig,
    backbone_for,
    check_licence,
    check_task_options,
    make_strategy,
)
from ._fit_tasks import multitask_bundle
from .baseline import baseline_kind, baseline_verdict, fit_model, protocol_for

__all__ = ["DEFAULT_BACKBONE", "FitConfig", "backbone_for", "fit_bundle", "make_strategy", "prepare_data",
           "resolve_auto", "zero_shot_bundle"]


def zero_shot_bundle(cfg: FitConfig) -> dict[str, Any]:
    """``strategy="zero-shot"``: embed the labels, evaluate on DATA when it is labeled, write a bundle.

    Nothing is trained, so no split is held out: a labeled DATA (after ``classes``/``per_class``) is evaluated
    whole, and its class names must be among the labels. There is no scratch baseline and no verdict: a model
    trained on DATA's labels would answer another question (what labels buy), not whether transfer helped.
    """
    start = time.perf_counter()
    data = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding)
    labeled = data.labels is not None and len(data.classes) > 0
    if labeled and cfg.classes:
        data = select_classes(data, cfg.classes)
    if labeled and cfg.per_class is not None:
        data = per_class(data, cfg.per_class, seed=cfg.seed)
    estimator = make_strategy(cfg)
    estimator.fit(data)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(estimator, data, confusion_png=out / "confusion_matrix.png") if labeled and len(data) else {}
    data_info = _data_info(cfg, data, data.subset([]), data, estimator, metrics)
    data_info["evaluated_on"] = "all of DATA (zero-shot trains nothing)" if metrics else "nothing (DATA has no labels)"
    save_bundle(estimator, out, metrics=metrics, data=data_info, training_items=cfg.training_items,
                extra={"config": dataclasses.asdict(cfg), "auto": None, "verdict": None})
    return {
        "bundle": str(out), "strategy": cfg.strategy, "backbone": estimator.backbone_.spec, "layer": estimator.layer_,
        "accuracy": metrics.get("accuracy"), "macro_f1": metrics.get("macro_f1"),
        "licence": estimator.backbone_.weights.licence, "train_images": 0, "val_images": len(data) if metrics else 0,
        "modality": "text", "labels": estimator.fit_info_["labels"], "temperature": estimator.temperature,
        "inputs": None, "duplicates": data_info.get("duplicates"),
        "skipped": [{"input": s[0], "reason": s[1]} for s in data_info["skipped"]],
        "confusion_png": metrics.get("confusion_png"), "seconds": round(time.perf_counter() - start, 2),
        "metrics": metrics, "verdict": None, "auto": None, "val_seen_by_source": None, "warnings": [],
    }


def prepare_data(cfg: FitConfig) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """``(all data, train split, validation split)`` after optional few-shot subsampling; unreadable images are
    left out before the split (listed in the first's ``skipped``), so neither side holds one."""
    data = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding)
    if cfg.classes:
        data = select_classes(data, cfg.classes)
    if cfg.per_class is not None:
        data = per_class(data, cfg.per_class, seed=cfg.seed)
    data = drop_unreadable(data, max_bad_fraction=cfg.max_bad_fraction, num_workers=cfg.num_workers,
                           decoded=_cached_images(cfg, data))
    train, val = stratified_split(data, cfg.val_fraction, seed=cfg.seed)
    return data, train, val


def _cached_images(cfg: FitConfig, data: ImageDataset) -> set[str]:
    """Content keys of DATA's images whose features the cache holds for this feature-extraction fit: they decoded
    when those features were computed, so the unreadable-file check need not decode them again. Empty unless the
    feature cache keeps a copy of the backbone (:mod:`transferkit.features.backbone_cache`): nothing is built."""
    if cfg.strategy != "feature-extraction" or not cfg.cache or cfg.backbone_options or \
            not isinstance(data, ImageDataset) or data.is_array or not isinstance(cfg.backbone, str):
        return set()
    from .._utils import resolve_device
    from ..features import FeatureCache
    from ..features.backbone_cache import cached_backbone
    from ..features.extract import cache_key

    backbone = cached_backbone(FeatureCache(), cfg.backbone, pretrained=not cfg.random_init)
    if backbone is None:
        return set()
    store = FeatureCache().store(cache_key(backbone, cfg.layer, resolve_device(cfg.device)))
    return {k for k in (data.content_key(i) for i in range(len(data))) if k in store}


def _in_output_folder(fit: Callable[[FitConfig], dict[str, Any]]) -> Callable[[FitConfig], dict[str, Any]]:
    """``fit`` inside :func:`~transferkit.bundle.output_folder` of ``cfg.out``: a killed run's temporaries are
    cleared first, and a run that fails leaves no ``out`` folder it created."""
    @functools.wraps(fit)
    def run(cfg: FitConfig) -> dict[str, Any]:
        with output_folder(cfg.out):
            return fit(cfg)

    return run


@_in_output_folder
def fit_bundle(cfg: FitConfig) -> dict[str, Any]:
    """Fit the configured strategy on the training split, evaluate on the validation split, write a bundle.

    Unless ``cfg.baseline`` is off (or the strategy is ``scratch``), the same architecture is then trained from
    scratch on the same split and the transfer verdict is stored in the bundle. The bundle is written before the
    baseline starts, so an interrupted baseline loses nothing: ``resume`` picks up the baseline alone. With
    ``cfg.targets`` (several label columns) it fits one model for every task instead, and scores each task
    (:func:`~transferkit.jobs._fit_tasks.multitask_bundle`).

    Returns:
        A JSON-ready summary: ``bundle``, ``accuracy``, ``macro_f1``, ``strategy``, ``backbone``, ``licence``,
        ``train_images``, ``val_images``, ``skipped``, ``seconds``, ``confusion_png``, ``metrics``, ``verdict``.
    """
    check_licence(cfg)
    check_task_options(cfg)
    if cfg.targets:  # several label columns: one model for every task, no verdict (jobs._fit_tasks)
        return multitask_bundle(cfg)
    if cfg.strategy == "zero-shot":
        return zero_shot_bundle(cfg)
    start = time.perf_counter()
    data, train, val = prepare_data(cfg)
    auto = None
    if cfg.strategy == "auto":
        cfg, auto = resolve_auto(cfg, train)
    estimator = make_strategy(cfg)
    if cfg.baseline_seeds < 1:
        raise TransferkitError(f"`baseline_seeds` must be >= 1. Got {cfg.baseline_seeds} instead.")
    if cfg.baseline and cfg.strategy != "scratch":  # a wrong choice fails now, not after the transfer model trained
        if baseline_kind(cfg.baseline_model, getattr(data, "modality", "image")) != "arch" and cfg.baseline_image_size:
            raise TransferkitError("`baseline_image_size` applies to `baseline_model='arch'`; the small CNN trains "
                                   "at the images' own size. Drop it, or add `baseline_model='arch'`.")
        protocol_for(cfg.verdict_protocol, len(val), np.asarray(data.labels), cfg.cross_fit_folds)
    if cfg.resume and cfg.strategy == "feature-extraction" and not _verdict_pending(cfg):
        raise TransferkitError("`resume` applies to fine-tune and scratch; feature extraction resumes by itself "
                               "through the feature cache.")
    out = Path(cfg.out)
    with_baseline = cfg.baseline and cfg.strategy != "scratch"
    if _verdict_pending(cfg):  # the transfer model finished in an earlier run; only the baseline is left
        estimator = load_bundle(out, device=cfg.device, progress=cfg.progress)
        meta = read_meta(out)
        metrics, seen = meta["metrics"], meta["data"].get("val_seen_by_source")
    else:
        fit_model(estimator, train, val, resume=cfg.resume)
        metrics, seen = {}, None
        if is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            seen = count_seen(estimator.backbone_.source_items, val)
            metrics = evaluate(estimator, val, confusion_png=out / "confusion_matrix.png")
            save_bundle(estimator, out, metrics=metrics,
                        data={**_data_info(cfg, data, train, val, estimator, metrics),
                              "val_seen_by_source": seen}, training_items=cfg.training_items,
                        extra={"config": dataclasses.asdict(cfg), "auto": auto,
                               "verdict": {"status": "pending"} if with_baseline else None})
        barrier()
    verdict_start = time.perf_counter()
    verdict = baseline_verdict(cfg, estimator, data, train, val) if with_baseline else None
    verdict_seconds = round(time.perf_counter() - verdict_start, 2) if with_baseline else None
    if not is_main_process():  # under torchrun/accelerate only rank 0 evaluates and writes
        barrier()
        return {"rank": rank_and_world()[0]}
    if with_baseline:
        update_bundle_meta(out, verdict=verdict)
    barrier()
    data_info = _data_info(cfg, data, train, val, estimator, metrics)
    # a bundle: source trained on validation images makes accuracy and verdict optimistic (transferkit.data.seen)
    warnings = seen_warnings(str(cfg.backbone), seen, len(val), "validation images",
                             "the accuracy" + (" and the transfer verdict are" if with_baseline else " is")
                             + " optimistic", "validate on images it was not trained on (e.g. --classes or a DATA "
                             "without them)")
    return {
        "bundle": str(out),
        "strategy": cfg.strategy,
        "backbone": estimator.backbone_.spec if cfg.strategy != "scratch" else f"{cfg.backbone} (random init)",
        "layer": estimator.layer_,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "licence": estimator.backbone_.weights.licence,
        "licence_chain": [s.to_dict() for s in estimator.backbone_.licence_chain],
        "train_images": len(train),
        "val_images": len(val),
        "modality": estimator.backbone_.modality,
        "inputs": _inputs_report(estimator),
        "duplicates": data_info.get("duplicates"),
        "skipped": [{"input": s[0], "reason": s[1]} for s in data_info["skipped"]],
        "confusion_png": metrics.get("confusion_png"),
        "seconds": round(time.perf_counter() - start, 2),
        "metrics": metrics,
        "val_seen_by_source": seen,
        "head": getattr(estimator, "fit_info_", {}).get("head"),
        "warnings": warnings,
        "verdict": verdict,
        "verdict_seconds": verdict_seconds,  # this run's share of ``seconds`` (resumed: what was left to train)
        "auto": auto,
        **_training_report(estimator, out),
    }


def resolve_auto(cfg: FitConfig, train: ImageDataset) -> tuple[FitConfig, dict[str, Any]]:
    """``strategy="auto"``: measure, choose, and return the concrete config plus the decision and its reasons."""
    from ..selection.auto import choose_strategy

    if cfg.random_init:
        raise TransferkitError("`strategy='auto'` judges pretrained weights; drop `random_init`, or pick a "
                               "strategy.")
    # the fine-tune the run would train, so that auto's cross-check measures that one
    options = {k: v for k, v in {"layer": cfg.layer, "epochs": cfg.epochs, "image_size": cfg.image_size,
                                 **cfg.train}.items() if v is not None}
    decision = choose_strategy(train, backbone_for(cfg), seed=cfg.seed, device=cfg.device, cache=cfg.cache,
                               progress=cfg.progress, fine_tune_options=options)
    if decision.strategy == "feature-extraction":
        ignored = sorted(k for k, v in {"epochs": cfg.epochs, "image_size": cfg.image_size, **cfg.train}.items() if v)
        if ignored:
            decision.reasons.append(f"Training options ignored by feature extraction: {', '.join(ignored)}.")
        cfg = dataclasses.replace(cfg, strategy="feature-extraction", layer=cfg.layer or decision.layer, epochs=None,
                                  image_size=None, train={})
    else:
        cfg = dataclasses.replace(cfg, strategy="fine-tune", layer=cfg.layer or decision.layer,
                                  train={**decision.train, **cfg.train})
    return cfg, decision.to_dict()


def _data_info(cfg: FitConfig, data: ImageDataset, train: ImageDataset, val: ImageDataset, estimator: Any,
               metrics: dict[str, Any]) -> dict[str, Any]:
    skipped = list(data.skipped) + [tuple(s) for s in _skipped(estimator)] + \
        [tuple(s) for s in metrics.get("skipped", [])]
    text: dict[str, Any] = {"modality": "text", "duplicates": data.duplicates()} if isinstance(data, TextDataset) else {}
    return {"name": data.name, "images": len(data), "train_images": len(train), "val_images": len(val), **text,
            "per_class": cfg.per_class, "val_fraction": cfg.val_fraction, "seed": cfg.seed,
            "skipped": [list(s) for s in dict.fromkeys(tuple(s) for s in skipped)]}


def _verdict_pending(cfg: FitConfig) -> bool:
    """``resume`` of a run whose transfer model is saved and whose baseline had not finished."""
    if not cfg.resume or not (Path(cfg.out) / "transferkit.json").is_file():
        return False
    try:
        meta = read_meta(cfg.out)
    except TransferkitError:
        return False
    return isinstance(meta.get("verdict"), dict) and meta["verdict"].get("status") == "pending"


def _training_report(estimator: Any, out: Path) -> dict[str, Any]:
    """What a trained strategy used (settings and plan) and where its curves are."""
    info = getattr(estimator, "fit_info_", {})
    if "train_config" not in info:
        return {}
    report: dict[str, Any] = {"train_config": info["train_config"], "plan": info["plan"],
                              "epochs_run": len(info["history"]), "lr_find": info.get("lr_find")}
    if info.get("peft"):
        report["peft"] = info["peft"]
    if (out / "metrics.jsonl").is_file():
        report["metrics_jsonl"] = str(out / "metrics.jsonl")
    if (out / "training_curves.png").is_file():
        report["training_curves_png"] = str(out / "training_curves.png")
    return report


def _inputs_report(estimator: Any) -> dict[str, Any] | None:
    """What the backbone said about the training inputs (text: out-of-vocabulary tokens, truncated texts)."""
    info = getattr(estimator, "fit_info_", {})
    return info.get("extraction", {}).get("inputs") or info.get("inputs") or None


def _skipped(estimator: Any) -> list[list[str]]:
    info = getattr(estimator, "fit_info_", {})
    return info.get("extraction", {}).get("skipped") or info.get("skipped") or []
