"""Multi-task benchmark (not a test): does one backbone trained for two tasks at once do each task as well as a
single-task model of the same budget?

Data: Fashion-MNIST (Debian's IDX files) with ``packaged:efficientnet_lite0`` at ``--image-size`` (64 px; the
images are 28 px, and at 32 px the frozen features lose 17 points on the item task). Two tasks on the same images:

- ``item``: the 10 Fashion-MNIST classes;
- ``group``: where it is worn, 4 classes: upper body (T-shirt/top, Pullover, Dress, Coat, Shirt), legs (Trouser),
  feet (Sandal, Sneaker, Ankle boot), carried (Bag). A coarser partition that cuts across the item's look (a
  sandal and an ankle boot share a group, a shirt and a trouser do not).

Scenarios (the training pool is ``tk.per_class(train, n, seed)``):

- ``full``: ``--per-class`` images per class, both tasks labelled on every image;
- ``partial``: ``--pool-per-class`` images per class, ``group`` labelled on all of them and ``item`` only on the
  first ``--per-class`` of each class (the other cells empty: masked out of the item loss). Coarse labels are cheap,
  fine ones dear: does the shared backbone pass what the coarse labels teach on to the item task?

Methods, each on the same pool and seed: ``feature-extraction`` (the tuned logistic head; multi-task extracts the
features once and fits one head per task), on every scenario, and ``fine-tune`` on ``--fine-tune-scenarios``
(``partial`` by default: the scenario where a shared backbone can matter): two-stage with bench/finetune.py's tuned
rates (head 3e-3, backbone 1e-3, decay 0.7), 1 head epoch + 2, light augmentation, only the top
``--unfreeze-top`` 2 layer groups learning (what a shared 2-core CPU affords: about 0.15 s per image and epoch at
64 px, against 0.3 s for every group). Each is trained as one multi-task model (fine-tune: ``equal`` and
``uncertainty`` weighting) and as one
single-task model per task trained on the items labelled for that task — the same budget: strategy, settings,
epochs, seed and pool. Scored on ``tk.per_class(test, test_size / 10, seed=12345)`` (both tasks labelled); the gain
of multi over single per task comes with the paired bootstrap 95% interval over test images that the transfer
verdict uses. Wall seconds are per fit (``time.perf_counter``), all runs in one process; the 1-minute load average
is recorded (the machine is shared: timings under load are inflated, accuracies are not).

Usage:
    python bench/multitask.py [--scenarios full,partial] [--fine-tune-scenarios partial] [--per-class 10]
        [--pool-per-class 40] [--seeds 0] [--test-size 500] [--image-size 64] [--epochs 2] [--head-epochs 1]
        [--unfreeze-top 2] [--lr-head 3e-3] [--lr-backbone 1e-3] [--lr-decay 0.7]
        [--methods feature-extraction,fine-tune] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from finetune import versions, write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.verdict import paired_bootstrap  # noqa: E402

BACKBONE = "packaged:efficientnet_lite0"
TEST_SEED = 12345
GROUPS = {0: "upper body", 1: "legs", 2: "upper body", 3: "upper body", 4: "upper body", 5: "feet", 6: "upper body",
          7: "feet", 8: "carried", 9: "feet"}
TASKS = ("item", "group")


def task_labels(ds: tk.ImageDataset, item_rows: np.ndarray | None = None) -> dict[str, list[Any]]:
    """The two tasks' labels of a Fashion-MNIST subset; ``item`` only on ``item_rows`` (else on all)."""
    assert ds.labels is not None
    items: list[Any] = [ds.classes[k] for k in ds.labels]
    if item_rows is not None:
        keep = set(item_rows.tolist())
        items = [c if i in keep else None for i, c in enumerate(items)]
    return {"item": items, "group": [GROUPS[int(k)] for k in ds.labels]}


def scenario_data(name: str, per_class: int, pool_per_class: int, seed: int) -> tk.MultiTaskDataset:
    train = tk.load_fashion_mnist("train")
    if name == "full":
        pool = tk.per_class(train, per_class, seed=seed)
        return tk.from_task_labels(pool, task_labels(pool), name=f"fashion-mnist full {per_class}/class")
    pool = tk.per_class(train, pool_per_class, seed=seed)
    assert pool.labels is not None
    rng = np.random.default_rng(seed + 1)
    item_rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(pool.labels == c))[:per_class]
                                        for c in range(len(pool.classes))]))
    return tk.from_task_labels(pool, task_labels(pool, item_rows),
                               name=f"fashion-mnist partial {pool_per_class}/class, item on {per_class}/class")


