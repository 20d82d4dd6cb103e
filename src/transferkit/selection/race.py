"""A fine-tuning race: rank candidates by short cross-validated fine-tunes, spending more only on the leaders.

Transferability scores read frozen features, so they cannot see how well a network *trains*: on our ranking benchmark
a truncated, randomly initialised EfficientNet fine-tuned almost as well as the ImageNet one, and every frozen score
put it near the bottom (bench/README.md). When the candidates will be fine-tuned, this is rank's second tier: fine-tune
them for real, briefly, and let the results decide.

It is successive halving (Jamieson & Talwalkar, AISTATS 2016; the scheme of scikit-learn's
``HalvingGridSearchCV``) over (candidate, learning rate) configurations, with fine-tuning epochs as the resource.
Every configuration still in the race at rung *i* is fine-tuned for ``min_epochs * factor**i`` epochs (plus the
head-only epochs of the two-stage schedule) on each of ``folds`` stratified folds of the labeled set; its score is
the accuracy over all out-of-fold predictions (every labeled image is predicted once, by a model that never saw it).
The best ``1/factor`` configurations go on to the next rung. A candidate's result is that of its best configuration:
candidates that reached a later rung rank first, then by accuracy at that rung; ties keep the order they came in.

Measured on 14 candidates and three Fashion-MNIST targets (bench/README.md, ``race.py``) against fully searched
fine-tuning: Kendall tau 0.714 and 0.736 (two seeds), 0.685 and 0.707, and 0.846 on a third target declared after the
race was built, where LogME gave 0.34, 0.40 and 0.36; the first choice was the best candidate all five times.
The first rung alone (``max_epochs=min_epochs``) took a third of the time for the same tau on average (0.76, 0.69,
0.82), but once put a candidate 7.8 points below the best first (``warm_logme.py`` there).

Written here rather than with ``HalvingGridSearchCV`` because a race must survive being stopped: every finished
fine-tune is written to ``state`` at once (atomically) under a key naming the exact weights, data, fold and settings,
and a rerun with the same file only trains what is missing.

Example:
    >>> rows = race(train, [{"backbone": "packaged:efficientnet_lite0", "layer": "pre_logits"},
    ...                     {"backbone": "packaged:efficientnet_lite0", "layer": "blocks.4"}], folds=3)
    >>> rows[0]["race_accuracy"]
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError
from .._progress import progress_bar
from .._utils import write_json_atomic
from ..data.seen import first_copies
from ..data.split import fold_indices

DEFAULT_LRS = (1e-3, 1e-2, 1e-1)

# A fine-tune of one configuration on one fold: (candidate, lr_backbone, epochs, train indices, validation indices)
# → number of validation items predicted correctly. Replaceable for tests and other trainers.
Trainer = Callable[[dict[str, Any], float, int, np.ndarray, np.ndarray], int]


def budgets(min_epochs: int, max_epochs: int, factor: int) -> list[int]:
    """Fine-tuning epochs per rung: ``min_epochs * factor**i`` up to ``max_epochs``."""
    if min_epochs < 1 or max_epochs < min_epochs:
        raise DataError(f"Race epochs need 1 <= min <= max. Got min {min_epochs}, max {max_epochs} instead.")
    if factor < 2:
        raise DataError(f"The race's factor must be 2 or more (the share of configurations kept per rung is "
                        f"1/factor). Got {factor} instead.")
    out = [min_epochs]
    while out[-1] * factor <= max_epochs:
        out.append(out[-1] * factor)
    return out


def run_race(configs: list[tuple[int, float]], n_candidates: int, folds: list[tuple[np.ndarray, np.ndarray]],
             trainer: Trainer, candidates: list[dict[str, Any]], *, rungs: list[int], factor: int,
             key: Callable[[int, float, int, int], str], state: dict[str, Any],
             save: Callable[[], None] = lambda: None, progress: bool = True) -> list[dict[str, Any]]:
    """Successive halving over ``configs`` (candidate index, lr); returns one result per candidate, in input order:
    ``{"rung", "epochs", "accuracy", "lr"}`` of its best configuration (rung -1 when it never ran). ``state``
    holds finished fine-tunes by ``key(candidate, lr, epochs, fold)``; ``save`` is called after each new one."""
    n_items = sum(len(val) for _, val in folds)
    # Rung sizes are known up front, so the bar's total is exact.
    sizes = [len(configs)]
    for _ in rungs[1:]:
        if sizes[-1] <= 1:
            break
        sizes.append(math.ceil(sizes[-1] / factor))
    results: dict[tuple[int, float], tuple[int, float]] = {}
    alive = list(configs)
    with progress_bar(sum(sizes) * len(folds), "race", enabled=progress) as advance:
        for rung, (epochs, size) in enumerate(zip(rungs, sizes, strict=False)):
            alive = alive[:size]
            accuracy: dict[tuple[int, float], float] = {}
            for config in alive:
                correct = 0
                for f, (train, val) in enumerate(folds):
                    k = key(config[0], config[1], epochs, f)
                    if k not in state:
                        state[k] = {"correct": int(trainer(candidates[config[0]], config[1], epochs, train, val)),
                                    "n": int(len(val))}
                        save()
                    correct += state[k]["correct"]
                    advance(rung=rung, epochs=epochs)
                accuracy[config] = correct / n_items
                results[config] = (rung, accuracy[config])
            # Stable sort: ties keep the incoming order (candidates by score, then lr as given).
            alive = sorted(alive, key=lambda c: -accuracy[c])
    best: list[dict[str, Any]] = [{"rung": -1, "epochs": None, "accuracy": None, "lr": None}
                                  for _ in range(n_candidates)]
    for (index, lr), (rung, acc) in results.items():
        b = best[index]
        if (rung, acc) > (b["rung"], -1.0 if b["accuracy"] is None else b["accuracy"]):
            best[index] = {"rung": rung, "epochs": rungs[rung], "accuracy": acc, "lr": lr}
    return best


def race(data: Any, candidates: list[dict[str, Any]], *, lrs: tuple[float, ...] | list[float] = DEFAULT_LRS,
         folds: int = 3, min_epochs: int = 1, max_epochs: int = 9, factor: int = 3, head_epochs: int = 2,
         seed: int = 0, device: str = "auto", state: str | Path | None = None, progress: bool = True,
         fine_tune_options: dict[str, Any] | None = None, backbone_options: dict[str, Any] | None = None,
         trainer: Trainer | None = None) -> list[dict[str, Any]]:
    """Race ``candidates`` by cross-validated fine-tuning on ``data``; return them best first.

    Args:
        data: labeled target set (images, texts or audio).
        candidates: dicts with ``backbone`` (spec), ``layer`` and optionally ``image_size``; other keys (a rank row's
            score, say) are kept in the output.
        lrs: ``lr_backbone`` values each candidate is tried with (the first rung tries them all).
        folds: stratified folds; each configuration is fine-tuned once per fold.
        min_epochs, max_epochs, factor: fine-tuning epochs of the first rung, the cap, and the growth per rung
            (the best ``1/factor`` configurations go on).
        head_epochs: head-only epochs before each fine-tune (two-stage schedule).
        seed: seeds the folds and every fine-tune.
        device, progress: as everywhere.
        state: a JSON file keeping every finished fine-tune, or an existing directory to keep one such file per
            labeled set in; a rerun with it resumes where the last one stopped.
        fine_tune_options: more :class:`~transferkit.FineTuneClassifier` parameters (e.g. ``lr_head``,
            ``augment``); ``precise_bn`` defaults to 1,024 images here, because the race's high learning rates
            move the weights faster than BatchNorm's running statistics follow (see ``precise_bn`` there).
        backbone_options: given to :func:`~transferkit.create_backbone` (text: ``pooling``, ``max_length``).
        trainer: replaces the fine-tune (see :data:`Trainer`).

    Returns:
        The candidates best first, each with ``race_rank``, ``race_accuracy`` (out-of-fold accuracy of its best
        configuration at the latest rung it reached), ``race_epochs``, ``race_lr``, ``race_rung`` and
        ``race_images`` (the distinct labeled items raced: a copy of another with the same label is left out,
        or it could be validated on while its twin is trained on).
    """
    if not candidates:
        raise DataError("The race needs at least one candidate.")
    lrs = list(dict.fromkeys(float(lr) for lr in lrs))  # a repeated value would race one configuration twice
    if not lrs or any(not lr > 0 for lr in lrs):
        raise DataError(f"Race learning rates must be positive numbers, e.g. 1e-3,1e-2,1e-1. Got {lrs} instead.")
    if getattr(data, "labels", None) is None:
        raise DataError("The race needs labeled data (a class-per-folder tree or a CSV with labels).")
    labels = np.asarray(data.labels)
    rungs = budgets(min_epochs, max_epochs, factor)
    keys = [data.content_key(i) for i in range(len(data))]
    keep = first_copies(keys, labels)  # a copy in the other fold would be an answer seen in training
    if len(keep) < len(keys):
        data, labels, keys = data.subset(keep), labels[keep], [keys[i] for i in keep]
    splits = fold_indices(labels, folds, seed)
    options = {"precise_bn": 1024, **(fine_tune_options or {}), "head_epochs": head_epochs}
    trainer = trainer or _fine_tuner(data, device, seed, options, backbone_options or {})

    data_id = _data_fingerprint(keys, labels, splits)
    settings = json.dumps({"options": options, "seed": seed, "folds": folds, "backbone_options": backbone_options},
                          sort_keys=True, default=str)
    weights = [_weights_id(c, backbone_options or {}) for c in candidates]

    def key(index: int, lr: float, epochs: int, fold: int) -> str:
        c = candidates[index]
        text = json.dumps([weights[index], c.get("layer"), c.get("image_size"), lr, epochs, fold, data_id, settings],
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    path = Path(state) if state is not None else None
    if path is not None and path.is_dir():
        path = path / f"race-{data_id[:16]}.json"
    store: dict[str, Any] = _read_state(path)

    def save() -> None:
        if path is not None:
            write_json_atomic(path, {"format": 1, "runs": store})

    configs = [(i, lr) for i in range(len(candidates)) for lr in lrs]
    start = time.perf_counter()
    best = run_race(configs, len(candidates), splits, trainer, candidates, rungs=rungs, factor=factor, key=key,
                    state=store, save=save, progress=progress)
    seconds = time.perf_counter() - start
    order = sorted(range(len(candidates)),
                   key=lambda i: (-best[i]["rung"], -(best[i]["accuracy"] or 0.0), i))
    out = []
    for position, i in enumerate(order, 1):
        b = best[i]
        out.append({**candidates[i], "race_rank": position, "race_accuracy": b["accuracy"], "race_epochs": b["epochs"],
                    "race_lr": b["lr"], "race_rung": b["rung"], "race_images": len(keys),
                    "race_seconds": round(seconds, 1)})
    return out


def _read_state(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text()).get("runs", {})
    except (OSError, ValueError, AttributeError) as e:
        raise DataError(f"Cannot read the race state {path} ({e}); delete it to start the race afresh.") from None
    return {k: v for k, v in runs.items() if isinstance(v, dict) and {"correct", "n"} <= v.keys()}


def _data_fingerprint(keys: list[str], labels: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    for _, val in splits:
        digest.update(np.asarray(val, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def _weights_id(candidate: dict[str, Any], backbone_options: dict[str, Any]) -> str:
    """The exact weights (checksum) when the spec loads; the spec itself otherwise (the trainer reports why)."""
    from ..backbones import create_backbone

    try:
        backbone = create_backbone(candidate["backbone"], **backbone_options)
    except Exception:  # noqa: BLE001 - the fine-tune raises the real, one-line error
        return str(candidate["backbone"])
    return backbone.weights.checksum or str(candidate["backbone"])


def _fine_tuner(data: Any, device: str, seed: int, options: dict[str, Any],
                backbone_options: dict[str, Any]) -> Trainer:
    from ..backbones import create_backbone
    from ..strategies.fine_tune import FineTuneClassifier

    def train(candidate: dict[str, Any], lr: float, epochs: int, train_idx: np.ndarray, val_idx: np.ndarray) -> int:
        backbone = create_backbone(candidate["backbone"], **backbone_options)
        model = FineTuneClassifier(backbone, layer=candidate.get("layer"), image_size=candidate.get("image_size"),
                                   epochs=epochs, lr_backbone=lr, seed=seed, device=device, progress=False,
                                   **options)
        model.fit(data.subset(train_idx))
        return count_correct(model, data.subset(val_idx))

    return train


def count_correct(model: Any, data: Any) -> int:
    """How many labeled items of ``data`` a fitted classifier predicts right; unreadable items count as wrong."""
    proba, index, _ = model.predict_proba_details(data)
    predicted = np.asarray(model.classes_)[proba.argmax(1)]
    truth = np.asarray(data.classes)[np.asarray(data.labels)[index]]
    return int(np.sum(predicted == truth))
