"""Evaluation of a fitted model on labeled data: accuracy, macro-F1, per-class scores, confusion matrix."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ._errors import DataError
from .data import MISSING, ImageDataset
from .strategies._base import as_dataset
from .strategies._multitask import check_same_tasks, split_tasks, tasks_of


def evaluate(model: Any, X: Any, y: Any = None, *, confusion_png: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Score ``model`` on labeled images.

    Labels are matched to the model's classes by name, so a test folder may list its classes in any order and
    hold only some of them; a class the model does not have is refused (its every image would count as an error,
    scoring the wrong data instead of the model).

    Args:
        model: a fitted strategy (or loaded bundle).
        X, y: labeled images (see :func:`~transferkit.strategies.as_dataset`).
        confusion_png: where to save the confusion matrix as a PNG (optional).

    Returns:
        ``{"accuracy", "macro_f1", "per_class": {name: {"precision", "recall", "f1", "support"}},
        "confusion_matrix", "classes", "images", "skipped"}``. A model fitted on several tasks gives
        ``{"accuracy", "macro_f1"`` (means over the tasks), ``"tasks": {task: the single-task keys for the items
        labelled for it, "confusion_png"}, "images", "skipped"}``; a task's confusion matrix goes to
        ``confusion_png`` with ``-<task>`` added to its stem.

    Raises:
        DataError: no labels, no readable image, or classes the model does not have.
    """
    modality = str(getattr(model, "modality_", None) or getattr(getattr(model, "backbone_", None), "modality",
                                                                 "image"))
    ds: ImageDataset = as_dataset(X, y, modality=modality)
    if ds.labels is None or len(ds) == 0:
        raise DataError("evaluate needs labeled images (a class-per-folder tree or a CSV with labels).")
    if tasks_of(model):
        return evaluate_tasks(model, ds, confusion_png=confusion_png)
    proba, index, skipped, truth_names, classes = labelled_predictions(model, ds)
    pred_names = np.asarray(classes)[proba.argmax(1)]
    result = {**classification_scores(truth_names, pred_names, classes), "images": int(len(index)),
              "skipped": [list(s) for s in skipped]}
    if confusion_png is not None:
        result["confusion_png"] = str(save_confusion_png(np.asarray(result["confusion_matrix"]), classes,
                                                         confusion_png))
    return result


def labelled_predictions(model: Any, ds: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]], np.ndarray,
                                                         list[str]]:
    """``(proba, index, skipped, truth_names, classes)``: the model's probabilities on the readable items of labelled
    ``ds`` (whose classes must be the model's), their true class names and the model's class names.

    Raises:
        DataError: ``ds`` has classes the model does not know, or no item could be read.
    """
    classes = [str(c) for c in model.classes_]
    check_classes(ds, classes)
    proba, index, skipped = model.predict_proba_details(ds)
    if not len(index):
        raise DataError(f"None of the {len(ds)} items in {ds.name} could be read.")
    return proba, index, skipped, np.asarray(ds.classes)[ds.labels[index]], classes


