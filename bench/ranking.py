"""Does LogME rank backbones the way fine-tuning does? Kendall tau between transferability scores and fine-tuned
accuracy over ~9 candidate (backbone, layer) pairs on one few-shot target (a benchmark, not a test).

The issue's goal, reported and never asserted: Kendall tau >= 0.7 between the LogME ranking and the fine-tuned
accuracy (the Transfer-Learning-Library reports 0.665 for LogME over ImageNet models).

Protocol:
    Target: Fashion-MNIST classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot). Training set: 50 images per class
    from the train split (``per_class(..., 50, seed=0)``, 250 images). Test set: 200 per class from the test split
    (``per_class(..., 200, seed=12345)``, 1,000 images), the same for every candidate.
    Candidates:
      - ``packaged:efficientnet_lite0`` (ImageNet) at layers pre_logits, blocks.6, blocks.4, blocks.2;
      - ``random:packaged:efficientnet_lite0`` (the same architecture, seeded random init) at pre_logits, blocks.4;
      - three source models of our own, each a ``ScratchClassifier`` on EfficientNet-Lite0 at 64 px saved with
        ``tk.save_bundle`` and used as ``bundle:DIR`` at pre_logits (what ``transferkit pretrain`` does):
        ``fmnist0-4``: Fashion-MNIST classes 0-4, 600 per class (related); ``fmnist0-4-small``: the same classes,
        60 per class (related, weaker); ``digits``: sklearn's 8x8 digits, 85% of the 1,797 images (unrelated).
    Scores: LogME and H-score on the 250 target training images (and, from protocol 3 on, ``probe``: 5-fold
    cross-validated logistic regression on the same 250 images' features, never the test images). The primary figures come from
    ``tk.rank_backbones`` with one candidate per call, as ``transferkit rank`` computes them: at the backbone's own
    input size (224 px for the packaged and random ones, 64 px for the bundles), feature cache off, so the
    seconds include extraction. Because the packaged and random candidates are fine-tuned at 112 px (below), both
    scores are also computed at the fine-tuning size (the same extraction and score, with the backbone's
    preprocessing set to 112 px): a secondary comparison, decided before any result was seen.
    Fine-tuned accuracy: ``FineTuneClassifier(schedule="two-stage")`` on the same 250 images at the head's layer
    (``layer=``), 2 head epochs then 4 with all groups, lr_head 3e-3, lr_backbone 5e-4, lr_decay 0.7, cosine,
    light augmentation, batch 32 (bench/finetune.py's two-stage recipe, with the issue's epoch counts). Input size:
    the bundles' own 64 px; 112 px for the packaged and random candidates instead of their 224 px, to keep the run
    cheap. Seeds 0 and 1 (model seed; the training images stay the same); the accuracy is their mean on the 1,000
    test images.
    Statistics: ``scipy.stats.kendalltau`` (tau-b) and ``spearmanr`` between each score and the mean accuracy, over
    all candidates and over the pretrained ones only (random init left out); the tau between the two seeds'
    accuracies shows how much of the ranking is fine-tuning noise.
    Every run calls ``torch.set_num_threads(1)``: the machine is shared, and one core per run keeps timings
    comparable. Wall seconds come from ``time.perf_counter``.

Protocol 2 (``--lr-grid``, decided 2026-11-23 before any of its results, after protocol 1 gave tau 0.50/0.56):
    LogME's paper and the Transfer-Learning-Library compare scores with each model's accuracy *after its own
    hyperparameter search*; protocol 1 fine-tunes every candidate with one recipe tuned for the pretrained backbone,
    which under-trains random init (32 fine-tuning steps). Protocol 2: every candidate is fine-tuned at
    lr_backbone 3e-4, 1e-3 and 3e-3, 2 head epochs then 8 with all groups, PreciseBN on 1,024 images, seeds 0 and 1;
    per candidate the learning rate with the best mean accuracy on 500 validation images (train split, never the
    training images) is kept, and its test accuracy is the candidate's. Scores are unchanged. ``--linear-probe``
    adds a logistic head on the frozen features at the fine-tune size: the quantity LogME estimates, so the gap
    between the two taus shows where fine-tuning reorders candidates.
    Command: ``python bench/ranking.py --lr-grid 3e-4,1e-3,3e-3 --head-epochs 2 --epochs 10 --precise-bn 1024
    --linear-probe --sources-dir /tmp/rank-sources``

Protocol 3 (``--candidates wide``, decided 2026-11-28 before any of its results, after protocol 2 gave tau 0.667 on
the grid {3e-4, 1e-3, 3e-3} and 0.50 on {1e-3, 3e-3, 1e-2}, 8 of 9 candidates choosing the grid's top both times):
    Two weaknesses of protocol 2 are addressed, nothing else changes (target, data, scores, 10 epochs, PreciseBN,
    seeds 0 and 1, selection on validation). (1) The search stopped at its edge: the grid is now the union
    {3e-4, 1e-3, 3e-3, 1e-2, 3e-2}. (2) Nine candidates make tau coarse (one swapped pair moves it by 0.056): every
    backbone is now a candidate at several layers, as ``transferkit rank --layers`` would offer them — ImageNet and
    random init at pre_logits, blocks.6, blocks.4 and blocks.2, each own source at pre_logits and blocks.4: 14
    candidates, 91 pairs. Runs protocol 2 already made are taken from its two files (``--reuse``): fine-tuning is
    deterministic here (the 1e-3 and 3e-3 runs of both files agree exactly) and a run is reused only where the
    candidate's LogME is bit-identical to the file's (the same weights). The primary statistic stays LogME at the
    weights' own size over all candidates; the fine-tune size and the pretrained-only subset stay secondary.
    Command: ``python bench/ranking.py --candidates wide --lr-grid 3e-4,1e-3,3e-3,1e-2,3e-2 --head-epochs 2
    --epochs 10 --precise-bn 1024 --linear-probe --jobs 2 --sources-dir /tmp/rank-sources
    --reuse bench/results/ranking-2026-11-23-lr-grid.json,bench/results/ranking-2026-11-23-lr-grid-wide.json``

    Bracketing (run after protocol 3's results, as the rule "a search not stopped by its edge" asks): 11 of 14
    candidates chose 3e-2, so 1e-1 was added (``--reuse`` of protocol 3's file); the final file scores ``probe`` too.

Second target (``--target-classes 0-4``, declared 2026-11-28 before any of its results): Fashion-MNIST classes 0-4
(T-shirt/top, Trouser, Pullover, Dress, Coat), everything else as protocol 3 with the grid {3e-3, 1e-2, 3e-2, 1e-1}
(3e-4 and 1e-3 never won on the first target). The fmnist0-4 sources were trained on 600 train-split images per class
of these very classes, so they are same-task sources here; their training images overlap this target's training
and validation images but never its test images. Question: do the scores' taus on the first target carry over?
    Command: ``python bench/ranking.py --target-classes 0-4 --candidates wide --lr-grid 3e-3,1e-2,3e-2,1e-1
    --head-epochs 2 --epochs 10 --precise-bn 1024 --linear-probe --jobs 2 --sources-dir /tmp/rank-sources``

Own sources on another machine (2026-11-30): retrained on a fresh machine, the source bundles are not bit-identical to
session 4's (held-out accuracy 0.792 / 0.595 / 0.937 instead of 0.799 / 0.557 / 0.911: other CPU kernels), so their fine-
tuning runs cannot be reused; ``--kinds own`` reruns protocol 3 (or the second target) for the six own candidates
only, with the retrained bundles; ImageNet and random init are the same weights everywhere and keep their rows.
    Command: ``python bench/ranking.py --candidates wide --kinds own --lr-grid 3e-4,1e-3,3e-3,1e-2,3e-2,1e-1
    --head-epochs 2 --epochs 10 --precise-bn 1024 --jobs 2 --sources-dir /tmp/rank-sources
    --out bench/results/ranking-2026-11-30-own-target5-9.json`` (and ``--target-classes 0-4 --lr-grid
    3e-3,1e-2,3e-2,1e-1 --out bench/results/ranking-2026-11-30-own-target0-4.json``)

Third target (``--target-classes 0-9``, declared 2026-11-30 before any of its results, after the race's results on
the first two targets, to test ``rank --race`` on a target it was not designed on): all ten Fashion-MNIST classes,
25 training images per class (250 images, as before), 50 validation and 100 test images per class (500 and 1,000,
as before). Training and validation images are drawn from the train split *without* the fmnist0-4 sources' training
images, so the sources are related (half the classes are theirs) but have never seen a target image. Protocol 3's
14 candidates and everything else as the second target, grid {3e-3, 1e-2, 3e-2, 1e-1}; all 14 candidates run here,
with this machine's source bundles. Question: do the scores' taus (LogME 0.34 / 0.40, probe 0.55 / 0.48 on the
first two targets) carry over to a 10-class target, and does the race's (bench/race.py)?
    Command: ``python bench/ranking.py --target-classes 0-9 --candidates wide --lr-grid 3e-3,1e-2,3e-2,1e-1
    --head-epochs 2 --epochs 10 --precise-bn 1024 --linear-probe --jobs 2 --sources-dir /tmp/rank-sources
    --out bench/results/ranking-2026-11-30-target0-9.json``

Usage:
    python bench/ranking.py --quick     # tiny sizes, 1 seed, 1 epoch per stage: checks it runs (about 1 min)
    python bench/ranking.py             # the full benchmark, about 20 min on one core
Options: ``--seeds 0,1``, ``--sources-dir DIR`` (keep the source bundles there and reuse them on a re-run; default:
a temporary directory, deleted at the end), ``--out PATH`` (default ``bench/results/ranking-<date>[-quick].json``;
the plot goes beside it as ``.png``). The JSON is rewritten atomically after every pretraining and every candidate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import transferkit as tk
from transferkit.data import select_classes
from transferkit.features.extract import extract_layers
from transferkit.transferability import score

ARCH = "packaged:efficientnet_lite0"
TAU_GOAL = 0.7
TLLIB_TAU = 0.665
TEST_SEED = 12345
VALIDATION_SEED = 777
METRICS = ("logme", "hscore", "probe")

FULL = {
    "target_per_class": 50, "target_seed": 0, "test_per_class": 200, "validation_per_class": 100, "seeds": [0, 1],
    "fine_tune": {"schedule": "two-stage", "head_epochs": 2, "epochs": 4, "lr_head": 3e-3, "lr_backbone": 5e-4,
                  "lr_decay": 0.7, "scheduler": "cosine", "augment": "light", "batch_size": 32},
    "packaged_image_size": 112,
    "sources": {
        "fmnist0-4": {"data": "fashion-mnist", "per_class": 600, "epochs": 6, "image_size": 64},
        "fmnist0-4-small": {"data": "fashion-mnist", "per_class": 60, "epochs": 6, "image_size": 64},
        "digits": {"data": "digits", "per_class": None, "epochs": 8, "image_size": 64},
    },
}
QUICK = {
    "target_per_class": 10, "target_seed": 0, "test_per_class": 10, "validation_per_class": 5, "seeds": [0],
    "fine_tune": {**FULL["fine_tune"], "head_epochs": 1, "epochs": 1},
    "packaged_image_size": 64,
    "sources": {
        "fmnist0-4": {"data": "fashion-mnist", "per_class": 20, "epochs": 1, "image_size": 32},
        "fmnist0-4-small": {"data": "fashion-mnist", "per_class": 10, "epochs": 1, "image_size": 32},
        "digits": {"data": "digits", "per_class": 10, "epochs": 1, "image_size": 32},
    },
}
SOURCE_NOTES = {"fmnist0-4": "related: Fashion-MNIST classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat)",
                "fmnist0-4-small": "related, weaker: the same classes with a tenth of the images",
                "digits": "unrelated: sklearn's 8x8 handwritten digits (0-16 scaled to 0-255, grayscale)"}


# Layers per kind of backbone. "base": protocols 1 and 2 (9 candidates); "wide": protocol 3 (14 candidates).
CANDIDATE_SETS = {
    "base": {"imagenet": ("pre_logits", "blocks.6", "blocks.4", "blocks.2"), "random": ("pre_logits", "blocks.4"),
             "own": ("pre_logits",)},
    "wide": {"imagenet": ("pre_logits", "blocks.6", "blocks.4", "blocks.2"),
             "random": ("pre_logits", "blocks.6", "blocks.4", "blocks.2"), "own": ("pre_logits", "blocks.4")},
}


def candidates(sources: dict[str, str], packaged_size: int, layers: dict[str, tuple[str, ...]] | None = None,
               ) -> list[dict[str, Any]]:
    """The (backbone, layer) pairs, each with the input size it is fine-tuned at (None: the weights' own). Names
    keep protocol 1's form (``own digits`` is the pre_logits candidate) so result files stay comparable."""
    layers = layers or CANDIDATE_SETS["base"]
    out = [{"name": f"imagenet {layer}", "kind": "pretrained (ImageNet)", "spec": ARCH, "layer": layer,
            "fine_tune_size": packaged_size} for layer in layers["imagenet"]]
    out += [{"name": f"random {layer}", "kind": "random init", "spec": f"random:{ARCH}", "layer": layer,
             "fine_tune_size": packaged_size} for layer in layers["random"]]
    out += [{"name": f"own {name}" + ("" if layer == "pre_logits" else f" {layer}"), "kind": "pretrained (own source)",
             "spec": f"bundle:{directory}", "layer": layer, "fine_tune_size": None}
            for name, directory in sources.items() for layer in layers["own"]]
    return out


# -- data --------------------------------------------------------------------------------------------------
# Per-target sizes where they differ from the config's (the third target keeps 250 / 500 / 1,000 images over ten
# classes) and whether the fashion-mnist sources' training images are kept out of the target's.
TARGETS: dict[str, dict[str, Any]] = {
    "0-9": {"target_per_class": 25, "validation_per_class": 50, "test_per_class": 100, "exclude_source_images": True},
}


def target_config(cfg: dict[str, Any], classes: str) -> dict[str, Any]:
    """``cfg`` with the target's own sizes (``TARGETS``); --quick keeps its tiny sizes."""
    if cfg is QUICK:
        return {**cfg, "exclude_source_images": TARGETS.get(classes, {}).get("exclude_source_images", False)}
    return {**cfg, **TARGETS.get(classes, {})}


def target_data(cfg: dict[str, Any], classes: str = "5-9") -> tuple[tk.ImageDataset, tk.ImageDataset, tk.ImageDataset]:
    """(training set, validation set, test set). The validation images come from the train split but never from
    the training set; they only choose each candidate's learning rate under ``--lr-grid``. With
    ``cfg["exclude_source_images"]`` neither contains an image a fashion-mnist source was trained on."""
    full = select_classes(tk.load_fashion_mnist("train"), classes)
    if cfg.get("exclude_source_images"):
        seen = {str(item) for source in cfg["sources"].values() if source["data"] == "fashion-mnist"
                for item in source_data(source)[0].items}
        full = full.subset(np.array([i for i, item in enumerate(full.items) if str(item) not in seen], dtype=np.int64))
    test = select_classes(tk.load_fashion_mnist("test"), classes)
    train = tk.per_class(full, cfg["target_per_class"], seed=cfg["target_seed"])
    used = {str(item) for item in train.items}
    rest = full.subset(np.array([i for i, item in enumerate(full.items) if str(item) not in used], dtype=np.int64))
    validation = tk.per_class(rest, cfg["validation_per_class"], seed=VALIDATION_SEED)
    return train, validation, tk.per_class(test, cfg["test_per_class"], seed=TEST_SEED)


def source_data(source: dict[str, Any]) -> tuple[tk.ImageDataset, tk.ImageDataset]:
    """(training set, held-out set) of a source task; the held-out set only measures the source model."""
    if source["data"] == "fashion-mnist":
        train = tk.per_class(select_classes(tk.load_fashion_mnist("train"), "0-4"), source["per_class"], seed=0)
        held_out = tk.per_class(select_classes(tk.load_fashion_mnist("test"), "0-4"), 200, seed=TEST_SEED)
        return train, held_out
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), 0-16 → 0-255
    ds = tk.from_arrays(images, digits.target, [str(i) for i in range(10)], name="sklearn-digits")
    train, held_out = tk.stratified_split(ds, 0.15, seed=0)
    if source["per_class"] is not None:
        train = tk.per_class(train, source["per_class"], seed=0)
    return train, held_out