def correct_marks(model: Any, test: tk.MultiTaskDataset, task: str) -> np.ndarray:
    """0/1 per test image for ``task``: a multi-task model's column of that task, or a single-task model."""
    proba = model.predict_proba(test.inputs)
    t = test.tasks.index(task)
    truth = np.asarray(test.classes[t])[test.labels[:, t]]
    if getattr(model, "tasks_", None):
        k = model.tasks_.index(task)
        return np.asarray(model.classes_[k]).astype(str)[proba[k].argmax(1)] == truth
    return np.asarray(model.classes_).astype(str)[proba.argmax(1)] == truth


def make_model(method: str, weighting: str, args: argparse.Namespace, seed: int, cache: str) -> Any:
    common = {"seed": seed, "progress": False, "device": "cpu"}
    if method == "feature-extraction":
        backbone = tk.create_backbone(BACKBONE)
        backbone.preprocessing = backbone.preprocessing.with_image_size(args.image_size)
        return tk.FeatureExtractionClassifier(backbone, cache=cache, **common)
    return tk.FineTuneClassifier(BACKBONE, image_size=args.image_size, task_weighting=weighting, epochs=args.epochs,
                                 head_epochs=args.head_epochs, lr_head=args.lr_head, lr_backbone=args.lr_backbone,
                                 lr_decay=args.lr_decay, unfreeze_top=args.unfreeze_top, **common)