def classification_scores(truth_names: np.ndarray, pred_names: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """``{"accuracy", "macro_f1", "per_class", "confusion_matrix", "classes"}`` of predicted against true class
    names (what :func:`evaluate` reports, for predictions made elsewhere, e.g. by ``transferkit report``)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        truth_names, pred_names, labels=classes, zero_division=0
    )
    cm = confusion_matrix(truth_names, pred_names, labels=classes)
    return {
        "accuracy": float(accuracy_score(truth_names, pred_names)),
        # over the classes that occur (in the truth or the predictions): a class of the model that this data never
        # shows and that is never predicted has no F1 to average, not an F1 of 0
        "macro_f1": float(f1_score(truth_names, pred_names, labels=[c for c in classes if c in set(truth_names) |
                                                                    set(pred_names)], average="macro",
                                   zero_division=0)),
        "per_class": {
            c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": cm.tolist(),
        "classes": classes,
    }


def evaluate_tasks(model: Any, ds: Any, *, confusion_png: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """:func:`evaluate` of a model fitted on several tasks, on a ``MultiTaskDataset`` holding some of its tasks:
    each task scored on the items labelled for it (empty cells left out)."""
    check_same_tasks(model, ds)
    joint, index, skipped = model.predict_proba_details(ds)
    if not len(index):
        raise DataError(f"None of the {len(ds)} images in {ds.name} could be read.")
    per_task: dict[str, Any] = {}
    for task, names, proba in zip(model.tasks_, model.classes_, split_tasks(model, joint), strict=True):
        if task not in ds.tasks:
            continue
        k = ds.tasks.index(task)
        labels = ds.labels[index, k]
        keep = labels != MISSING
        classes = [str(c) for c in names]
        check_classes(ImageDataset(index[keep], labels[keep], ds.classes[k], f"{ds.name}[{task}]"), classes)
        if not keep.any():  # nothing labelled for this task among the readable items
            per_task[task] = {"accuracy": None, "macro_f1": None, "images": 0}
            continue
        result = classification_scores(np.asarray(ds.classes[k])[labels[keep]], np.asarray(classes)[proba[keep].argmax(1)], classes)
        result["images"] = int(keep.sum())
        if confusion_png is not None:
            path = Path(confusion_png)
            png = path.with_name(f"{path.stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', task)}{path.suffix or '.png'}")
            result["confusion_png"] = str(save_confusion_png(np.asarray(result["confusion_matrix"]), classes, png))
        per_task[task] = result
    scored = [r for r in per_task.values() if r["accuracy"] is not None]
    if not scored:
        raise DataError(f"None of the readable items of {ds.name or 'the data'} is labelled for a task of the model.")
    return {"accuracy": float(np.mean([r["accuracy"] for r in scored])),
            "macro_f1": float(np.mean([r["macro_f1"] for r in scored])), "tasks": per_task,
            "images": int(len(index)), "skipped": [list(s) for s in skipped]}


def check_classes(ds: ImageDataset, classes: list[str]) -> None:
    """Refuse labeled data with a class not among the model's ``classes``, naming the classes that differ."""
    assert ds.labels is not None
    present = [str(ds.classes[i]) for i in np.unique(ds.labels)]
    unknown = [c for c in present if c not in set(classes)]
    if unknown:
        def listed(names: list[str]) -> str:
            return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")

        raise DataError(f"{ds.name or 'the data'!r} has classes the model was not trained on: {listed(unknown)}; "
                        f"the model's classes are {listed(classes)}. Evaluate on images of the model's classes only.")


def save_confusion_png(cm: np.ndarray, labels: list[str], path: str | os.PathLike[str]) -> Path:
    """Draw the confusion matrix ``cm`` (true rows x predicted columns) as a PNG at ``path``, written atomically.

    Drawn with PIL, not matplotlib: importing and laying out a matplotlib figure cost seconds, more than a re-fit on
    cached features takes otherwise. Cells shade from white to dark blue with the count (as matplotlib's "Blues").
    """
    from PIL import Image, ImageDraw, ImageFont

    from ._utils import atomic_path

    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    n, cell, pad = len(labels), 44, 12
    label_w = int(max([font.getlength(str(x)) for x in labels] + [0])) + pad
    left, top = label_w + 30, 40
    width, height = left + n * cell + pad, top + n * cell + label_w + 30
    image = Image.new("RGB", (max(width, 240), height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 12), "Confusion matrix", fill="black", font=font)
    peak = max(int(cm.max()), 1) if cm.size else 1
    light, dark = np.array([247, 251, 255]), np.array([8, 48, 107])
    for r in range(n):
        for c in range(n):
            share = int(cm[r, c]) / peak
            colour = tuple(int(v) for v in light + (dark - light) * share)
            x, y = left + c * cell, top + r * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=colour)
            draw.text((x + cell / 2, y + cell / 2), str(int(cm[r, c])), anchor="mm", font=small,
                      fill="white" if share > 0.5 else "black")
    for k, name in enumerate(labels):
        draw.text((left - 6, top + k * cell + cell / 2), str(name), anchor="rm", fill="black", font=font)
        tag = Image.new("RGB", (label_w, 20), "white")  # column labels run downwards, as rotated ticks do
        ImageDraw.Draw(tag).text((label_w - pad // 2, 10), str(name), anchor="rm", fill="black", font=font)
        image.paste(tag.rotate(90, expand=True), (left + k * cell + cell // 2 - 10, top + n * cell + 6))
    draw.text((left + n * cell / 2, height - 12), "Predicted label", anchor="mm", fill="black", font=font)
    ylabel = Image.new("RGB", (n * cell, 20), "white")
    ImageDraw.Draw(ylabel).text((n * cell / 2, 10), "True label", anchor="mm", fill="black", font=font)
    image.paste(ylabel.rotate(90, expand=True), (4, top))
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
