"""``fit`` with several label columns (``FitConfig.targets``): one shared backbone, one head per task, every task
scored on the validation split, and — with ``compare_single_task`` — each task against a single-task model of the
same budget.

Same budget: the same strategy, settings, epochs, seed and train/validation split; the single-task model of a task
trains on the training items labelled for that task, the multi-task model on every training item (an item counts
for the tasks it is labelled for). Both are scored on the same validation items, those labelled for the task, and
the gain comes with the paired bootstrap interval the transfer verdict uses (:func:`~transferkit.verdict.
paired_bootstrap`). There is no scratch baseline and no transfer verdict for a multi-task fit: that verdict judges
one task's model against one baseline (fit each task alone for it).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._dist import barrier, is_main_process, rank_and_world
from .._errors import TransferkitError
from ..bundle import save_bundle, update_bundle_meta
from ..data import MultiTaskDataset, drop_unreadable, multitask_split, open_dataset
from ..data.multitask import check_tasks_trainable
from ..data.seen import count_seen, seen_warnings
from ..evaluation import evaluate
from ..strategies._multitask import split_tasks
from ..verdict import paired_bootstrap
from ._fit_config import FitConfig, check_task_options, make_strategy
from .baseline import fit_model

VERDICT_NOTE = ("no scratch baseline and no transfer verdict for a multi-task fit (the verdict judges one task's "
                "model); fit a task alone for it")


def prepare_tasks(cfg: FitConfig) -> tuple[MultiTaskDataset, MultiTaskDataset, MultiTaskDataset]:
    """``(all data, train split, validation split)`` of a multi-task fit, unreadable images left out first."""
    if cfg.classes or cfg.per_class is not None:
        raise TransferkitError(f"`{'classes' if cfg.classes else 'per_class'}` selects classes of one label column; "
                               "a multi-task fit (`targets`) has one set of classes per task. Drop it, or prepare "
                               "the table.")
    data = open_dataset(cfg.data, text_column=cfg.text_column, encoding=cfg.encoding, targets=cfg.targets)
    data = drop_unreadable(data, max_bad_fraction=cfg.max_bad_fraction, num_workers=cfg.num_workers)
    check_tasks_trainable(data)
    train, val = multitask_split(data, cfg.val_fraction, seed=cfg.seed)
    return data, train, val


def multitask_bundle(cfg: FitConfig) -> dict[str, Any]:
    """Fit one model for every task of ``cfg.targets``, score each task, write the bundle (see the module)."""
    start = time.perf_counter()
    check_task_options(cfg)
    if cfg.resume and cfg.strategy == "feature-extraction":
        raise TransferkitError("`resume` applies to fine-tune; feature extraction resumes by itself through the "
                               "feature cache.")
    data, train, val = prepare_tasks(cfg)
    estimator = make_strategy(cfg)
    fit_model(estimator, train, val, resume=cfg.resume)
    out = Path(cfg.out)
    metrics: dict[str, Any] = {}
    seen = None
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        seen = count_seen(estimator.backbone_.source_items, val)
        metrics = evaluate(estimator, val, confusion_png=out / "confusion_matrix.png")
        save_bundle(estimator, out, metrics=metrics, data={**_data_info(cfg, data, train, val, estimator, metrics),
                                                           "val_seen_by_source": seen},
                    training_items=cfg.training_items,
                    extra={"config": dataclasses.asdict(cfg), "auto": None, "verdict": None,
                           "verdict_note": VERDICT_NOTE, "single_task": None})
    barrier()
    comparison = compare_single_task(cfg, estimator, train, val) if cfg.compare_single_task else None
    if not is_main_process():  # under torchrun/accelerate only rank 0 evaluates and writes
        return {"rank": rank_and_world()[0]}
    if comparison is not None:
        update_bundle_meta(out, single_task=comparison)
    info = estimator.fit_info_
    weights = info.get("task_weights") or [None] * len(estimator.tasks_)
    per_task = {}
    for t, task in enumerate(estimator.tasks_):
        scored = metrics["tasks"].get(task, {})
        per_task[task] = {"classes": [str(c) for c in estimator.classes_[t]],
                          "train_items": int(len(train.labelled(t))), "val_items": int(len(val.labelled(t))),
                          "accuracy": scored.get("accuracy"), "macro_f1": scored.get("macro_f1"),
                          "confusion_png": scored.get("confusion_png"), "task_weight": weights[t],
                          "single_task": comparison["tasks"][task] if comparison else None}
    warnings = seen_warnings(str(cfg.backbone), seen, len(val), "validation images", "the accuracy is optimistic",
                             "validate on images it was not trained on")
    from .fit import _inputs_report, _training_report  # fit's report, shared

    return {
        "bundle": str(out), "strategy": cfg.strategy, "backbone": estimator.backbone_.spec,
        "layer": estimator.layer_, "licence": estimator.backbone_.weights.licence,
        "train_images": len(train), "val_images": len(val), "modality": estimator.backbone_.modality,
        "tasks": list(estimator.tasks_),
        "task_weighting": cfg.task_weighting if cfg.strategy == "fine-tune" else None,
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "per_task": per_task,
        "single_task": {k: v for k, v in comparison.items() if k != "tasks"} if comparison else None,
        "inputs": _inputs_report(estimator), "duplicates": None,
        "skipped": [{"input": s[0], "reason": s[1]}
                    for s in _data_info(cfg, data, train, val, estimator, metrics)["skipped"]],
        "confusion_png": None, "seconds": round(time.perf_counter() - start, 2), "metrics": metrics,
        "val_seen_by_source": seen, "head": info.get("head"), "warnings": warnings, "verdict": None,
        "verdict_note": VERDICT_NOTE, "auto": None, **_training_report(estimator, out),
    }


def compare_single_task(cfg: FitConfig, model: Any, train: MultiTaskDataset, val: MultiTaskDataset
                        ) -> dict[str, Any]:
    """Each task of ``model`` against a single-task model of the same configuration, trained on the training items
    labelled for that task and scored with it on the validation items labelled for it."""
    single_cfg = dataclasses.replace(cfg, targets=None, task_weighting="equal", compare_single_task=False)
    rows: dict[str, Any] = {}
    total = 0.0
    for t, task in enumerate(model.tasks_):
        single = make_strategy(single_cfg)
        if "run_dir" in single.get_params():
            single.set_params(run_dir=None)  # nothing of it is kept but its numbers: no checkpoints in the bundle
        task_train, task_val = train.task(t), val.task(t)
        begin = time.perf_counter()
        fit_model(single, task_train, task_val)
        seconds = time.perf_counter() - begin
        total += seconds
        if not is_main_process():
            continue
        truth = np.asarray(task_val.classes)[task_val.labels]
        joint, index, _ = model.predict_proba_details(task_val)
        multi = np.asarray(model.classes_[t]).astype(str)[split_tasks(model, joint)[t].argmax(1)] == truth[index]
        proba, single_index, _ = single.predict_proba_details(task_val)
        alone = np.asarray(single.classes_).astype(str)[proba.argmax(1)] == truth[single_index]
        both = np.intersect1d(index, single_index)  # read by both (the same decoder: the same items)
        multi, alone = multi[np.isin(index, both)], alone[np.isin(single_index, both)]
        gain, lo, hi = paired_bootstrap(multi, alone, seed=cfg.seed) if len(both) >= 2 else \
            (float(multi.mean() - alone.mean()), None, None)
        rows[task] = {"accuracy": float(alone.mean()), "multi_task_accuracy": float(multi.mean()),
                      "gain": gain, "ci": [lo, hi] if lo is not None else None, "val_items": int(len(both)),
                      "train_items": int(len(task_train)), "seconds": round(seconds, 2)}
    return {"tasks": rows, "seconds": round(total, 2), "multi_task_seconds": model.fit_info_.get("seconds"),
            "budget": "same strategy, settings, epochs, seed and train/validation split; each single-task model "
                      "trains on the training items labelled for its task"}


def _data_info(cfg: FitConfig, data: MultiTaskDataset, train: MultiTaskDataset, val: MultiTaskDataset,
               estimator: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    info = getattr(estimator, "fit_info_", {})
    skipped = [*data.skipped, *(info.get("extraction", {}).get("skipped") or info.get("skipped") or []),
               *metrics.get("skipped", [])]
    return {"name": data.name, "images": len(data), "train_images": len(train), "val_images": len(val),
            "tasks": list(data.tasks),
            "labelled": {task: {"train": int(len(train.labelled(t))), "val": int(len(val.labelled(t)))}
                         for t, task in enumerate(data.tasks)},
            "val_fraction": cfg.val_fraction, "seed": cfg.seed,
            "skipped": [list(s) for s in dict.fromkeys(tuple(s) for s in skipped)]}
