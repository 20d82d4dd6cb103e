"""The verdict's small-CNN fold models stacked vs one by one: the same accuracy for less CPU? (a benchmark, not a test)

The cross-fit verdict trains one :class:`~transferkit.SmallCNNClassifier` per fold; since 2026-12-04 a core's share
of them trains as one stacked network (:mod:`transferkit.strategies.small_cnn_folds`), which equals the one-by-one
fits only up to float rounding. This checks that what the verdict measures is unchanged in distribution: on
few-shot Fashion-MNIST and scikit-learn digits (bench/baselines.py's draws), ``--per-class`` images per class and
``--seeds``, the five folds (the verdict's ``fold_indices``, seeded like it) are trained both ways in one process,
one thread, and compared by out-of-fold accuracy (what the verdict's marks count), the share of items on which
the two marks agree, the fold models' mean accuracy on the fixed test images, and fit CPU seconds.

Usage: ``python bench/verdict_folds.py [--datasets fashion,digits] [--per-class 5,10,30] [--seeds 0,1] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from baselines import image_splits  # noqa: E402
from finetune import Clock, write_json  # noqa: E402
from run import machine  # noqa: E402

from transferkit.bundle import library_versions  # noqa: E402
from transferkit.data.split import fold_indices  # noqa: E402
from transferkit.strategies import SmallCNNClassifier  # noqa: E402
from transferkit.strategies.small_cnn_folds import fit_side_by_side  # noqa: E402
from transferkit.verdict import marks  # noqa: E402


def cross_fit(train, test, seed: int, stacked: bool) -> dict:
    folds = list(fold_indices(np.asarray(train.labels), 5, seed))
    models = [SmallCNNClassifier(seed=seed, progress=False, device="cpu") for _ in folds]
    load = os.getloadavg()[0]
    with Clock() as clock:
        if stacked:
            fit_side_by_side(models, [train.subset(tr) for tr, _ in folds])
        else:
            for model, (tr, _) in zip(models, folds, strict=True):
                model.fit(train.subset(tr))
    out = np.full(len(train), "-")
    for model, (_, va) in zip(models, folds, strict=True):
        out[va] = list(marks(model, train.subset(va)))
    return {"marks": "".join(out), "out_of_fold_accuracy": float((out == "1").mean()),
            "test_accuracy": float(np.mean([m.score(test) for m in models])), "fit_cpu_s": round(clock.cpu, 2),
            "fit_wall_s": round(clock.wall, 2), "load_1m": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion,digits")
    parser.add_argument("--per-class", default="5,10,30")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", default=f"bench/results/verdict-folds-{dt.date.today()}.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.datasets.split(","):
        for n in (int(v) for v in args.per_class.split(",")):
            for seed in (int(v) for v in args.seeds.split(",")):
                train, test = image_splits(name, n, seed, 1000, "test")
                alone, stacked = cross_fit(train, test, seed, False), cross_fit(train, test, seed, True)
                agree = float(np.mean([a == b for a, b in zip(alone.pop("marks"), stacked.pop("marks"), strict=True)]))
                row = {"dataset": name, "per_class": n, "seed": seed, "items": len(train), "alone": alone,
                       "stacked": stacked, "marks_agree": agree}
                rows.append(row)
                print(row, flush=True)
    summary = {}
    for key in ("out_of_fold_accuracy", "test_accuracy", "fit_cpu_s"):
        summary[key] = {way: round(float(np.mean([r[way][key] for r in rows])), 4) for way in ("alone", "stacked")}
    summary["marks_agree"] = round(float(np.mean([r["marks_agree"] for r in rows])), 4)
    result = {"benchmark": "verdict-folds", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(), "torch_threads": 1, "summary": summary,
              "rows": rows}
    write_json(Path(args.out), result)
    print(summary)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
