"""What a report says about a bundle on labelled data: scores, calibration, mistakes, training, verdict, model card.

:func:`report_contents` runs the model once over the data and gathers everything JSON-ready (pictures as ``data:``
URIs); :mod:`.html` lays it out.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from .._errors import DataError
from .._version import __version__
from ..backbones.licences import chain_from_meta, commercial_status
from ..data.seen import count_seen, seen_warnings
from ..evaluation import classification_scores, labelled_predictions
from .calibration import temperature_scaling
from .figures import data_uri, reliability_png, thumbnail_png, training_curves_png

TEXT_CHARS = 400  # of a mistaken text shown


def report_contents(model: Any, data: Any, meta: dict[str, Any], *, bundle: str, mistakes: int = 12,
                    seed: int = 0) -> dict[str, Any]:
    """Everything the report shows, from one pass of ``model`` over the labelled ``data``.

    Args:
        model: a loaded bundle (:func:`~transferkit.load_bundle`).
        data: a labelled dataset of the model's modality, of the model's classes.
        meta: the bundle's JSON (:func:`~transferkit.bundle.read_meta`).
        bundle: the bundle's directory, as the report names it.
        mistakes: how many of the most confident mistakes to show.
        seed: seeds the halves temperature scaling is cross-fitted on.

    Returns:
        ``metrics`` (:func:`~transferkit.evaluation.classification_scores`), ``calibration``
        (:func:`~.calibration.temperature_scaling`, or None), ``mistakes``, ``verdict``, ``history``,
        ``model_card``, ``data``, ``warnings``, ``figures`` (``data:`` URIs).

    Raises:
        DataError: ``data`` has no labels, no readable item, or classes the model does not have.
    """
    if data.labels is None or len(data) == 0:
        raise DataError(f"A report needs labelled data; {data.name or 'DATA'!r} has no labels. Give a class-per-folder "
                        "tree, a CSV with labels, or a built-in set.")
    proba, index, skipped, truth_names, classes = labelled_predictions(model, data)
    truth = np.array([classes.index(str(n)) for n in truth_names])
    metrics = {**classification_scores(truth_names, np.asarray(classes)[proba.argmax(1)], classes),
               "images": int(len(index))}
    calibration = temperature_scaling(proba, truth, seed=seed)
    seen = count_seen(getattr(model, "train_items_", None), data)
    fit_info = meta["fit"] if isinstance(meta.get("fit"), dict) else {}
    history = fit_info.get("history") or []
    curves = training_curves_png(history)
    verdict = meta.get("verdict") if isinstance(meta.get("verdict"), dict) else None
    return {
        "bundle": bundle,
        "metrics": metrics,
        "calibration": calibration,
        "mistakes": _mistakes(data, index, proba, truth, classes, mistakes),
        "verdict": verdict,
        "history": history,
        "model_card": model_card(meta, model),
        "data": {"name": data.name, "items": len(data), "scored": int(len(index)),
                 "modality": getattr(data, "modality", "image"), "per_class": data.class_counts(),
                 "skipped": [list(s) for s in [*data.skipped, *skipped]], "seen_by_model": seen},
        "warnings": seen_warnings(bundle, seen, len(data), "reported items", "the scores are optimistic",
                                  "report on items it was not trained on"),
        "figures": {"reliability": data_uri(reliability_png(calibration)) if calibration else None,
                    "training_curves": data_uri(curves) if curves else None},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "transferkit": __version__,
    }


def _mistakes(data: Any, index: np.ndarray, proba: np.ndarray, truth: np.ndarray, classes: list[str],
              limit: int) -> list[dict[str, Any]]:
    """The ``limit`` wrong predictions made with the highest confidence: what the item is, a thumbnail (images)
    or the text (texts), the true and predicted class and both their probabilities."""
    predicted = proba.argmax(1)
    wrong = np.flatnonzero(predicted != truth)
    order = wrong[np.argsort(-proba[wrong, predicted[wrong]], kind="stable")][:limit]
    shown = []
    for row in order:
        i = int(index[row])
        entry: dict[str, Any] = {
            "item": data.describe(i) if hasattr(data, "describe") else f"{data.name}[{i}]",
            "truth": classes[truth[row]], "predicted": classes[predicted[row]],
            "confidence": float(proba[row, predicted[row]]), "truth_probability": float(proba[row, truth[row]]),
        }
        modality = getattr(data, "modality", "image")
        if modality == "text":
            text = str(data.items[i])
            entry["text"] = text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"
        elif modality == "image":
            try:
                entry["thumbnail"] = data_uri(thumbnail_png(data.load(i)))
            except Exception:  # it was read for the prediction; a file changed since then just shows no picture
                entry["thumbnail"] = None
        shown.append(entry)
    return shown


def model_card(meta: dict[str, Any], model: Any) -> dict[str, Any]:
    """The facts a bundle keeps about itself: backbone, licence chain, training data, classes, versions."""
    backbone = meta.get("backbone", {})
    weights = backbone.get("weights", {}) if isinstance(backbone.get("weights"), dict) else {}
    head = meta.get("head", {}) if isinstance(meta.get("head"), dict) else {}
    data = meta.get("data", {}) if isinstance(meta.get("data"), dict) else {}
    chain = [{**s.to_dict(), "commercial": commercial_status(s.licence), "path": s.describe()}
             for s in chain_from_meta(meta)]
    return {
        "strategy": meta.get("strategy"),
        "head": head.get("name") or head.get("kind"),
        "backbone": backbone.get("spec"), "architecture": backbone.get("arch_spec"), "layer": backbone.get("layer"),
        "features": backbone.get("num_features"), "modality": backbone.get("modality", "image"),
        "weights_origin": weights.get("origin"), "source_task": weights.get("source_task"),
        "weights_sha256": weights.get("checksum"),
        "licence": meta.get("licence"), "licence_chain": chain,
        "commercial_use": commercial_status(str(meta.get("licence", "unknown"))),
        "classes": [str(c) for c in meta.get("classes", [])],
        "training_data": {k: data.get(k) for k in ("name", "images", "train_images", "val_images", "per_class",
                                                   "val_fraction", "seed") if k in data},
        "training_skipped": len(data.get("skipped", []) or []),
        "validation_metrics": {k: meta.get("metrics", {}).get(k) for k in ("accuracy", "macro_f1")
                               if isinstance(meta.get("metrics"), dict) and k in meta["metrics"]},
        "created": meta.get("created"), "versions": meta.get("versions", {}),
        "format_version": meta.get("format_version"),
    }
