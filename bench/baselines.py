"""Baselines benchmark (not a test): the verdict's cheap from-scratch baselines, accuracy and fit seconds.

``SmallCNNClassifier`` (a small CNN at the images' native resolution) on few-shot subsets of

- ``fashion``: Fashion-MNIST, 28 px grey (Debian's IDX files). Training: ``tk.per_class(load_fashion_mnist("train"),
  n, seed)``; test: ``tk.per_class(load_fashion_mnist("test"), test_size / 10, seed=12345)``, 1,000 images.
- ``digits``: scikit-learn's ``load_digits``, 8 px grey (1,797 images, values 0-16 scaled to 0-255). There is no
  official split: a fixed test set of ``test_size / 10`` images per class (seed 12345), at most 100 (~1,000 images),
  training subsets from the rest (~80 per class).

and ``TfidfClassifier`` on ``text``: the Debian package descriptions of ``bench/text.py`` (its ``build_dataset`` and
``split``: 8 sections, a fixed test set of 150 texts per section), at 10 and 100 texts per section. The TF-IDF
variants: ``tfidf`` (the class's defaults: word 1-2-grams + ``char_wb`` 2-5-grams, C from 0.3/3/30 by stratified
5-fold CV), ``tfidf-words`` (the same without character n-grams) and ``tfidf-plain`` (what bench/text.py measured
before: ``TfidfVectorizer(sublinear_tf=True)`` + ``LogisticRegression()``, unigrams, C = 1).

``--evaluate-on validation`` scores on images (texts) of the training pool that the training subset does not use,
never the test split: that is how the defaults were chosen (see the docstring of
``transferkit/strategies/small_cnn.py`` and bench/README.md).

Each run records accuracy, fit and predict wall seconds (``time.perf_counter``) and fit CPU seconds
(``time.process_time``, all threads), the 1-minute load average before and after, torch's thread count and the
fitted model's ``fit_info_`` summary (input size, channels, epochs, steps, parameters). All runs share one process.

Usage:
    python bench/baselines.py [--datasets fashion,digits,text] [--per-class 5,10,30] [--text-per-class 10,100]
        [--seeds 0,1,2] [--test-size 1000] [--evaluate-on test|validation] [--set KEY=VALUE] [--threads N]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from finetune import Clock, write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402

TEST_SEED = 12345
VALIDATION_SEED = 54321
IMAGE_DATASETS = ("fashion", "digits")
TFIDF_METHODS = ("tfidf", "tfidf-words", "tfidf-plain")


def digits() -> tk.ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..256, the top value clipped to 255
    return tk.from_arrays(images, d.target, classes=[str(c) for c in d.target_names], name="digits")


def drawn(pool: Any, n: int, seed: int) -> np.ndarray:
    """Indices ``tk.per_class(pool, n, seed)`` takes (the same draw: one permutation per class), checked."""
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(pool.labels == c))[:n]
                                   for c in range(len(pool.classes))]))
    if not np.array_equal(pool.subset(keep).items, tk.per_class(pool, n, seed).items):
        raise SystemExit("error: tk.per_class no longer draws as this script assumes; update drawn()")
    return keep


def rest(pool: Any, used: np.ndarray) -> Any:
    return pool.subset(np.setdiff1d(np.arange(len(pool)), used))


def image_splits(name: str, n: int, seed: int, test_size: int, evaluate_on: str, classes: str | None = None,
                 ) -> tuple[Any, Any]:
    """``(training subset, scoring set)`` for an image dataset (only ``classes`` of it, e.g. ``"0,6"``, if given)."""
    per = max(1, test_size // 10)
    if name == "fashion":
        pool = tk.load_fashion_mnist("train")
        test_pool = tk.load_fashion_mnist("test")
    else:
        everything = digits()
        test_idx = drawn(everything, min(per, 100), TEST_SEED)
        test_pool, pool = everything.subset(test_idx), rest(everything, test_idx)
    if classes:
        from transferkit.data import select_classes

        pool, test_pool = select_classes(pool, classes), select_classes(test_pool, classes)
    used = drawn(pool, n, seed)
    train = pool.subset(used)
    if evaluate_on == "validation":
        return train, tk.per_class(rest(pool, used), per, seed=VALIDATION_SEED)
    return train, (tk.per_class(test_pool, per, seed=TEST_SEED) if name == "fashion" else test_pool)


def run_small_cnn(train: Any, scoring: Any, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    import torch

    load_before = os.getloadavg()[0]
    with Clock() as fit:
        clf = tk.SmallCNNClassifier(seed=seed, progress=False, device="cpu", **settings).fit(train)
    with Clock() as predict:
        accuracy = clf.score(scoring)
    info = clf.fit_info_
    return {"accuracy": accuracy, "fit_wall_s": round(fit.wall, 3), "fit_cpu_s": round(fit.cpu, 3),
            "predict_wall_s": round(predict.wall, 3), "scored": len(scoring), "torch_threads": torch.get_num_threads(),
            "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0],
            **{k: info[k] for k in ("input_size", "channels", "epochs", "steps", "batch_size", "parameters")},
            "final_train_accuracy": info["history"][-1]["train_accuracy"]}


def fit_tfidf(method: str, train: Any, seed: int, settings: dict[str, Any]) -> Any:
    if method == "tfidf-plain":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        return make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=2000)).fit(
            train.items, np.asarray(train.classes)[train.labels])
    return tk.TfidfClassifier(seed=seed, **{**settings, **({"char_ngrams": False} if method == "tfidf-words" else {})
                                           }).fit(train)


def run_tfidf(method: str, train: Any, scoring: Any, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with Clock() as fit:
        clf = fit_tfidf(method, train, seed, settings)
    with Clock() as predict:
        pred = np.asarray(clf.predict(scoring.items)).astype(str)
    record = {"accuracy": float(np.mean(pred == np.asarray(scoring.classes)[scoring.labels])),
              "fit_wall_s": round(fit.wall, 3), "fit_cpu_s": round(fit.cpu, 3), "predict_wall_s": round(predict.wall, 3),
              "scored": len(scoring), "loadavg_1m_before": load_before, "loadavg_1m_after": os.getloadavg()[0]}
    if hasattr(clf, "fit_info_"):
        record.update({k: clf.fit_info_.get(k) for k in ("C", "chosen_by", "cv_accuracy", "features")})
    return record


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and population std over seeds, per (dataset, method, per_class)."""
    keys = sorted({(r["dataset"], r["method"], r["per_class"]) for r in runs}, key=lambda k: (k[0], k[1], k[2]))
    out = []
    for dataset, method, n in keys:
        rows = [r for r in runs if (r["dataset"], r["method"], r["per_class"]) == (dataset, method, n)]
        acc = [r["accuracy"] for r in rows]
        out.append({"dataset": dataset, "method": method, "per_class": n, "runs": len(rows),
                    "accuracy_mean": round(float(np.mean(acc)), 4), "accuracy_std": round(float(np.std(acc)), 4),
                    "fit_wall_s_mean": round(float(np.mean([r["fit_wall_s"] for r in rows])), 3),
                    "fit_cpu_s_mean": round(float(np.mean([r["fit_cpu_s"] for r in rows])), 3)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="fashion,digits,text")
    p.add_argument("--per-class", default="5,10,30", help="training images per class")
    p.add_argument("--text-per-class", default="10,100", help="training texts per section")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--test-size", type=int, default=1000, help="scoring images (digits: at most ~1,000)")
    p.add_argument("--text-test-per-class", type=int, default=150)
    p.add_argument("--classes", default=None, help="image datasets: keep only these classes (indices or names, "
                   "as fit --classes), e.g. 0,6 for Fashion-MNIST's T-shirts and shirts")
    p.add_argument("--methods", default="small-cnn," + ",".join(TFIDF_METHODS))
    p.add_argument("--evaluate-on", choices=("test", "validation"), default="test")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a SmallCNNClassifier parameter (value read as JSON when it parses), e.g. steps=150")
    p.add_argument("--set-text", action="append", default=[], metavar="KEY=VALUE",
                   help="a TfidfClassifier parameter, e.g. cv=3")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/baselines-<date>.json)")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    settings, text_settings = ({k: _value(v) for k, _, v in (s.partition("=") for s in items)}
                               for items in (args.set, args.set_text))
    seeds = [int(v) for v in args.seeds.split(",")]
    suffix = "" if args.evaluate_on == "test" else "-validation"
    out = Path(args.out or f"bench/results/baselines-{dt.date.today().isoformat()}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "baselines", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine(),
        "versions": __import__("transferkit.bundle", fromlist=["x"]).library_versions(),
        "settings": {"datasets": datasets, "methods": methods, "per_class": args.per_class,
                     "text_per_class": args.text_per_class, "seeds": seeds, "test_size": args.test_size,
                     "text_test_per_class": args.text_test_per_class, "evaluated_on": args.evaluate_on,
                     "classes": args.classes,
                     "small_cnn": {**tk.SmallCNNClassifier().get_params(), **settings, "device": "cpu"},
                     "tfidf": {**tk.TfidfClassifier().get_params(), **text_settings},
                     "test_seed": TEST_SEED, "validation_seed": VALIDATION_SEED,
                     "command": [Path(sys.executable).name, *sys.argv],
                     "timing": "wall: time.perf_counter; cpu: time.process_time (all threads of the one process)"},
        "runs": [], "summary": [],
    }

    plan: list[tuple[str, str, int, int]] = []
    for name in datasets:
        if name in IMAGE_DATASETS and "small-cnn" in methods:
            plan += [(name, "small-cnn", int(n), s) for n in args.per_class.split(",") for s in seeds]
        if name == "text":
            plan += [(name, m, int(n), s) for n in args.text_per_class.split(",") for s in seeds
                     for m in methods if m in TFIDF_METHODS]
    text_data = None
    started = time.perf_counter()
    for i, (name, method, n, seed) in enumerate(plan, 1):
        if name == "text":
            from text import build_dataset, split, validation_set

            if text_data is None:
                ds, info = build_dataset()
                text_data = split(ds, args.text_test_per_class)
                result["text_data"] = info
            pool, test = text_data
            train = tk.per_class(pool, n, seed=seed)
            scoring = test if args.evaluate_on == "test" else validation_set(pool, train, args.text_test_per_class)
            record = run_tfidf(method, train, scoring, seed, text_settings)
        else:
            train, scoring = image_splits(name, n, seed, args.test_size, args.evaluate_on, args.classes)
            record = run_small_cnn(train, scoring, seed, settings)
        result["runs"].append({"dataset": name, "method": method, "per_class": n, "seed": seed, "train": len(train),
                               **record})
        result["summary"] = summarise(result["runs"])
        result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
        write_json(out, result)
        print(f"[{i}/{len(plan)} {(time.perf_counter() - started) / 60:.1f} min] {name:<8}{method:<12} per_class={n:<4}"
              f" seed={seed}  accuracy {record['accuracy']:.3f}  fit {record['fit_wall_s']:.2f} s wall / "
              f"{record['fit_cpu_s']:.2f} s cpu  load {record['loadavg_1m_before']:.1f}", flush=True)
    print(f"\n{'dataset':<9}{'method':<13}{'per class':>10}{'accuracy':>18}{'fit s':>8}{'cpu s':>8}")
    for row in result["summary"]:
        print(f"{row['dataset']:<9}{row['method']:<13}{row['per_class']:>10}"
              f"{row['accuracy_mean']:>11.3f} ± {row['accuracy_std']:.3f}{row['fit_wall_s_mean']:>8.2f}"
              f"{row['fit_cpu_s_mean']:>8.2f}")
    print(f"wrote {out}")


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


if __name__ == "__main__":
    main()