# -- steps -------------------------------------------------------------------------------------------------
def pretrain(name: str, source: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Train a source model with ScratchClassifier and save it as a bundle (reused when already there)."""
    if (directory / "transferkit.json").is_file():
        from transferkit.bundle import read_meta

        return {**read_meta(directory)["ranking_source"], "reused": True}
    torch.set_num_threads(1)
    train, held_out = source_data(source)
    start = time.perf_counter()
    model = tk.ScratchClassifier(ARCH, epochs=source["epochs"], image_size=source["image_size"], seed=0,
                                 progress=False, device="cpu").fit(train)
    seconds = time.perf_counter() - start
    accuracy = tk.evaluate(model, held_out)["accuracy"]
    info = {"name": name, "note": SOURCE_NOTES[name], **source, "train_images": len(train),
            "held_out_images": len(held_out), "held_out_accuracy": accuracy, "fit_wall_s": seconds}
    tk.save_bundle(model, directory, metrics={"accuracy": accuracy}, extra={"ranking_source": info})
    return info


def scores_by_ranking(spec: str, layer: str, data: tk.ImageDataset) -> dict[str, Any]:
    """LogME and H-score from ``tk.rank_backbones``, one candidate per call, at the backbone's own size."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        torch.set_num_threads(1)
        start = time.perf_counter()
        (row,) = tk.rank_backbones(data, [spec], layers=[layer], metric=metric, cache=False, device="cpu",
                                   progress=False)
        out[metric] = row["score"]
        out[f"{metric}_wall_s"] = time.perf_counter() - start  # the whole call: backbone load, extraction, score
        out["dim"] = row["dim"]
    return out


def scores_at_size(spec: str, layer: str, data: tk.ImageDataset, size: int) -> dict[str, Any]:
    """The same scores with the backbone's preprocessing set to ``size`` (what fine-tuning sees)."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    backbone = tk.create_backbone(spec)
    backbone.preprocessing = backbone.preprocessing.with_image_size(size)
    out = extract_layers(backbone, data, [layer], cache=False, device="cpu", progress=False)[layer]
    assert data.labels is not None and out.features is not None
    labels = data.labels[out.index]
    result: dict[str, Any] = {"image_size": size}
    for metric in METRICS:
        result[metric] = score(metric, features=out.features, labels=labels)
    result["wall_s"] = time.perf_counter() - start
    return result


def fine_tune(candidate: dict[str, Any], train: tk.ImageDataset, test: tk.ImageDataset, settings: dict[str, Any],
              seed: int, validation: tk.ImageDataset | None = None) -> dict[str, Any]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = tk.FineTuneClassifier(candidate["spec"], layer=candidate["layer"], image_size=candidate["fine_tune_size"],
                                  seed=seed, progress=False, device="cpu", **settings).fit(train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = tk.evaluate(model, test)
    run = {"seed": seed, "lr_backbone": settings["lr_backbone"], "accuracy": metrics["accuracy"],
           "macro_f1": metrics["macro_f1"], "fit_wall_s": fit_s, "predict_wall_s": time.perf_counter() - start,
           "image_size": model.backbone_.preprocessing.input_size[-1],
           "history": [{k: v for k, v in h.items() if isinstance(v, (int, float, str))} for h in model.history_]}
    if validation is not None:
        run["val_accuracy"] = tk.evaluate(model, validation)["accuracy"]
    return run


def select_lr(runs: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    """The lr_backbone with the best mean *validation* accuracy over seeds, and its runs (the test set never
    chooses). Ties go to the smaller learning rate."""
    by_lr: dict[float, list[dict[str, Any]]] = {}
    for run in runs:
        if "val_accuracy" in run:
            by_lr.setdefault(run["lr_backbone"], []).append(run)
    if not by_lr:
        return float("nan"), []
    best = max(sorted(by_lr), key=lambda lr: np.mean([r["val_accuracy"] for r in by_lr[lr]]))
    return best, by_lr[best]


def same_protocol(previous: dict[str, Any], fine_tune: dict[str, Any], target: str, ignore: tuple[str, ...] = (),
                  ) -> bool:
    """Whether an earlier result file used these fine-tuning settings (``ignore`` aside) on the same target."""
    def kept(settings: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in settings.items() if k not in ignore}

    return kept(previous.get("fine_tune", {})) == kept(fine_tune) and previous["data"]["target"] == target


def reusable_runs(paths: list[Path], fine_tune: dict[str, Any], target: str) -> dict[str, dict[str, Any]]:
    """Fine-tuning runs of earlier result files, by candidate name: ``{"logme": float, "runs": {(lr, seed): run}}``.
    Only files whose fine-tuning settings equal this run's (the lr grid and the selection rule aside) count; a run
    is then reused only where the candidate's LogME is bit-identical (same weights, same features) — see ``main``.
    Fine-tuning here is deterministic (seeded, one thread): the runs two result files share agree exactly."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        previous = json.loads(path.read_text())
        if not same_protocol(previous, fine_tune, target, ignore=("lr_backbone_grid", "selection", "seeds")):
            raise SystemExit(f"error: --reuse: {path} was run with other fine-tuning settings or another target; "
                             "drop it from --reuse.")
        for row in previous.get("candidates", []):
            entry = out.setdefault(row["name"], {"logme": row["logme"], "runs": {}, "files": []})
            if entry["logme"] != row["logme"]:
                continue
            entry["files"].append(path.name)
            for run in row.get("grid", row.get("runs", [])):
                if "accuracy" in run and "val_accuracy" in run:
                    entry["runs"].setdefault((float(run["lr_backbone"]), int(run["seed"])), run)
    return out


def linear_probe(candidate: dict[str, Any], train: tk.ImageDataset, test: tk.ImageDataset) -> dict[str, Any]:
    """Frozen features at the fine-tuning input size + logistic regression: what LogME estimates directly."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    backbone = tk.create_backbone(candidate["spec"])
    if candidate["fine_tune_size"] is not None:
        backbone.preprocessing = backbone.preprocessing.with_image_size(candidate["fine_tune_size"])
    model = tk.FeatureExtractionClassifier(backbone, layer=candidate["layer"], cache=False, device="cpu",
                                           progress=False).fit(train)
    return {"linear_probe_accuracy": tk.evaluate(model, test)["accuracy"],
            "linear_probe_wall_s": time.perf_counter() - start}


# -- statistics --------------------------------------------------------------------------------------------
def correlations(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Kendall tau-b and Spearman rho between a score and the mean accuracy (None with fewer than 3 rows); also
    the weighted tau the LogME paper reports (``scipy.stats.weightedtau``: swaps near the top weigh more) and the
    regret of trusting the score's first choice (best accuracy minus the accuracy of the top-scored candidate)."""
    from scipy.stats import kendalltau, spearmanr, weightedtau

    pairs = [(r[key], r["accuracy_mean"]) for r in rows if r.get(key) is not None and "accuracy_mean" in r]
    if len(pairs) < 3:
        return {"n": len(pairs), "kendall_tau": None, "spearman_rho": None}
    x, y = np.array(pairs).T
    tau, tau_p = kendalltau(x, y)
    rho, rho_p = spearmanr(x, y)
    return {"n": len(pairs), "kendall_tau": float(tau), "kendall_p": float(tau_p), "spearman_rho": float(rho),
            "spearman_p": float(rho_p), "weighted_tau": float(weightedtau(x, y)[0]),
            "top1_regret": float(y.max() - y[int(np.argmax(x))])}


def statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from scipy.stats import kendalltau

    groups = {"all": rows, "pretrained only": [r for r in rows if r["kind"] != "random init"]}
    keys = {"logme": "logme", "hscore": "hscore", "probe": "probe", "logme at fine-tune size": "logme_ft_size",
            "hscore at fine-tune size": "hscore_ft_size", "probe at fine-tune size": "probe_ft_size"}
    out: dict[str, Any] = {group: {label: correlations(members, key) for label, key in keys.items()}
                           for group, members in groups.items()}
    seeds = sorted({run["seed"] for r in rows for run in r.get("runs", []) if "accuracy" in run})
    complete = [r for r in rows if {run["seed"] for run in r["runs"] if "accuracy" in run} >= set(seeds[:2])]
    if len(seeds) >= 2 and len(complete) >= 3:
        by_seed = [[next(run["accuracy"] for run in r["runs"] if run["seed"] == s and "accuracy" in run)
                    for r in complete] for s in seeds[:2]]
        out["seed_vs_seed_accuracy_tau"] = {
            "seeds": seeds[:2], "kendall_tau": float(kendalltau(*by_seed)[0]),
            "n": len(complete),
            "note": "tau between two fine-tuning seeds' accuracies over the candidates: how stable the target "
                    "ranking itself is"}
        for s, accs in zip(seeds[:2], by_seed, strict=True):
            logme = [r["logme"] for r in complete]
            out.setdefault("logme_tau_per_seed", {})[str(s)] = float(kendalltau(logme, accs)[0])
    probed = [r for r in rows if "linear_probe_accuracy" in r]
    if len(probed) >= 3:
        out["linear_probe"] = {
            "logme_vs_linear_probe_tau": float(kendalltau([r["logme_ft_size"] for r in probed],
                                                          [r["linear_probe_accuracy"] for r in probed])[0]),
            "linear_probe_vs_fine_tuned_tau": float(kendalltau([r["linear_probe_accuracy"] for r in probed],
                                                               [r["accuracy_mean"] for r in probed])[0]),
            "n": len(probed),
            "note": "LogME (at the fine-tune size) estimates how well a linear model fits the frozen features; the "
                    "second tau shows how far fine-tuning reorders the candidates away from their frozen features"}
    tau = out["all"]["logme"]["kendall_tau"]
    out["goal"] = {"goal": f"Kendall tau >= {TAU_GOAL} between LogME ranking and fine-tuned accuracy "
                           f"(Transfer-Learning-Library: {TLLIB_TAU} on ImageNet models)",
                   "kendall_tau": tau, "met": tau is not None and tau >= TAU_GOAL}
    return out


# -- output ------------------------------------------------------------------------------------------------
def write_json(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")  # atomic: a reader never sees half a file
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    import matplotlib
    import scipy

    from transferkit.bundle import library_versions

    return {**library_versions(), "scipy": scipy.__version__, "matplotlib": matplotlib.__version__}


def plot(rows: list[dict[str, Any]], stats: dict[str, Any], path: Path, target: str = "5-9") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"pretrained (ImageNet)": "tab:blue", "random init": "tab:grey", "pretrained (own source)": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for kind, colour in colours.items():
        members = [r for r in rows if r["kind"] == kind and "accuracy_mean" in r]
        ax.errorbar([r["logme"] for r in members], [r["accuracy_mean"] for r in members],
                    yerr=[r["accuracy_std"] for r in members], fmt="o", color=colour, label=kind, capsize=3)
        for r in members:
            ax.annotate(r["name"], (r["logme"], r["accuracy_mean"]), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)
    tau = stats["all"]["logme"]["kendall_tau"]
    ax.set_xlabel("LogME score (tk.rank_backbones, 250 target images)")
    ax.set_ylabel("fine-tuned test accuracy (mean over seeds)")
    ax.set_title(f"Fashion-MNIST {target}, 50/class: LogME vs two-stage fine-tuning (Kendall tau {tau:.2f})"
                 if tau is not None else "LogME vs fine-tuned accuracy", fontsize=10)
    save_figure(fig, ax, path)


def save_figure(fig: Any, ax: Any, path: Path) -> None:
    """Grid, legend, then an atomic write of the PNG (a reader never sees half a file)."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def print_table(rows: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    print(f"\n{'candidate':<30}{'LogME':>9}{'H-score':>9}{'probe':>8}{'LogME@ft':>10}{'accuracy':>17}{'score s':>9}"
          f"{'fine-tune s':>13}")
    for r in sorted(rows, key=lambda r: -r["logme"]):
        acc = f"{r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}" if "accuracy_mean" in r else "failed"
        ft_s = np.mean([run["fit_wall_s"] + run["predict_wall_s"] for run in r["runs"] if "accuracy" in run] or [0])
        print(f"{r['name']:<30}{r['logme']:>9.3f}{r['hscore']:>9.3f}{r.get('probe', float('nan')):>8.3f}"
              f"{r['logme_ft_size']:>10.3f}{acc:>17}"
              f"{r['logme_wall_s']:>9.1f}{ft_s:>13.1f}")
    for group in ("all", "pretrained only"):
        for label, c in stats[group].items():
            if c["kendall_tau"] is not None:
                print(f"{group:<16} {label:<26} n={c['n']}  Kendall tau {c['kendall_tau']:+.3f} "
                      f"(p {c['kendall_p']:.3f})  Spearman {c['spearman_rho']:+.3f}  weighted tau "
                      f"{c['weighted_tau']:+.3f}  top-1 regret {c['top1_regret']:.3f}")
    if "seed_vs_seed_accuracy_tau" in stats:
        print(f"accuracy ranking, seed {stats['seed_vs_seed_accuracy_tau']['seeds'][0]} vs "
              f"{stats['seed_vs_seed_accuracy_tau']['seeds'][1]}: Kendall tau "
              f"{stats['seed_vs_seed_accuracy_tau']['kendall_tau']:+.3f}; LogME tau per seed "
              f"{stats['logme_tau_per_seed']}")
    g = stats["goal"]
    print(f"goal: LogME Kendall tau {g['kendall_tau']:+.3f} (target >= {TAU_GOAL}): {'met' if g['met'] else 'NOT met'}")


# -- main --------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 seed, 1 epoch per stage: checks it runs")
    p.add_argument("--seeds", default=None, help="fine-tuning seeds, comma-separated (default 0,1; quick: 0)")
    p.add_argument("--sources-dir", default=None,
                   help="keep the source bundles here and reuse them when present (default: a temporary directory, "
                        "deleted at the end); never inside the repository")
    p.add_argument("--precise-bn", type=int, default=0, metavar="IMAGES",
                   help="fine-tune every candidate with precise_bn=IMAGES (exact BatchNorm statistics after training)")
    p.add_argument("--lr-grid", default=None, metavar="LRS",
                   help="fine-tune every candidate at each lr_backbone in this comma-separated list and keep, per "
                        "candidate, the one with the best validation accuracy (the LogME paper's protocol: each "
                        "model's accuracy after its own hyperparameter search)")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs in all (head stage included)")
    p.add_argument("--head-epochs", type=int, default=None, help="epochs of the head-only stage")
    p.add_argument("--linear-probe", action="store_true",
                   help="also fit a logistic head on frozen features at the fine-tune size (what LogME estimates)")
    p.add_argument("--jobs", type=int, default=1,
                   help="fine-tuning runs at once, each in its own process on one thread (default 1; 2 on an idle "
                        "2-core machine halves the wall time; timings then share the machine)")
    p.add_argument("--resume", action="store_true",
                   help="keep the candidates already in --out (same fine-tuning settings) and run only the rest")
    p.add_argument("--candidates", choices=sorted(CANDIDATE_SETS), default="base",
                   help="base: 9 candidates (protocols 1-2); wide: 14, every backbone at 4 layers (own sources at 2)")
    p.add_argument("--reuse", default=None, metavar="JSON[,JSON]",
                   help="take fine-tuning runs (candidate, lr, seed) from these earlier result files instead of "
                        "rerunning them, where the settings match and the candidate's LogME is bit-identical")
    p.add_argument("--kinds", default=None, metavar="KIND[,KIND]",
                   help="run only these kinds of candidate: imagenet, random, own (default: all of the set)")
    p.add_argument("--target-classes", default="5-9",
                   help="the Fashion-MNIST classes of the target (default 5-9; 0-4 is the second target, the classes "
                        "the fmnist0-4 sources were trained on)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/ranking-<date>[-quick].json)")
    args = p.parse_args()
    cfg = target_config(QUICK if args.quick else FULL, args.target_classes)
    overrides = {"precise_bn": args.precise_bn or None, "epochs": args.epochs, "head_epochs": args.head_epochs}
    cfg = {**cfg, "fine_tune": {**cfg["fine_tune"], **{k: v for k, v in overrides.items() if v}}}
    lr_grid = [float(v) for v in args.lr_grid.split(",")] if args.lr_grid else [cfg["fine_tune"]["lr_backbone"]]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else cfg["seeds"]

    from run import machine  # bench/run.py, next to this file

    out = Path(args.out or f"bench/results/ranking-{dt.date.today().isoformat()}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    sources_root = Path(args.sources_dir) if args.sources_dir else Path(tempfile.mkdtemp(prefix="tk-ranking-"))
    started = time.perf_counter()
    train, validation, test = target_data(cfg, args.target_classes)
    result: dict[str, Any] = {
        "benchmark": "ranking", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv], "quick": args.quick, "machine": machine(),
        "versions": versions(), "torch_threads": 1, "device": "cpu",
        "data": {"target": f"fashion-mnist classes {args.target_classes} (Debian IDX files)", "classes": train.classes,
                 "train": f"train split{' minus the sources training images' if cfg.get('exclude_source_images') else ''}"
                          f", per_class({cfg['target_per_class']}, seed={cfg['target_seed']})",
                 "train_images": len(train), "test": f"test split, per_class({cfg['test_per_class']}, seed={TEST_SEED})",
                 "test_images": len(test),
                 "validation": f"train split minus the training images, per_class({cfg['validation_per_class']}, "
                               f"seed={VALIDATION_SEED}); used only to pick lr_backbone under --lr-grid",
                 "validation_images": len(validation)},
        "fine_tune": {**cfg["fine_tune"], "seeds": seeds, "lr_backbone_grid": lr_grid,
                      "selection": "per candidate, the grid value with the best mean validation accuracy over seeds"
                                   if len(lr_grid) > 1 else "one fixed recipe for every candidate",
                      "image_size": f"{cfg['packaged_image_size']} px for packaged/random (their weights say 224); "
                                    "the bundles' own size"},
        "scores": {"primary": "tk.rank_backbones, one candidate per call, at the backbone's own input size, "
                              "cache off (seconds include loading and extraction)",
                   "secondary": "the same extraction + score at the fine-tuning input size (_ft_size fields)"},
        "timing": "wall seconds, time.perf_counter; torch.set_num_threads(1) in every step; shared machine, see the "
                  "load averages per candidate",
        "sources": {}, "candidates": [],
    }

    reuse = (reusable_runs([Path(f) for f in args.reuse.split(",")], result["fine_tune"], result["data"]["target"])
             if args.reuse else {})
    result["candidate_set"] = args.candidates
    if args.reuse:
        result["reused_runs_from"] = args.reuse.split(",")
    kept: dict[str, dict[str, Any]] = {}
    if args.resume and out.is_file():
        previous = json.loads(out.read_text())
        if not same_protocol(previous, result["fine_tune"], result["data"]["target"]):
            raise SystemExit(f"error: --resume: {out} was run with other fine-tuning settings or another target; use a new --out.")
        kept = {r["name"]: r for r in previous.get("candidates", []) if "accuracy_mean" in r}
        result["resumed"] = {"from": previous["date"], "candidates_kept": sorted(kept)}
        result["candidates"] = list(kept.values())  # in the file from the first write on: a second kill loses none
    pool = None
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"))
    result["jobs"] = args.jobs

    def elapsed() -> str:
        return f"{(time.perf_counter() - started) / 60:.1f} min"

    try:
        specs = {}
        for name, source in cfg["sources"].items():
            info = pretrain(name, source, sources_root / name)
            result["sources"][name] = info
            specs[name] = str(sources_root / name)
            write_json(out, result)
            print(f"[{elapsed()}] source {name:<16} {info['train_images']} images, {info['epochs']} epochs at "
                  f"{info['image_size']} px: held-out accuracy {info['held_out_accuracy']:.3f}, "
                  f"{info['fit_wall_s']:.0f} s{' (reused)' if info.get('reused') else ''}", flush=True)

        layers = CANDIDATE_SETS[args.candidates]
        if args.kinds:
            layers = {kind: layers[kind] if kind in args.kinds.split(",") else () for kind in layers}
        plan = candidates(specs, cfg["packaged_image_size"], layers)
        for i, cand in enumerate(plan, 1):
            if cand["name"] in kept:
                result["statistics"] = statistics(result["candidates"])
                print(f"[{i}/{len(plan)}] {cand['name']:<22} kept from {out.name}", flush=True)
                continue
            row: dict[str, Any] = {k: v for k, v in cand.items() if k != "spec"}
            row["spec"] = cand["spec"].replace(str(sources_root), "<sources>")
            row["loadavg_1m_before"] = os.getloadavg()[0]
            row.update(scores_by_ranking(cand["spec"], cand["layer"], train))
            if cand["fine_tune_size"] is not None:
                matched = scores_at_size(cand["spec"], cand["layer"], train, cand["fine_tune_size"])
                row.update({f"{metric}_ft_size": matched[metric] for metric in METRICS})
                row["ft_size_scores_wall_s"] = matched["wall_s"]
            else:  # fine-tuned at its own size: the primary scores are already at that size
                row.update({f"{metric}_ft_size": row[metric] for metric in METRICS})
            if args.linear_probe:
                row.update(linear_probe(cand, train, test))
            earlier = reuse.get(cand["name"])
            done: dict[tuple[float, int], dict[str, Any]] = {}
            if earlier is not None and earlier["logme"] == row["logme"] and len(lr_grid) > 1:  # the same weights
                done = {key: {**run, "reused_from": earlier["files"]} for key, run in earlier["runs"].items()}
                row["runs_reused"] = sum(1 for lr in lr_grid for seed in seeds if (lr, seed) in done)
            jobs = [(lr, seed) for lr in lr_grid for seed in seeds if (lr, seed) not in done]
            calls = [(cand, train, test, {**cfg["fine_tune"], "lr_backbone": lr}, seed,
                      validation if len(lr_grid) > 1 else None) for lr, seed in jobs]
            futures = [pool.submit(fine_tune, *call) for call in calls] if pool is not None else None
            for k, ((lr, seed), call) in enumerate(zip(jobs, calls, strict=True)):
                try:  # one failed run must not lose the others
                    done[(lr, seed)] = futures[k].result() if futures is not None else fine_tune(*call)
                except Exception as e:
                    done[(lr, seed)] = {"seed": seed, "lr_backbone": lr, "error": f"{type(e).__name__}: {e}"}
            grid_runs = [done[(lr, seed)] for lr in lr_grid for seed in seeds]
            if len(lr_grid) > 1:
                row["selected_lr_backbone"], row["runs"] = select_lr(grid_runs)
                row["grid"] = grid_runs
            else:
                row["runs"] = grid_runs
            accs = [run["accuracy"] for run in row["runs"] if "accuracy" in run]
            if accs:
                row["accuracy_mean"] = float(np.mean(accs))
                row["accuracy_std"] = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
            row["loadavg_1m_after"] = os.getloadavg()[0]
            result["candidates"].append(row)
            scored = [r for r in result["candidates"] if "accuracy_mean" in r]
            result["statistics"] = statistics(scored)
            write_json(out, result)
            ft = [f"{run['accuracy']:.3f}" if "accuracy" in run else "FAILED" for run in row["runs"]]
            ft_s = sum(run.get("fit_wall_s", 0) + run.get("predict_wall_s", 0) for run in row.get("grid", row["runs"])
                       if "reused_from" not in run)
            picked = f" (lr_backbone {row['selected_lr_backbone']:g})" if "selected_lr_backbone" in row else ""
            probe = f"  linear probe {row['linear_probe_accuracy']:.3f}" if "linear_probe_accuracy" in row else ""
            print(f"[{i}/{len(plan)} {elapsed()}] {row['name']:<22} LogME {row['logme']:+.3f} "
                  f"(@ft size {row['logme_ft_size']:+.3f})  H-score {row['hscore']:.3f}  accuracy {' '.join(ft)}{picked}{probe}  "
                  f"score {row['logme_wall_s']:.1f} s  fine-tune {ft_s:.0f} s  load {row['loadavg_1m_after']:.1f}",
                  flush=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if not args.sources_dir:
            shutil.rmtree(sources_root, ignore_errors=True)

    scored = [r for r in result["candidates"] if "accuracy_mean" in r]
    result["total_wall_s"] = time.perf_counter() - started
    result["statistics"] = statistics(scored)
    write_json(out, result)
    plot(scored, result["statistics"], png, args.target_classes)
    print_table(result["candidates"], result["statistics"])
    print(f"total {elapsed()}; wrote {out} and {png}")


if __name__ == "__main__":
    main()
