"""Does the verdict's sign match the held-out truth? (A benchmark, not a test.)

Issue 16's goal: on 3+ real tasks, the verdict of a default ``fit`` (feature extraction, tuned logistic head, against
the small CNN from scratch; cross-fitted below 100 validation items) has the sign of the held-out test comparison of
the same two models, at 10 and 30 labels per class. Tasks, pools and test sets: bench/heads.py's ``datasets()``.

Per (task, labels per class, seed): ``data = per_class(pool, n, seed)``, split 80/20 as ``fit`` does; the transfer
model is fitted on the training split, the verdict computed by ``jobs.baseline.baseline_verdict`` exactly as ``fit``
does; on the test set both the transfer model and a small CNN trained on the same training split are scored.
A verdict *matches* when positive with test gain > 0 or negative with test gain < 0; *neutral* is counted apart
(not a wrong sign, but no answer); a *wrong sign* is positive with test gain < 0 or negative with > 0. The test
comparison gets its own verdict too (the paired bootstrap over the test images, 95 %): ``test_verdict``; a neutral
verdict whose test comparison is neutral as well is ``neutral (test agrees)``, one whose test comparison is decisive
is ``neutral (test decisive)`` — the cases where the verdict missed an answer the test set gives.

Usage: ``python bench/verdict_sign.py [--seeds 0] [--tasks fashion-mnist,digits,lfw,textures] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from heads import _versions, datasets  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.jobs.baseline import baseline_verdict  # noqa: E402
from transferkit.jobs.fit import FitConfig  # noqa: E402
from transferkit.verdict import classify, correctness, paired_bootstrap  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--per-class", default="10,30")
    parser.add_argument("--cache", default="/tmp/hb/cache")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of the tasks (default: all)")
    parser.add_argument("--out", default=f"bench/results/verdict-sign-{dt.date.today()}.json")
    args = parser.parse_args()
    runs = []
    chosen = args.tasks.split(",") if args.tasks else None
    for task, (pool, test) in datasets().items():
        if chosen is not None and task not in chosen:
            continue
        for n in (int(v) for v in args.per_class.split(",")):
            for seed in (int(v) for v in args.seeds.split(",")):
                start = time.perf_counter()
                data = tk.per_class(pool, n, seed=seed)
                train, val = tk.stratified_split(data, 0.2, seed=seed)
                with tempfile.TemporaryDirectory() as out:
                    cfg = FitConfig(data=task, out=out, seed=seed, progress=False, cache=args.cache)
                    transfer = tk.FeatureExtractionClassifier(seed=seed, cache=args.cache, progress=False).fit(train)
                    tk.save_bundle(transfer, out, extra={"verdict": {"status": "pending"}})
                    verdict = baseline_verdict(cfg, transfer, data, train, val)
                cnn = tk.SmallCNNClassifier(seed=seed, progress=False).fit(train)
                t_index, t_right = correctness(transfer, test)
                c_index, c_right = correctness(cnn, test)
                assert (t_index == c_index).all(), "both models must read the same test images"
                t_acc, c_acc = float(t_right.mean()), float(c_right.mean())
                gain, lo, hi = paired_bootstrap(t_right, c_right, seed=seed)
                test_verdict = classify(lo, hi)
                if verdict["verdict"] == "neutral":
                    outcome = "neutral (test agrees)" if test_verdict == "neutral" else "neutral (test decisive)"
                else:
                    outcome = ("match" if (verdict["verdict"] == "positive") == (gain > 0) and gain != 0
                               else "wrong sign")
                row = {"task": task, "per_class": n, "seed": seed, "verdict": verdict["verdict"],
                       "protocol": verdict["protocol"], "verdict_gain": verdict["gain"], "ci": verdict["ci"],
                       "test_transfer": t_acc, "test_small_cnn": c_acc, "test_gain": gain,
                       "test_ci": [lo, hi], "test_verdict": test_verdict, "test_items": len(t_right), "outcome": outcome,
                       "seconds": round(time.perf_counter() - start, 1)}
                runs.append(row)
                print(json.dumps(row), flush=True)
    counts = {k: sum(r["outcome"] == k for r in runs) for k in ("match", "neutral (test agrees)", "neutral (test decisive)",
                                                                  "wrong sign")}
    result = {"benchmark": "verdict-sign", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": {"transferkit": tk.__version__, **_versions()}, "counts": counts,
              "tasks": chosen or "all", "seeds": args.seeds, "per_class": args.per_class,
              "runs": runs}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(counts, "wrote", args.out)


if __name__ == "__main__":
    main()
