"""Does LogME rank candidates the way fine-tuning does when it reads features after a brief fine-tune?
(A benchmark, not a test.)

Declared 2026-11-30 (session 7) before any of its results. On three Fashion-MNIST targets LogME on frozen features
had Kendall tau 0.34, 0.40 and 0.36 with searched fine-tuning's accuracy (bench/ranking.py), short of the issue's
0.7, while the fine-tuning race (bench/race.py) reached 0.71 / 0.74, 0.69 / 0.71 and 0.85. Frozen features cannot
show how a network trains (a random-init EfficientNet fine-tunes almost as well as the ImageNet one and scores near
the bottom). Question 1: does LogME reach 0.7 when it scores the features a candidate has after one epoch of
fine-tuning (the race's first rung), on images that fine-tune never saw? Question 2 (the same runs): does the race's
first rung alone — a one-epoch race, about half its cost — rank as well as the whole race?

Protocol:
    Ground truth, candidates, target images and own source bundles exactly as bench/race.py (its ``setup``: the same
    files, the same own-truth rows, the same stop unless each own source's LogME is bit-identical to its truth's).
    The 250 target training images are split into the race's 3 stratified folds (``data.split.fold_indices``, seed 0: the
    folds of the seed-0 races). For every candidate, every lr_backbone in {1e-3, 1e-2, 1e-1} and every fold, one
    fine-tune with the race's first-rung settings (``FineTuneClassifier``: 2 head-only epochs, then 1 epoch, the
    ground truth's other fine-tuning settings, PreciseBN on up to 1,024 images, the fine-tune input size, seed 0,
    CPU, 2 threads) on the fold's training part; then, on the held-out part only: (a) how many it predicts
    correctly; (b) LogME of the fine-tuned backbone's features at the candidate's layer (eval mode, no cache).
    Scores per candidate:
      warm LogME (primary): the best over the three lrs of the mean over folds of (b);
      rung-0 accuracy: the best over the three lrs of the out-of-fold accuracy, (a) summed over folds / 250 (the
        one-epoch race's score; ties keep the candidate order, as the race);
      cold LogME per fold (control): the mean over folds of LogME of the *frozen* features of the held-out part at
        the fine-tune size — what (b) would be without the fine-tune, at the same sample sizes.
    Statistics: Kendall tau-b, weighted tau, Spearman, top-1 and top-3 regret of each score against the ground truth
    over the 14 candidates; frozen LogME (all 250 images) and the whole race's taus read from the files for
    reference. Targets 5-9 and 0-4 (with ``--own-truth`` as the race) and 0-9; all three are reported whatever
    they show. Goal: warm LogME tau >= 0.7 on all three.
    Cost: wall seconds of the fine-tunes and of the scoring, against the seed-0 race's.

Usage:
    python bench/warm_logme.py --target-classes 5-9 --own-truth bench/results/ranking-2026-11-30-own-target5-9.json
    python bench/warm_logme.py --target-classes 0-4 --own-truth bench/results/ranking-2026-11-30-own-target0-4.json
    python bench/warm_logme.py --target-classes 0-9
    python bench/warm_logme.py --quick      # 4 candidates, one lr, 2 folds: checks it runs
Results (bench/README.md, ``warm_logme.py``): the declared runs (2026-11-30) used LogME before its precision cap
(18d59e5), which one collapsed fine-tune on target 5-9 exposed; a rerun now scores with the capped LogME.

Options: ``--state FILE`` (default ``/tmp/warm-logme-<target>.json``): every finished fine-tune's results, written
atomically, so a stopped run resumes; ``--sources-dir`` as race.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import race as race_bench  # noqa: E402  (bench/race.py: ground truth, candidates, regret)
import ranking  # noqa: E402
from run import machine  # noqa: E402

from transferkit import FineTuneClassifier, create_backbone  # noqa: E402
from transferkit._utils import write_json_atomic  # noqa: E402
from transferkit.data.split import fold_indices  # noqa: E402
from transferkit.features.extract import extract_features  # noqa: E402
from transferkit.selection.race import count_correct  # noqa: E402
from transferkit.transferability import logme  # noqa: E402

LRS = (1e-3, 1e-2, 1e-1)
FOLDS = 3
SEED = 0
RUNG = {"head_epochs": 2, "epochs": 1}
RACE_FILES = {"5-9": "bench/results/race-2026-11-30-target5-9.json",
              "0-4": "bench/results/race-2026-11-30-target0-4.json",
              "0-9": "bench/results/race-2026-11-30-target0-9.json"}


def held_out_logme(backbone: Any, layer: str, data: Any) -> float:
    out = extract_features(backbone, data, layer=layer, cache=False, device="cpu", progress=False)
    return float(logme(out.features, np.asarray(data.labels)[out.index]))


def fine_tune_fold(candidate: dict[str, Any], lr: float, train: Any, val: Any, options: dict[str, Any]
                   ) -> dict[str, Any]:
    """One first-rung fine-tune on ``train``; its correct count and warm LogME on ``val``."""
    start = time.perf_counter()
    model = FineTuneClassifier(create_backbone(candidate["spec"]), layer=candidate["layer"],
                               image_size=candidate["fine_tune_size"], lr_backbone=lr, seed=SEED, device="cpu",
                               progress=False, **RUNG, **options)
    model.fit(train)
    fit_s = time.perf_counter() - start
    correct = count_correct(model, val)
    start = time.perf_counter()
    warm = held_out_logme(model.backbone_, model.layer_, val)
    return {"correct": correct, "n": len(val), "warm_logme": warm, "fit_s": fit_s,
            "score_s": time.perf_counter() - start}


def cold_fold(candidate: dict[str, Any], val: Any) -> float:
    backbone = create_backbone(candidate["spec"])
    if candidate["fine_tune_size"] is not None:
        backbone.preprocessing = backbone.preprocessing.with_image_size(candidate["fine_tune_size"])
    return held_out_logme(backbone, candidate["layer"], val)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target-classes", default="5-9", choices=sorted(race_bench.GROUND_TRUTH))
    p.add_argument("--sources-dir", default="/tmp/rank-sources")
    p.add_argument("--own-truth", default=None, metavar="JSON")
    p.add_argument("--state", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    truth, by_name, train, cands = race_bench.setup(args.target_classes, args.sources_dir, args.own_truth,
                                                    args.quick)
    lrs, folds = (LRS[1:2], 2) if args.quick else (LRS, FOLDS)
    if args.quick:
        cands = cands[::4]
    options = {"precise_bn": 1024, **{k: v for k, v in truth["fine_tune"].items()
                                      if k in ("schedule", "lr_head", "lr_decay", "scheduler", "augment",
                                               "batch_size", "precise_bn")}}
    torch.set_num_threads(2)
    labels = np.asarray(train.labels)
    splits = fold_indices(labels, folds, SEED)
    suffix = "-quick" if args.quick else ""
    state_path = Path(args.state or f"/tmp/warm-logme-{args.target_classes}{suffix}.json")
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    settings = {"lrs": list(lrs), "folds": folds, "seed": SEED, **RUNG, "fine_tune": options}
    if state.get("settings", settings) != settings:
        raise SystemExit(f"error: {state_path} was made with other settings; delete it to start afresh")
    state["settings"] = settings
    runs = state.setdefault("runs", {})
    start = time.perf_counter()
    total = len(cands) * (len(lrs) + 1) * folds
    done = 0
    for c in cands:
        for f, (tr, va) in enumerate(splits):
            val = train.subset(va)
            jobs = [(f"{c['name']}|cold|{f}", lambda: {"cold_logme": cold_fold(c, val)})]  # noqa: B023
            jobs += [(f"{c['name']}|{lr:g}|{f}",
                      lambda lr=lr: fine_tune_fold(c, lr, train.subset(tr), val, options))  # noqa: B023
                     for lr in lrs]
            for key, job in jobs:
                if key not in runs:
                    runs[key] = job()
                    write_json_atomic(state_path, state)
                done += 1
                print(f"\r[{done}/{total}] {key:<40} {time.perf_counter() - start:7.0f} s", end="", flush=True)
    seconds = time.perf_counter() - start
    print()

    rows = []
    for i, c in enumerate(cands):
        per_lr = {lr: [runs[f"{c['name']}|{lr:g}|{f}"] for f in range(folds)] for lr in lrs}
        warm = {lr: float(np.mean([r["warm_logme"] for r in rs])) for lr, rs in per_lr.items()}
        accuracy = {lr: sum(r["correct"] for r in rs) / sum(r["n"] for r in rs) for lr, rs in per_lr.items()}
        t = by_name[c["name"]]
        rows.append({"name": c["name"], "kind": c["kind"], "order": i,
                     "warm_logme": max(warm.values()), "warm_logme_lr": max(warm, key=warm.__getitem__),
                     "warm_logme_by_lr": {f"{lr:g}": v for lr, v in warm.items()},
                     "rung0_accuracy": max(accuracy.values()), "rung0_lr": max(accuracy, key=accuracy.__getitem__),
                     "rung0_accuracy_by_lr": {f"{lr:g}": v for lr, v in accuracy.items()},
                     "cold_logme_folds": float(np.mean([runs[f"{c['name']}|cold|{f}"]["cold_logme"]
                                                        for f in range(folds)])),
                     "accuracy_mean": t["accuracy_mean"], "logme": t["logme"], "truth_file": t["truth_file"]})
    # The one-epoch race's order: accuracy, ties by candidate order (as race.race); as a score, minus the rank.
    for position, r in enumerate(sorted(rows, key=lambda r: (-r["rung0_accuracy"], r["order"])), 1):
        r["rung0_score"] = -position
    raced = {}
    if not args.quick:
        raced = {r["name"]: -r["race_rank"] for r in
                 json.loads(Path(RACE_FILES[args.target_classes]).read_text())["candidates"]}
        for r in rows:
            r["race_score"] = raced[r["name"]]
    stats = {}
    for label, key in (("warm logme", "warm_logme"), ("rung-0 accuracy", "rung0_score"),
                       ("cold logme, held-out folds", "cold_logme_folds"), ("frozen logme (250)", "logme"),
                       *((("race (seed 0)", "race_score"),) if raced else ())):
        stats[label] = {**ranking.correlations(rows, key), "top3_regret": race_bench.regret(rows, key, 3)}
    fit_s = sum(v.get("fit_s", 0.0) for v in runs.values())
    score_s = sum(v.get("score_s", 0.0) for v in runs.values())
    result = {"benchmark": "warm-logme", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "command": [Path(sys.executable).name, *sys.argv], "quick": args.quick, "machine": machine(),
              "versions": ranking.versions(), "torch_threads": 2, "device": "cpu",
              "target": f"fashion-mnist classes {args.target_classes}", "train_images": len(train),
              "ground_truth": [race_bench.GROUND_TRUTH[args.target_classes], args.own_truth],
              "settings": settings, "wall_s_this_run": seconds, "fine_tune_s": fit_s, "warm_logme_s": score_s,
              "race_wall_s": (json.loads(Path(RACE_FILES[args.target_classes]).read_text())["race_wall_s"]
                              if raced else None),
              "candidates": rows, "statistics": stats,
              "goal": {"kendall_tau": stats["warm logme"]["kendall_tau"], "goal": ranking.TAU_GOAL}}
    date = dt.date.today().isoformat()
    out = Path(args.out or f"bench/results/warm-logme-{date}-target{args.target_classes}{suffix}.json")
    ranking.write_json(out, result)
    print(f"\n{'candidate':<30}{'warm':>9}{'lr':>7}{'rung0':>7}{'cold/f':>8}{'LogME':>8}{'truth':>8}")
    for r in sorted(rows, key=lambda r: -r["accuracy_mean"]):
        print(f"{r['name']:<30}{r['warm_logme']:>9.3f}{r['warm_logme_lr']:>7g}{r['rung0_accuracy']:>7.3f}"
              f"{r['cold_logme_folds']:>8.3f}{r['logme']:>8.3f}{r['accuracy_mean']:>8.3f}")
    for label, s in stats.items():
        if s["kendall_tau"] is not None:
            print(f"{label:<28} Kendall tau {s['kendall_tau']:+.3f}  weighted {s['weighted_tau']:+.3f}  Spearman "
                  f"{s['spearman_rho']:+.3f}  top-1 regret {s['top1_regret']:.3f}  top-3 regret "
                  f"{s['top3_regret']:.3f}")
    print(f"fine-tunes {fit_s:.0f} s, warm LogME {score_s:.1f} s (2 threads); wrote {out}")


if __name__ == "__main__":
    main()