def run_scenario(name: str, seed: int, args: argparse.Namespace, test: tk.MultiTaskDataset,
                 cache: str) -> list[dict[str, Any]]:
    data = scenario_data(name, args.per_class, args.pool_per_class, seed)
    rows: list[dict[str, Any]] = []
    for method in [m for m in args.methods if m != "fine-tune" or name in args.fine_tune_scenarios]:
        marks: dict[tuple[str, str], np.ndarray] = {}
        variants = [("multi", "equal")] + ([("multi", "uncertainty")] if method == "fine-tune" else []) + \
            [("single", task) for task in TASKS]
        for kind, which in variants:
            model = make_model(method, which if kind == "multi" else "equal", args, seed, cache)
            fit_on = data if kind == "multi" else data.task(which)
            load = os.getloadavg()[0]
            start = time.perf_counter()
            model.fit(fit_on)
            seconds = time.perf_counter() - start
            label = f"multi-{which}" if kind == "multi" else "single"
            for task in (TASKS if kind == "multi" else (which,)):
                marks[(label, task)] = correct_marks(model, test, task)
                row = {"scenario": name, "seed": seed, "method": method, "model": label, "task": task,
                       "accuracy": float(marks[(label, task)].mean()), "fit_seconds": round(seconds, 2),
                       "train_items": int(len(fit_on.labelled(TASKS.index(task)))) if kind == "multi"
                       else int(len(fit_on)), "load_before": round(load, 2)}
                if kind == "multi" and method == "fine-tune":
                    weights = model.fit_info_.get("task_weights")
                    row["task_weight"] = weights[TASKS.index(task)] if weights else None
                rows.append(row)
                print(f"{name} seed {seed} {method} {label} {task}: {row['accuracy']:.4f} ({seconds:.0f} s)",
                      flush=True)
        for label in [lab for lab in {k[0] for k in marks} if lab != "single"]:
            for task in TASKS:
                gain, lo, hi = paired_bootstrap(marks[(label, task)], marks[("single", task)], seed=seed)
                rows.append({"scenario": name, "seed": seed, "method": method, "model": label, "task": task,
                             "gain_over_single": gain, "ci": [lo, hi]})
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and std over seeds) accuracy per (scenario, method, model, task), and the gain over single-task."""
    out = []
    keys = sorted({(r["scenario"], r["method"], r["model"], r["task"]) for r in rows if "accuracy" in r})
    for scenario, method, model, task in keys:
        acc = [r["accuracy"] for r in rows if (r["scenario"], r["method"], r["model"], r["task"]) ==
               (scenario, method, model, task) and "accuracy" in r]
        gains = [r for r in rows if (r["scenario"], r["method"], r["model"], r["task"]) ==
                 (scenario, method, model, task) and "gain_over_single" in r]
        out.append({"scenario": scenario, "method": method, "model": model, "task": task,
                    "accuracy": float(np.mean(acc)), "std": float(np.std(acc)), "seeds": len(acc),
                    **({"gain_over_single": float(np.mean([g["gain_over_single"] for g in gains])),
                        "ci_per_seed": [g["ci"] for g in gains]} if gains else {})})
    return out


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy per task, one panel per scenario; a multi-task bar carries its gain over the single-task one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = sorted({s["scenario"] for s in summary})
    order = [(m, model) for m in ("feature-extraction", "fine-tune")
             for model in ("single", "multi-equal", "multi-uncertainty")]
    colours = {bar: plt.cm.tab10(i) for i, bar in enumerate(order)}
    fig, axes = plt.subplots(1, len(scenarios), figsize=(6.5 * len(scenarios), 4.6), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        bars = [b for b in order if any((s["scenario"], s["method"], s["model"]) == (scenario, *b) for s in summary)]
        width = 0.8 / max(1, len(bars))
        for b, (method, model) in enumerate(bars):
            values = [next(s for s in summary if (s["scenario"], s["method"], s["model"], s["task"]) ==
                           (scenario, method, model, task)) for task in TASKS]
            x = np.arange(len(TASKS)) + (b - (len(bars) - 1) / 2) * width
            ax.bar(x, [v["accuracy"] for v in values], width, yerr=[v["std"] for v in values], capsize=2,
                   label=f"{'FE' if method == 'feature-extraction' else 'FT'} {model}", color=colours[(method, model)])
            for xi, v in zip(x, values, strict=True):
                gain = f" ({100 * v['gain_over_single']:+.1f})" if "gain_over_single" in v else ""
                ax.text(xi, v["accuracy"] + 0.01, f"{v['accuracy']:.2f}{gain}", ha="center", va="bottom", fontsize=7,
                        rotation=90)
        ax.set_xticks(np.arange(len(TASKS)), TASKS)
        ax.set_ylim(0, 1.45)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(f"scenario: {scenario}")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.suptitle("One backbone, one head per task vs single-task models of the same budget "
                 "(in brackets: gain over single-task, points)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default="full,partial")
    p.add_argument("--fine-tune-scenarios", default="partial")
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--pool-per-class", type=int, default=40)
    p.add_argument("--seeds", default="0")
    p.add_argument("--test-size", type=int, default=500)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--head-epochs", type=int, default=1)
    p.add_argument("--unfreeze-top", type=int, default=2)
    p.add_argument("--lr-head", type=float, default=3e-3)
    p.add_argument("--lr-backbone", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=0.7)
    p.add_argument("--methods", default="feature-extraction,fine-tune")
    p.add_argument("--quick", action="store_true", help="5/class, pool 15/class, 100 test images, 1+1 epochs")
    p.add_argument("--out", default=None)
    p.add_argument("--replot", default=None, metavar="JSON", help="only redraw the PNG of a results JSON")
    args = p.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text())["summary"], Path(args.replot).with_suffix(".png"))
        return
    if args.quick:
        args.per_class, args.pool_per_class, args.test_size, args.epochs, args.head_epochs = 5, 15, 100, 1, 1
    args.methods = args.methods.split(",")
    args.fine_tune_scenarios = args.fine_tune_scenarios.split(",")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    stamp = dt.date.today().isoformat()
    out = Path(args.out or Path(__file__).parent / "results" / f"multitask-{stamp}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    test_pool = tk.per_class(tk.load_fashion_mnist("test"), max(1, args.test_size // 10), seed=TEST_SEED)
    test = tk.from_task_labels(test_pool, task_labels(test_pool), name="fashion-mnist test")
    result: dict[str, Any] = {"benchmark": "multitask", "date": stamp, "machine": machine(), "versions": versions(),
                              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "backbone": BACKBONE,
                              "groups": {tk.load_fashion_mnist("test").classes[k]: g for k, g in GROUPS.items()},
                              "test_images": len(test), "runs": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:  # features computed once per image, shared by the FE models
        for seed in (int(s) for s in args.seeds.split(",")):
            for scenario in args.scenarios.split(","):
                result["runs"] += run_scenario(scenario, seed, args, test, cache)
                result["summary"] = summarise(result["runs"])
                result["seconds"] = round(time.perf_counter() - start, 1)
                write_json(out, result)
    plot(result["summary"], out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
