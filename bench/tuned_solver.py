"""The tuned logistic head's CV grid: batched Newton solver vs scikit-learn, same choices? how much faster?

Issue 16: a default 20-image ``transferkit fit`` fits the tuned head 6 times, each a grid of ~160 scikit-learn
``LogisticRegression`` fits, most of their cost per-fit overhead. :mod:`transferkit.heads._newton` solves the grid's
problems in one batched damped Newton method while they have at most ``BATCHED_MAX_PARAMS`` parameters. This script
runs :func:`transferkit.heads.tuned.cross_validate` both ways (``BATCHED_MAX_PARAMS = 0`` is the scikit-learn path)
on the same inputs and reports:

1. ``equivalence``: random problems (2-10 classes, 2-24 items per class, 8-512 features of random scales) and real
   features (``packaged:efficientnet_lite0`` on the four tasks of bench/heads.py, through its cache; 2-class pairs of
   Fashion-MNIST at 8 per class, what a 20-image fit trains on): how often the chosen ``(standardize, C)`` differs,
   and the largest difference of a grid accuracy and log-loss; on the real ones also the objective each solver
   reaches on every fold problem (scikit-learn's lbfgs stops at ``tol=1e-4``, or at 500 iterations when the features
   are badly scaled: where the grids differ, it stopped higher).
2. ``crossover``: CPU seconds of one ``_grid`` both ways by parameter count (how the bound was set).
3. ``heads`` (only when asked): bench/heads.py's default head both ways on the same features, test accuracy.
4. ``timing``: CPU (``time.process_time``) and wall seconds of ``fit_tuned`` both ways, interleaved, on the 20-image
   binary case (16 and 20 Fashion-MNIST T-shirt/trouser features) and a 10-class 10-per-class case (80 items after
   the validation split, 10 per class).

Usage: ``python bench/tuned_solver.py [--random 150] [--repeats 5] [--out PATH]`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402
from transferkit.heads import tuned  # noqa: E402

BOUND = tuned.BATCHED_MAX_PARAMS


def both(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """cross_validate by scikit-learn and by the batched solver; how they differ."""
    out = {}
    with threadpool_limits(1):
        for name, bound in (("sklearn", 0), ("newton", BOUND)):
            tuned.BATCHED_MAX_PARAMS = bound
            out[name] = tuned.cross_validate("logistic", x, y, seed=seed)
    tuned.BATCHED_MAX_PARAMS = BOUND
    old, new = out["sklearn"], out["newton"]
    if not old["grid"]:
        return {"same_choice": True, "acc_diff": 0.0, "loss_diff": 0.0, "batched": False}
    acc = max(abs(a["accuracy"] - b["accuracy"]) for a, b in zip(old["grid"], new["grid"], strict=True))
    loss = max(abs(a["log_loss"] - b["log_loss"]) for a, b in zip(old["grid"], new["grid"], strict=True))
    n_classes = len(np.unique(y))
    rank = min(x.shape[1], len(y) - len(y) // old["folds"])
    params = (rank + 1) * (1 if n_classes == 2 else n_classes)
    return {"same_choice": (old["standardize"], old["C"]) == (new["standardize"], new["C"]),
            "old": [old["standardize"], old["C"]], "new": [new["standardize"], new["C"]],
            "acc_diff": acc, "loss_diff": loss, "params": params, "batched": params <= BOUND}


def objective(z: np.ndarray, codes: np.ndarray, coef: np.ndarray, intercept: np.ndarray, c: float) -> float:
    """0.5 ||W||² + C Σ CE: what both solvers minimise (``coef`` ``(r, m)``)."""
    s = z @ coef + intercept
    if coef.shape[1] == 1:
        return float(0.5 * (coef**2).sum() + c * (np.logaddexp(0, s[:, 0]) - (codes == 1) * s[:, 0]).sum())
    top = s.max(1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(s - top).sum(1))
    return float(0.5 * (coef**2).sum() + c * (lse - s[np.arange(len(codes)), codes]).sum())


def objective_gap(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    """Over the fold problems of one split, both scalings, every strength: the objective scikit-learn's warm-started
    path (as ``_path`` runs it) reaches minus the batched solver's, relative (> 0: scikit-learn stopped higher)."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from transferkit.heads._newton import padded_path

    x = np.asarray(x, dtype=np.float64)  # as _grid fits (float32 features would make scikit-learn fit in float32)
    classes, codes = np.unique(y, return_inverse=True)
    k = int(min(tuned.FOLDS, np.bincount(codes).min()))
    fold = tuned._folds(codes, k, seed)
    gaps = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for standardize in (False, True):
            for f in range(k):
                x_train, _ = tuned._scaled(x[fold != f], x[fold == f], standardize)
                z = x_train @ tuned._row_basis(x_train).T
                model = LogisticRegression(max_iter=500, warm_start=True, random_state=seed)
                for c, (coef, b) in zip(tuned.CS, padded_path([(z, codes[fold != f])], tuned.CS, len(classes))[0],
                                        strict=True):
                    model.set_params(C=c).fit(z, codes[fold != f])
                    sk = objective(z, codes[fold != f], model.coef_.T, model.intercept_, c)
                    gaps.append((sk - objective(z, codes[fold != f], coef, b, c)) / abs(sk))
    return {"objective_gap_min": float(min(gaps)), "objective_gap_median": float(np.median(gaps)),
            "objective_gap_max": float(max(gaps))}


