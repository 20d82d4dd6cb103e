"""Does a short fine-tuning race rank candidates the way full fine-tuning does, where frozen-feature scores did not?
(A benchmark, not a test.)

Declared 2026-11-30 before any of its results. bench/ranking.py measured, on 14 candidates (EfficientNet-Lite0 from
ImageNet and from random init at four layers, three own source models at two), each fine-tuned with a 6-value
learning-rate search: LogME's Kendall tau with fine-tuned accuracy was 0.34 (target Fashion-MNIST 5-9) and 0.385
(target 0-4), the cross-validated probe's 0.48 and 0.55. Question: does ``transferkit rank --race``
(:mod:`transferkit.selection.race`) reach the issue's 0.7, and at what cost?

Protocol:
    Ground truth: the fine-tuned test accuracy of every candidate in ``bench/results/ranking-2026-11-28-protocol3-
    final.json`` (target 5-9) or ``ranking-2026-11-28-target0-4.json`` (target 0-4), read, not rerun, for ImageNet
    and random init (the same weights on any machine). The own source bundles retrained on this machine differ from
    session 4's (other CPU kernels; bench/ranking.py's docstring), so the six own candidates' rows come from
    ``--own-truth``: the same protocol rerun for them alone (``bench/ranking.py --kinds own``) with these bundles.
    Each own candidate's LogME, computed here, must be bit-identical to that file's (the same weights), else the run
    stops.
    Race: on the 250 target training images only (never the validation or test images), every candidate with
    lr_backbone in {1e-3, 1e-2, 1e-1} (the product default, a decade grid), 3 stratified folds, fine-tuning epochs
    1 → 3 → 9 (factor 3), 2 head-only epochs before each (as the ground truth); the other fine-tuning settings are the ground truth's (two-
    stage schedule, lr_head 3e-3, lr_decay 0.7, cosine, light augmentation, batch 32, PreciseBN on up to 1,024
    images) at the ground truth's input sizes (112 px for ImageNet and random init, 64 px for the own sources);
    seed 0; two torch threads, one process (the whole 2-core machine).
    Statistics: Kendall tau-b, weighted tau and Spearman rho between the race order (``-race_rank``) and the ground
    truth accuracy over all 14 candidates; top-1 regret (best accuracy minus that of the race's first) and top-3
    regret (best accuracy minus the best of the race's first three); the same for LogME and probe from the file.
    Cost: the race's wall seconds against the sum of the ground truth's fine-tuning seconds (those ran on one thread
    each, two at a time, so the ratio is indicative).

Usage:
    python bench/race.py --target-classes 5-9 --sources-dir /tmp/rank-sources
        --own-truth bench/results/ranking-2026-11-30-own-target5-9.json
    python bench/race.py --target-classes 0-4 --sources-dir /tmp/rank-sources
        --own-truth bench/results/ranking-2026-11-30-own-target0-4.json
    python bench/race.py --quick        # 4 candidates, tiny budgets: checks it runs
Repeat (declared 2026-11-30 after both targets' results, before its own): ``--seed 1`` on target 5-9, everything
else the same — other folds and other fine-tuning seeds: how much of the race's tau is its own noise.
Repeat (declared 2026-11-30, session 6, after the three results above, before its own): ``--seed 1`` on target 0-4,
everything else the same.
Third target (declared 2026-11-30, session 6, before its ground truth or race ran): Fashion-MNIST 0-9, 25 training
images per class drawn without the sources' training images (bench/ranking.py's docstring, "Third target"); ground
truth ``bench/results/ranking-2026-11-30-target0-9.json``, all 14 candidates run on this machine (no
``--own-truth``); the race exactly as above, seed 0: ``python bench/race.py --target-classes 0-9``.

Options: ``--seed N`` (default 0), ``--state FILE`` (default ``/tmp/race-<target>.json``): the race's state, so a stopped run resumes.
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

import ranking  # noqa: E402  (bench/ranking.py: candidates, data, sources, statistics)
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.selection.race import race  # noqa: E402

GROUND_TRUTH = {"5-9": "bench/results/ranking-2026-11-28-protocol3-final.json",
                "0-4": "bench/results/ranking-2026-11-28-target0-4.json",
                "0-9": "bench/results/ranking-2026-11-30-target0-9.json"}
RACE = {"lrs": [1e-3, 1e-2, 1e-1], "folds": 3, "min_epochs": 1, "max_epochs": 9, "factor": 3, "head_epochs": 2,
        "seed": 0}
QUICK_RACE = {**RACE, "lrs": [1e-2], "folds": 2, "max_epochs": 1}


def regret(rows: list[dict[str, Any]], key: str, k: int) -> float:
    """Best ground-truth accuracy minus the best among the ``k`` rows with the highest ``key``."""
    best = max(r["accuracy_mean"] for r in rows)
    top = sorted(rows, key=lambda r: -r[key])[:k]
    return float(best - max(r["accuracy_mean"] for r in top))


def setup(target: str, sources_dir: str, own_truth: str | None, quick: bool = False
          ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], tk.ImageDataset, list[dict[str, Any]]]:
    """The ground truth (file, rows by candidate name), the 250 target training images and the 14 candidates;
    retrains missing source bundles and stops unless each own source's LogME is bit-identical to its truth's."""
    truth = json.loads(Path(GROUND_TRUTH[target]).read_text())
    by_name = {r["name"]: {**r, "truth_file": GROUND_TRUTH[target]} for r in truth["candidates"]}
    if own_truth:
        own = json.loads(Path(own_truth).read_text())
        if not ranking.same_protocol(own, truth["fine_tune"], truth["data"]["target"]):
            raise SystemExit(f"error: {own_truth} used other fine-tuning settings or another target than the "
                             "ground truth")
        by_name.update({r["name"]: {**r, "truth_file": own_truth} for r in own["candidates"]})
    cfg = ranking.target_config(ranking.FULL, target)
    sources_root = Path(sources_dir)
    sources = {}
    for name, source in cfg["sources"].items():
        ranking.pretrain(name, source, sources_root / name)
        sources[name] = str(sources_root / name)
    train, _, _ = ranking.target_data(cfg, target)
    cands = ranking.candidates(sources, cfg["packaged_image_size"], ranking.CANDIDATE_SETS["wide"])
    for c in cands:
        if c["kind"] == "pretrained (own source)" and not quick:  # --quick only checks that the script runs
            torch.set_num_threads(1)  # the ground truth's LogME was computed on one thread
            (row,) = tk.rank_backbones(train, [c["spec"]], layers=[c["layer"]], cache=False, device="cpu",
                                       progress=False)
            if row["score"] != by_name[c["name"]]["logme"]:
                raise SystemExit(f"error: {c['name']}: LogME {row['score']!r} differs from the ground truth's "
                                 f"{by_name[c['name']]['logme']!r}: not the same source weights")
    return truth, by_name, train, cands


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target-classes", default="5-9", choices=sorted(GROUND_TRUTH))
    p.add_argument("--sources-dir", default="/tmp/rank-sources", help="source bundles (retrained when missing)")
    p.add_argument("--state", default=None, help="race state file (default /tmp/race-<target>.json)")
    p.add_argument("--own-truth", default=None, metavar="JSON",
                   help="ground-truth rows for the own candidates (bench/ranking.py --kinds own with these bundles)")
    p.add_argument("--quick", action="store_true", help="4 candidates, one lr, 2 folds, 1 epoch: checks it runs")
    p.add_argument("--seed", type=int, default=0, help="seeds the folds and every fine-tune (protocol: 0; a repeat "
                                                       "with 1 measures the race's own noise)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    truth, by_name, train, cands = setup(args.target_classes, args.sources_dir, args.own_truth, args.quick)
    if args.quick:
        cands = cands[::4]
    settings = {**(QUICK_RACE if args.quick else RACE), "seed": args.seed}
    options = {k: v for k, v in truth["fine_tune"].items()
               if k in ("schedule", "lr_head", "lr_decay", "scheduler", "augment", "batch_size", "precise_bn")}
    torch.set_num_threads(2)
    suffix = f"{'-quick' if args.quick else ''}{f'-seed{args.seed}' if args.seed else ''}"
    state = Path(args.state or f"/tmp/race-{args.target_classes}{suffix}.json")
    start = time.perf_counter()
    raced = race(train, [{"backbone": c["spec"], "layer": c["layer"], "image_size": c["fine_tune_size"],
                          "name": c["name"], "kind": c["kind"]} for c in cands],
                 lrs=settings["lrs"], folds=settings["folds"], min_epochs=settings["min_epochs"],
                 max_epochs=settings["max_epochs"], factor=settings["factor"], head_epochs=settings["head_epochs"],
                 seed=settings["seed"], device="cpu", state=state, fine_tune_options=options, progress=True)
    seconds = time.perf_counter() - start

    rows = []
    for r in raced:
        t = by_name[r["name"]]
        rows.append({"name": r["name"], "kind": r["kind"], "race_rank": r["race_rank"], "race_score": -r["race_rank"],
                     "race_accuracy": r["race_accuracy"], "race_epochs": r["race_epochs"], "race_lr": r["race_lr"],
                     "accuracy_mean": t["accuracy_mean"], "selected_lr_backbone": t["selected_lr_backbone"],
                     "logme": t["logme"], "probe": t["probe"], "truth_file": t["truth_file"]})
    stats = {}
    for label, key in (("race", "race_score"), ("logme", "logme"), ("probe", "probe")):
        stats[label] = {**ranking.correlations(rows, key), "top3_regret": regret(rows, key, 3)}
    ground_truth_s = sum(run["fit_wall_s"] + run.get("predict_wall_s", 0.0) for name in by_name
                         for run in by_name[name]["grid"])
    result = {"benchmark": "race", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "command": [Path(sys.executable).name, *sys.argv], "quick": args.quick, "machine": machine(),
              "versions": ranking.versions(), "torch_threads": 2, "device": "cpu",
              "target": f"fashion-mnist classes {args.target_classes}", "train_images": len(train),
              "ground_truth": [GROUND_TRUTH[args.target_classes], args.own_truth], "race": settings, "fine_tune": options,
              "race_wall_s": seconds, "ground_truth_fine_tune_s": ground_truth_s, "candidates": rows,
              "statistics": stats, "goal": {"kendall_tau": stats["race"]["kendall_tau"], "goal": ranking.TAU_GOAL}}
    date = dt.date.today().isoformat()
    out = Path(args.out or f"bench/results/race-{date}-target{args.target_classes}{suffix}.json")
    ranking.write_json(out, result)
    plot(rows, stats, out.with_suffix(".png"), args.target_classes)
    print(f"\n{'candidate':<30}{'race #':>7}{'race acc':>9}{'epochs':>7}{'lr':>7}{'truth':>8}{'LogME':>8}{'probe':>7}")
    for r in rows:
        print(f"{r['name']:<30}{r['race_rank']:>7}{r['race_accuracy']:>9.3f}{r['race_epochs']:>7}{r['race_lr']:>7g}"
              f"{r['accuracy_mean']:>8.3f}{r['logme']:>8.3f}{r['probe']:>7.3f}")
    for label, s in stats.items():
        if s["kendall_tau"] is not None:
            print(f"{label:<6} Kendall tau {s['kendall_tau']:+.3f}  weighted {s['weighted_tau']:+.3f}  Spearman "
                  f"{s['spearman_rho']:+.3f}  top-1 regret {s['top1_regret']:.3f}  top-3 regret {s['top3_regret']:.3f}")
    print(f"race {seconds:.0f} s (2 threads) vs ground truth fine-tuning {ground_truth_s:.0f} s (1 thread per run); "
          f"wrote {out}")


def plot(rows: list[dict[str, Any]], stats: dict[str, Any], path: Path, target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"pretrained (ImageNet)": "tab:blue", "random init": "tab:grey", "pretrained (own source)": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for kind, colour in colours.items():
        members = [r for r in rows if r["kind"] == kind]
        ax.scatter([r["accuracy_mean"] for r in members], [r["race_rank"] for r in members], color=colour,
                   label=kind)
        for r in members:
            ax.annotate(f"{r['name']} ({r['race_epochs']} ep)", (r["accuracy_mean"], r["race_rank"]),
                        textcoords="offset points", xytext=(5, 3), fontsize=7)
    ax.invert_yaxis()
    ax.set_yticks(np.arange(1, len(rows) + 1))
    ax.set_xlabel("fine-tuned test accuracy (ground truth: 6-value lr search, 2 seeds)")
    ax.set_ylabel("race rank (3-fold, 250 training images)")
    tau = stats["race"]["kendall_tau"]
    ax.set_title(f"Fashion-MNIST {target}: fine-tuning race vs full fine-tuning (Kendall tau "
                 f"{tau:.2f}; LogME {stats['logme']['kendall_tau']:.2f})" if tau is not None else "race", fontsize=10)
    ranking.save_figure(fig, ax, path)


if __name__ == "__main__":
    main()
