"""Learning curves: accuracy of transfer vs the same architecture from scratch, against labels per class.

Where transfer pays and where it stops paying: with few labels a pretrained backbone usually wins by a wide margin;
as labels grow, scratch training catches up (He, Girshick, Dollár, "Rethinking ImageNet Pre-training", ICCV 2019).
Every point trains both models on the same subset (``per_class(pool, n, seed)``) and scores them on one fixed
held-out set. Small subsets get more epochs so every run takes at least ``min_steps`` optimizer steps (equal-steps
practice of BiT-HyperRule, Kolesnikov et al., ECCV 2020); otherwise scratch would look worse than it is.

Each point's gain carries the verdict's interval (:func:`~transferkit.verdict.gain_interval`: over held-out images,
and over seeds when there are several), so one seed already gets an interval and several seeds widen it by their
spread.

The JSON is rewritten atomically after every run and a re-run with the same ``out`` skips finished runs, so an
interrupted curve keeps its points; it refuses a directory whose runs were made on other data or settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import DataError, TransferkitError
from ._progress import progress_bar
from ._utils import atomic_path, write_json_atomic
from .data import ImageDataset, per_class, stratified_split
from .data.seen import count_seen, item_digests, seen_warnings, spec_items
from .strategies import (
    FeatureExtractionClassifier,
    FineTuneClassifier,
    ScratchClassifier,
    SmallCNNClassifier,
    TfidfClassifier,
)
from .strategies.baselines import baseline_kind, baseline_label
from .strategies.feature_extraction import with_options
from .training import CURVE_FINE_TUNE_EPOCHS, SCRATCH_DEFAULTS, TrainConfig
from .verdict import classify, gain_interval, marks, paired_marks

CURVE_FORMAT = "transferkit-curve"


@dataclass
class CurveConfig:
    """Settings of :func:`learning_curve`.

    Attributes:
        backbone: the pretrained backbone.
        baseline: what transfer is compared with at each point: ``auto`` (default: a small CNN at the images'
            native size, TF-IDF + logistic regression for texts, the backbone's architecture from scratch for
            audio), ``small-cnn``, ``tfidf`` or ``arch`` (the backbone's architecture from random init, trained
            with ``scratch_epochs``, ``image_size``, ``batch_size`` and ``min_steps``).
        per_class: labels per class at each point.
        seeds: training subsets (and model seeds) per point.
        strategy: ``feature-extraction`` or ``fine-tune``.
        head: head of feature extraction.
        test_fraction: held-out share of the data when no separate test set is given.
        image_size: input size for fine-tune and scratch (default: the backbone's).
        scratch_epochs: epochs of the ``arch`` baseline (before the ``min_steps`` rule; default
            :data:`~transferkit.training.SCRATCH_DEFAULTS`'s).
        epochs: epochs of fine-tune (second stage; before the ``min_steps`` rule; default
            :data:`~transferkit.training.CURVE_FINE_TUNE_EPOCHS`, where its reason is).
        min_steps: every trained run gets at least this many optimizer steps.
        batch_size: training batch size.
        num_workers: DataLoader worker processes for decoding.
        device: where to run.
        progress: one bar over the curve's runs (on stderr; each run's own bars stay off).
        backbone_options: given to :func:`~transferkit.create_backbone` (text: ``pooling``, ``max_length``);
            scratch is built with them too.
    """

    backbone: str = "packaged:efficientnet_lite0"
    baseline: str = "auto"
    per_class: list[int] = field(default_factory=lambda: [5, 10, 20, 50, 100])
    seeds: int = 3
    strategy: str = "feature-extraction"
    head: str = "logistic"
    test_fraction: float = 0.2
    image_size: int | None = None
    scratch_epochs: int = SCRATCH_DEFAULTS.epochs
    epochs: int = CURVE_FINE_TUNE_EPOCHS
    min_steps: int = 200
    batch_size: int = TrainConfig.batch_size
    num_workers: int = 0
    device: str = "auto"
    progress: bool = False
    backbone_options: dict[str, Any] = field(default_factory=dict)


def epochs_for(base: int, n_train: int, batch_size: int, min_steps: int) -> int:
    """``base`` epochs, raised so that the run takes at least ``min_steps`` optimizer steps."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    return max(base, math.ceil(min_steps / steps_per_epoch))


def _models(cfg: CurveConfig, n_train: int, seed: int, modality: str) -> dict[str, Any]:
    common: dict[str, Any] = {"seed": seed, "device": cfg.device, "progress": False,  # one bar over the runs
                              "num_workers": cfg.num_workers}
    backbone = with_options(cfg.backbone, cfg.backbone_options)
    kind = baseline_kind(cfg.baseline, modality)
    scratch: Any
    if kind == "small-cnn":  # its own step rule: enough epochs for ~200 steps at any size
        scratch = SmallCNNClassifier(**common)
    elif kind == "tfidf":
        scratch = TfidfClassifier(seed=seed)
    else:
        architecture = with_options(cfg.backbone, cfg.backbone_options, pretrained=False)
        scratch = ScratchClassifier(architecture, epochs=epochs_for(cfg.scratch_epochs, n_train, cfg.batch_size,
                                                                    cfg.min_steps),
                                    image_size=cfg.image_size, batch_size=cfg.batch_size, **common)
    if cfg.strategy == "feature-extraction":
        transfer: Any = FeatureExtractionClassifier(backbone, head=cfg.head, **common)
    elif cfg.strategy == "fine-tune":
        transfer = FineTuneClassifier(backbone, epochs=epochs_for(cfg.epochs, n_train, cfg.batch_size,
                                                                      cfg.min_steps),
                                      image_size=cfg.image_size, batch_size=cfg.batch_size, **common)
    else:
        raise TransferkitError(f"curve compares feature-extraction or fine-tune with scratch. Got strategy "
                               f"{cfg.strategy!r} instead.")
    return {"transfer": transfer, "scratch": scratch}


def learning_curve(data: ImageDataset, cfg: CurveConfig, out: str | Path, *, test: ImageDataset | None = None,
                   log: Any = None) -> dict[str, Any]:
    """Run (or finish) the curve and write ``out/curve.json`` and ``out/curve.png``.

    Args:
        data: labeled images; the training subsets are drawn from it.
        cfg: the settings.
        out: a directory; runs already in ``out/curve.json`` with the same settings are kept, not re-run.
        test: a separate labeled test set (default: ``cfg.test_fraction`` of ``data``, held out once).
        log: called with one line per finished run (e.g. ``print``).

    Returns:
        The JSON document: ``config``, ``runs``, ``points`` (per labels-per-class: means, std, gain and its
        interval), ``pays_until`` and the file paths.
    """
    if data.labels is None:
        raise DataError("A learning curve needs labeled images.")
    kind = baseline_kind(cfg.baseline, getattr(data, "modality", "image"))  # a wrong choice fails before any run
    if not cfg.per_class or min(cfg.per_class) < 1 or cfg.seeds < 1:
        raise DataError(f"`per_class` needs positive integers and `seeds` >= 1. Got {cfg.per_class} and "
                        f"{cfg.seeds} instead.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool, held = (data, test) if test is not None else stratified_split(data, cfg.test_fraction, seed=12345)
    available = int(np.bincount(pool.labels, minlength=len(pool.classes)).min())  # type: ignore[arg-type]
    if max(cfg.per_class) > available:
        raise DataError(f"`per_class={max(cfg.per_class)}` asks for more images than the smallest class has for "
                        f"training ({available}); use sizes up to {available}.")
    doc = _load(out / "curve.json", cfg, _fingerprint(pool, held))
    doc["baseline_kind"] = kind
    done = {(r["per_class"], r["seed"], r["method"]) for r in doc["runs"]}
    todo = [(n, seed, method) for n in sorted(set(cfg.per_class)) for seed in range(cfg.seeds)
            for method in ("transfer", "scratch") if (n, seed, method) not in done]
    with progress_bar(len(todo), "curve", enabled=cfg.progress) as advance:
        for n, seed, method in todo:
            advance(0, run=f"{n}/class seed {seed} {method}")
            train = per_class(pool, n, seed=seed)
            model = _models(cfg, len(train), seed, getattr(data, "modality", "image"))[method]
            start = time.perf_counter()
            model.fit(train)
            correct = marks(model, held)  # one character per held-out image: 1 right, 0 wrong, - unread
            if "1" not in correct and "0" not in correct:
                raise DataError(f"None of the {len(held)} held-out images could be read.")
            accuracy = correct.count("1") / (correct.count("1") + correct.count("0"))
            run = {"per_class": n, "seed": seed, "method": method, "strategy": model.strategy_name,
                   "accuracy": accuracy, "train_images": len(train), "seconds": time.perf_counter() - start,
                   "epochs": getattr(model, "fit_info_", {}).get("epochs", getattr(model, "epochs", None))
                   if method == "scratch" or
                   cfg.strategy == "fine-tune" else None, "correct": correct}
            doc["runs"].append(run)
            _summarise(doc)
            write_json_atomic(out / "curve.json", doc)
            advance(1)
            if log is not None:
                log(f"{n:>5}/class seed {seed} {method:<8} accuracy {accuracy:.3f} ({run['seconds']:.1f} s)")
    _summarise(doc)
    doc["test_images"] = len(held)
    doc["test_seen_by_source"] = seen = count_seen(spec_items(cfg.backbone), held)
    doc["warnings"] = seen_warnings(cfg.backbone, seen, len(held), "held-out images",
                                    "the transfer accuracies are optimistic", "pass a --test set it was not trained on")
    doc["plot"] = str(save_curve_png(doc, out / "curve.png"))
    doc["json"] = str(out / "curve.json")
    write_json_atomic(out / "curve.json", doc)
    return doc


def _fingerprint(pool: ImageDataset, held: ImageDataset) -> str:
    """Identifies the training pool and the held-out set: their items' contents, labels and class names."""
    digest = hashlib.sha256()
    for part in (pool, held):
        digest.update(item_digests(part).tobytes())
        digest.update(np.asarray(part.labels, dtype=np.int64).tobytes())
        digest.update("\0".join(map(str, part.classes)).encode() + b"\1")
    return digest.hexdigest()[:32]


def _load(path: Path, cfg: CurveConfig, fingerprint: str) -> dict[str, Any]:
    fresh = {"format": CURVE_FORMAT, "config": asdict(cfg), "data_fingerprint": fingerprint, "runs": []}
    if not path.is_file():
        return fresh
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{str(path)!r} is not a readable curve; delete it or choose another `out`.") from None
    doc.get("config", {}).setdefault("baseline", "arch")  # written before the choice existed: arch was the baseline
    free = ("per_class", "seeds", "progress", "device", "num_workers")  # may change between runs of one curve
    same = {k: v for k, v in doc.get("config", {}).items() if k not in free}
    wanted = {k: v for k, v in asdict(cfg).items() if k not in free}
    if doc.get("format") != CURVE_FORMAT or same != wanted:
        raise DataError(f"{str(path)!r} holds a curve made with other settings; choose another `out` or delete it.")
    if "data_fingerprint" not in doc or any("correct" not in r for r in doc.get("runs", [])):
        raise DataError(f"{str(path)!r} holds a curve from an older transferkit, which kept no per-image results; "
                        f"choose another `out` or delete it.")
    if doc.get("data_fingerprint") != fingerprint:
        raise DataError(f"{str(path)!r} holds a curve of other data (`data`, `test` or their classes differ); "
                        f"choose another `out` or delete it.")
    doc["config"] = asdict(cfg)
    return doc


def _summarise(doc: dict[str, Any]) -> None:
    points = []
    for n in sorted({r["per_class"] for r in doc["runs"]}):
        row: dict[str, Any] = {"per_class": n}
        pairs: dict[int, dict[str, str]] = {}
        for method in ("transfer", "scratch"):
            accs = [r["accuracy"] for r in doc["runs"] if r["per_class"] == n and r["method"] == method]
            if accs:
                row[method] = {"mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)) if len(accs) > 1
                               else 0.0, "runs": len(accs)}
        for r in doc["runs"]:
            if r["per_class"] == n:
                pairs.setdefault(r["seed"], {})[r["method"]] = r["correct"]
        both = [p for p in pairs.values() if len(p) == 2]
        if both:
            gain, lo, hi = gain_interval(*paired_marks([p["transfer"] for p in both],
                                                           [p["scratch"] for p in both]))
            row.update(gain=gain, gain_ci=[lo, hi], verdict=classify(lo, hi), pairs=len(both))
        points.append(row)
    doc["points"] = points
    # the largest size up to which transfer is still clearly ahead, scanning up from the smallest
    pays = None
    for row in points:
        if row.get("verdict") != "positive":
            break
        pays = row["per_class"]
    doc["pays_until"] = pays


def save_curve_png(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = doc["points"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    cfg = doc["config"]
    kind = doc.get("baseline_kind", "arch")  # curves written before the strong baselines compared with arch
    labels = {"transfer": f"{cfg['strategy']} ({cfg['backbone']})", "scratch": baseline_label(kind)}
    for method, color in (("transfer", "#2a9d8f"), ("scratch", "#e76f51")):
        xs = [p["per_class"] for p in points if method in p]
        mean = np.array([p[method]["mean"] for p in points if method in p])
        std = np.array([p[method]["std"] for p in points if method in p])
        ax.plot(xs, mean, "o-", color=color, label=labels[method])
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2)
    verdict_style = {"positive": ("#1d6f64", "bold"), "negative": ("#b23a1d", "bold"), "neutral": ("#555555", "normal")}
    for p in points:
        if "gain" in p and "transfer" in p:
            color, weight = verdict_style[p["verdict"]]
            ax.annotate(f"{100 * p['gain']:+.1f}", (p["per_class"], p["transfer"]["mean"]), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=8, color=color, fontweight=weight)
    ax.set_xscale("log")
    ax.minorticks_off()  # the sizes themselves are the ticks
    ax.set_xticks([p["per_class"] for p in points], [str(p["per_class"]) for p in points])
    ax.set_xlabel("labeled images per class")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"Transfer vs {labels['scratch']} ({cfg['seeds']} seeds, ±1 std)\nnumbers: gain in points, bold where its 95% "
                 f"interval excludes 0", fontsize=9)
    ax.margins(y=0.12)  # room for the numbers above the top point
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