def random_problems(count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(2026)
    rows = []
    for j in range(count):
        k = int(rng.choice([2, 2, 3, 4, 5, 10]))
        per = int(rng.choice([2, 3, 4, 5, 8, 12, 24] if k <= 3 else [2, 3, 4, 5]))
        d = int(rng.choice([8, 64, 512]))
        y = np.arange(k * per) % k
        scales = np.exp(rng.normal(size=d) * rng.uniform(0, 3))  # features of very different scales, sometimes
        x = (rng.normal(size=(k, d))[y] * rng.uniform(0.1, 2) + rng.normal(size=(len(y), d))) * scales
        row = {"problem": j, "classes": k, "per_class": per, "features": d, **both(x, y, seed=j)}
        if not row["same_choice"] and row["batched"]:  # whose optimum was it?
            row.update(objective_gap(x, y, j))
        rows.append(row)
    return rows


def real_problems(cache: str, seeds: int) -> list[dict[str, Any]]:
    from heads import tasks

    rows = []
    for task, (xp, yp, _, _) in tasks(cache).items():
        settings = [(np.unique(yp), n) for n in (4, 8, 24)]
        if task == "fashion-mnist":
            settings += [(np.array(pair), 8) for pair in ((0, 1), (2, 4), (5, 7), (3, 6))]
        for classes, n in settings:
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                idx = np.concatenate([rng.permutation(np.flatnonzero(yp == c))[:n] for c in classes])
                row = {"task": task, "classes": len(classes), "per_class": n, "seed": seed,
                       **both(xp[idx], yp[idx], seed=seed)}
                if row["batched"]:
                    row.update(objective_gap(xp[idx], yp[idx], seed))
                rows.append(row)
    return rows


def crossover() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for k, per in ((2, 10), (2, 50), (2, 75), (2, 100), (3, 24), (3, 36), (5, 20), (10, 2), (10, 3), (10, 4)):
        y = np.arange(k * per) % k
        x = rng.normal(size=(len(y), 256)) + rng.normal(size=(k, 256))[y]
        row: dict[str, Any] = {"classes": k, "items": len(y)}
        with threadpool_limits(1):
            for name, bound in (("sklearn", 0), ("newton", 10**9)):
                tuned.BATCHED_MAX_PARAMS = bound
                start = time.process_time()
                grid = tuned._grid("logistic", x, y, tuned.CS, tuned.FOLDS, 0)
                row[f"{name}_cpu_s"] = round(time.process_time() - start, 4)
        assert grid is not None
        row["params"] = (len(y) - len(y) // grid[0] + 1) * (1 if k == 2 else k)
        rows.append(row)
        print(row, flush=True)
    tuned.BATCHED_MAX_PARAMS = BOUND
    return rows


def timing(cache: str, repeats: int) -> list[dict[str, Any]]:
    from heads import tasks

    xp, yp, _, _ = tasks(cache)["fashion-mnist"]
    cases = {}
    for n in (8, 10):
        idx = np.concatenate([np.flatnonzero(yp == c)[:n] for c in (0, 1)])
        cases[f"binary, {2 * n} items"] = (xp[idx], yp[idx])
    idx = np.concatenate([np.flatnonzero(yp == c)[:8] for c in range(10)])
    cases["10 classes, 80 items"] = (xp[idx], yp[idx])
    rows = []
    for case, (x, y) in cases.items():
        seconds: dict[str, list[list[float]]] = {"sklearn": [], "newton": []}
        for _ in range(repeats):  # interleaved: both see the same load
            for name, bound in (("sklearn", 0), ("newton", BOUND)):
                tuned.BATCHED_MAX_PARAMS = bound
                cpu, wall = time.process_time(), time.perf_counter()
                tuned.fit_tuned("logistic", x, y, seed=0)
                seconds[name].append([time.process_time() - cpu, time.perf_counter() - wall])
        tuned.BATCHED_MAX_PARAMS = BOUND
        row: dict[str, Any] = {"case": case, "items": len(y), "features": x.shape[1], "repeats": repeats}
        for name, s in seconds.items():
            row[f"{name}_cpu_s"] = round(float(np.median([c for c, _ in s])), 4)
            row[f"{name}_wall_s"] = round(float(np.median([w for _, w in s])), 4)
        row["cpu_speedup"] = round(row["sklearn_cpu_s"] / row["newton_cpu_s"], 2)
        rows.append(row)
        print(row, flush=True)
    return rows


def heads_protocol(cache: str) -> dict[str, Any]:
    """bench/heads.py's default head both ways on its 4 tasks x 3 sizes x 3 seeds, on the same features: test
    accuracy per setting (mean over seeds) and the runs whose accuracy or choice differs."""
    from heads import PER_CLASS, SEEDS, tasks

    from transferkit.heads import make_head

    settings, differing = [], []
    for task, (xp, yp, xt, yt) in tasks(cache).items():
        for n in PER_CLASS:
            acc: dict[str, list[float]] = {"sklearn": [], "newton": []}
            for seed in SEEDS:
                rng = np.random.default_rng(seed)
                idx = np.concatenate([rng.permutation(np.flatnonzero(yp == c))[:n] for c in np.unique(yp)])
                choices = {}
                for name, bound in (("sklearn", 0), ("newton", BOUND)):
                    tuned.BATCHED_MAX_PARAMS = bound
                    with threadpool_limits(1):
                        head = make_head("logistic", seed).fit(xp[idx], yp[idx])
                    acc[name].append(float(np.mean(head.predict(xt) == yt)))
                    choices[name] = (head.choice_["standardize"], head.choice_["C"])
                if acc["sklearn"][-1] != acc["newton"][-1] or choices["sklearn"] != choices["newton"]:
                    differing.append({"task": task, "train_per_class": n, "seed": seed,
                                      "accuracy": [acc["sklearn"][-1], acc["newton"][-1]],
                                      "choice": [choices["sklearn"], choices["newton"]]})
            settings.append({"task": task, "train_per_class": n,
                             **{f"{k}_accuracy": float(np.mean(v)) for k, v in acc.items()}})
            print(settings[-1], flush=True)
    tuned.BATCHED_MAX_PARAMS = BOUND
    return {"settings": settings, "differing_runs": differing}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    batched = [r for r in rows if r.get("batched")]
    return {"problems": len(rows), "batched": len(batched),
            "choice_differs": sum(not r["same_choice"] for r in rows),
            "max_grid_accuracy_diff": max((r["acc_diff"] for r in rows), default=0.0),
            "max_grid_log_loss_diff": max((r["loss_diff"] for r in rows), default=0.0),
            "objective_gap_min": min((r["objective_gap_min"] for r in batched if "objective_gap_min" in r),
                                     default=None),
            "differing": [r for r in rows if not r["same_choice"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "transferkit-bench-heads"))
    parser.add_argument("--random", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=5, help="training draws per real setting")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", default="equivalence,crossover,timing")
    parser.add_argument("--out", default=f"bench/results/tuned-solver-{dt.date.today()}.json")
    args = parser.parse_args()
    parts = args.parts.split(",")
    result: dict[str, Any] = {"benchmark": "tuned_solver", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "versions": library_versions(), "batched_max_params": BOUND,
                              "load_average_before": os.getloadavg()}
    if "equivalence" in parts:
        rand = random_problems(args.random)
        print("random:", {k: v for k, v in summary(rand).items() if k != "differing"}, flush=True)
        real = real_problems(args.cache, args.seeds)
        print("real:", {k: v for k, v in summary(real).items() if k != "differing"}, flush=True)
        result["equivalence"] = {"random": summary(rand), "real": summary(real), "random_rows": rand,
                                 "real_rows": real}
    if "heads" in parts:
        result["heads_protocol"] = heads_protocol(args.cache)
    if "crossover" in parts:
        result["crossover"] = crossover()
    if "timing" in parts:
        result["timing"] = timing(args.cache, args.repeats)
    result["load_average_after"] = os.getloadavg()
    result["transferkit"] = tk.__version__
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
