"""Fine-tuning benchmark (not a test): few-shot Fashion-MNIST with the packaged EfficientNet-Lite0 weights.

For 10, 30 and 100 labels per class and several seeds, trains and scores on one fixed held-out test set:

| method | what |
|---|---|
| ``scratch`` | ``tk.ScratchClassifier``: the same architecture, randomly initialised |
| ``feature-extraction`` | ``tk.FeatureExtractionClassifier``: frozen backbone, logistic-regression head |
| ``two-stage`` | ``tk.FineTuneClassifier(schedule="two-stage")``: head first, then every group (LP-FT) |
| ``gradual`` | ``tk.FineTuneClassifier(schedule="gradual")``: ULMFiT gradual unfreezing, discriminative rates |
| ``fastai`` | fastai's ``vision_learner`` on the same timm trunk and weights, then ``learn.fine_tune`` |

Every method sees the same training subset (``tk.per_class(train, n, seed)``), the same test subset
(``tk.per_class(test, test_size / 10, seed=12345)``), the same image size and the same pretrained weights.
Each run executes in a fresh process (fastai patches torch on import; no run warms another's caches) and reports
accuracy, macro-F1, wall and CPU seconds for fit and predict. The summary gives mean ± std per
(method, per_class) and the goal checks of the issue (reported, never asserted).

Usage:
    python bench/finetune.py [--quick] [--per-class 10,30,100] [--seeds 0,1,2] [--test-size 2000]
        [--methods scratch,feature-extraction,two-stage,gradual,fastai] [--image-size 112]
        [--set two-stage.lr_backbone=3e-4 ...] [--out bench/results/finetune-<date>.json] [--resume]

The JSON is rewritten atomically after every run; after an interruption, the same command with ``--resume`` keeps
the finished runs (refusing ones recorded with other settings) and runs the rest.

fastai is a benchmark-only dependency; see bench/README.md for the install command that keeps torch as it is.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

BACKBONE = "packaged:efficientnet_lite0"
TEST_SEED = 12345  # the held-out test subset never changes with the training seed
RUN_BUDGET_S = 600.0  # the "within 10 minutes on 2 cores per run"
MARGIN_POINTS = 3.0  # the "beats both scratch and feature extraction by >= 3 points"
METHODS = ("scratch", "feature-extraction", "two-stage", "gradual", "fastai")
FINE_TUNE_METHODS = ("two-stage", "gradual")

# Settings at the reference size (--reference-per-class, 100 labels per class). Epoch counts are scaled up for
# smaller training sets (see epochs_scale) so every size gets the same number of optimizer steps.
DEFAULTS: dict[str, dict[str, Any]] = {
    "scratch": {"epochs": 15, "lr": 2e-3, "scheduler": "cosine", "augment": "light", "batch_size": 32,
                "weight_decay": 5e-4},
    "feature-extraction": {"head": "logistic", "batch_size": 64},
    "two-stage": {"schedule": "two-stage", "head_epochs": 2, "epochs": 6, "lr_head": 3e-3, "lr_backbone": 1e-3,
                  "lr_decay": 0.7, "scheduler": "cosine", "augment": "light", "batch_size": 32},
    "gradual": {"schedule": "gradual", "head_epochs": 2, "epochs_per_stage": 1, "epochs": 3, "lr_head": 3e-3,
                "lr_backbone": 5e-4, "lr_decay": 0.7, "scheduler": "cosine", "augment": "light", "batch_size": 32},
    # fastai's documented recipe: fine_tune = 1 cycle frozen (freeze_epochs), then unfrozen epochs with
    # discriminative rates slice(base_lr/2/lr_mult, base_lr/2); defaults base_lr=2e-3, lr_mult=100. Same epoch
    # counts as two-stage; fastai's own augmentation (aug_transforms) and head (concat pool, BN, dropout, 512).
    "fastai": {"freeze_epochs": 2, "epochs": 6, "base_lr": 2e-3, "lr_mult": 100, "batch_size": 32,
               "augment": "aug_transforms()", "num_workers": 0},
}
EPOCH_KEYS = {"scratch": ("epochs",), "feature-extraction": (), "two-stage": ("head_epochs", "epochs"),
              "gradual": ("head_epochs", "epochs_per_stage", "epochs"), "fastai": ("freeze_epochs", "epochs")}


# -- settings ----------------------------------------------------------------------------------------------
def epochs_scale(per_class: int, reference: int, scaling: str) -> int:
    """Epoch multiplier: with ``steps``, a 10-per-class set trains 10x the epochs of a 100-per-class one.

    A fixed number of epochs would give a 100-image set 4 optimizer steps per epoch, too few for the head to
    converge; equal steps per size is the BiT-HyperRule practice (Kolesnikov et al., ECCV 2020).
    """
    if scaling == "none":
        return 1
    return max(1, round(reference / per_class))


def settings_for(method: str, base: dict[str, Any], scale: int) -> dict[str, Any]:
    return {k: v * scale if k in EPOCH_KEYS[method] else v for k, v in base.items()}


def parse_overrides(items: list[str], methods: dict[str, dict[str, Any]]) -> None:
    """``METHOD.KEY=VALUE`` (value read as JSON when it parses, else a string) into ``methods``, in place."""
    for item in items:
        target, _, raw = item.partition("=")
        method, _, key = target.partition(".")
        if method not in methods or not key or not raw:
            raise SystemExit(f"error: --set expects METHOD.KEY=VALUE with METHOD in {', '.join(methods)}. "
                             f"Got {item!r} instead.")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        methods[method][key] = value


def quick_settings(methods: dict[str, dict[str, Any]]) -> None:
    """One epoch per stage everywhere: checks the script end to end, says nothing about accuracy."""
    for method, settings in methods.items():
        for key in EPOCH_KEYS[method]:
            settings[key] = 1


# -- one run (in a child process) --------------------------------------------------------------------------
class Clock:
    """Wall and CPU seconds of a block; CPU covers every thread of this process and reaped child processes."""

    def __enter__(self) -> Clock:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._children = _children_cpu()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.children_cpu = _children_cpu() - self._children


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_splits(per_class: int, seed: int, test_size: int, evaluate_on: str = "test") -> tuple[Any, Any]:
    """The training subset and the scoring set.

    ``evaluate_on="validation"`` scores on images of the *train* split that the training subset does not use, so
    settings can be tuned without ever looking at the test set; the final numbers use ``"test"``.
    """
    import transferkit as tk

    train_full = tk.load_fashion_mnist("train")
    train = tk.per_class(train_full, per_class, seed=seed)
    if evaluate_on == "validation":
        # Same draw as tk.per_class (one permutation per class from default_rng(seed)), continued past ``per_class``.
        rng = np.random.default_rng(seed)
        per = max(1, test_size // len(train_full.classes))
        perms = [rng.permutation(np.flatnonzero(train_full.labels == c)) for c in range(len(train_full.classes))]
        used = np.sort(np.concatenate([p[:per_class] for p in perms]))
        if not np.array_equal(np.asarray(train.items), np.asarray(train_full.items)[used]):
            raise SystemExit("error: tk.per_class no longer draws as this script assumes; update load_splits")
        validation = train_full.subset(np.sort(np.concatenate([p[per_class:per_class + per] for p in perms])))
        return train, validation
    test_full = tk.load_fashion_mnist("test")
    test = tk.per_class(test_full, max(1, test_size // len(test_full.classes)), seed=TEST_SEED)
    return train, test


def run_transferkit(method: str, settings: dict[str, Any], train: Any, test: Any, image_size: int, seed: int,
                    workdir: Path) -> dict[str, Any]:
    import transferkit as tk

    common = {"seed": seed, "progress": False, "device": "cpu"}
    with Clock() as fit:
        if method == "feature-extraction":
            backbone = tk.create_backbone(BACKBONE)
            backbone.preprocessing = backbone.preprocessing.with_image_size(image_size)
            clf: Any = tk.FeatureExtractionClassifier(backbone, cache=str(workdir / "cache"), **common, **settings)
        elif method == "scratch":
            clf = tk.ScratchClassifier(BACKBONE, image_size=image_size, **common, **settings)
        else:
            clf = tk.FineTuneClassifier(BACKBONE, image_size=image_size, **common, **settings)
        clf.fit(train)
    with Clock() as predict:
        metrics = tk.evaluate(clf, test)
    out: dict[str, Any] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "fit": fit,
                           "predict": predict}
    if hasattr(clf, "history_"):
        out["history"] = [{k: row[k] for k in ("epoch", "stage", "loss", "train_accuracy", "seconds")}
                          for row in clf.history_]
        out["plan"] = clf.fit_info_["plan"]
    return out


def run_fastai(settings: dict[str, Any], train: Any, test: Any, image_size: int, seed: int) -> dict[str, Any]:
    """fastai's ``vision_learner`` on the packaged trunk, then ``learn.fine_tune``, fed from the same arrays."""
    import torch
    from fastai.vision.all import (
        Callback,
        CategoryBlock,
        DataBlock,
        ImageBlock,
        Normalize,
        PILImage,
        Resize,
        aug_transforms,
        set_seed,
        vision_learner,
    )
    from PIL import Image
    from sklearn.metrics import f1_score

    import transferkit as tk

    images = np.concatenate([train.items, test.items])
    labels = np.concatenate([train.labels, test.labels])
    n_train = len(train)
    if settings["augment"] not in ("aug_transforms()", "none"):
        raise SystemExit(f"error: fastai.augment must be 'aug_transforms()' or 'none'. Got {settings['augment']!r}.")

    # Unannotated on purpose: fastcore evaluates annotations to dispatch, and this module's are strings.
    def get_x(i):
        return PILImage(Image.fromarray(images[i]).convert("RGB"))

    def get_y(i):
        return int(labels[i])

    with Clock() as fit:
        set_seed(seed)
        backbone = tk.create_backbone(BACKBONE)  # pretrained, classifier removed; its mean/std normalise
        pre = backbone.preprocessing
        batch_tfms = [*(aug_transforms() if settings["augment"] != "none" else []),
                      Normalize.from_stats(list(pre.mean), list(pre.std))]
        # No validation set: our methods train without one, and per-epoch validation would cost fastai time.
        block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=get_x, get_y=get_y,
                          splitter=lambda items: (list(range(len(items))), []),
                          item_tfms=Resize(image_size), batch_tfms=batch_tfms)
        dls = block.dataloaders(list(range(n_train)), bs=settings["batch_size"],
                                num_workers=settings["num_workers"], device=torch.device("cpu"))
        trunk = backbone.trunk

        def arch(pretrained: bool = True) -> torch.nn.Module:
            # fastai cuts at the last pooling layer (timm's global_pool) and adds its own head
            return copy.deepcopy(trunk)

        losses: list[float] = []

        class EpochLoss(Callback):  # the Recorder keeps only the last fit, and get_preds resets it
            order = 60  # after the Recorder (50) has logged the epoch

            def after_epoch(self):
                losses.append(float(self.learn.recorder.log[1]))

        learn = vision_learner(dls, arch, normalize=False, n_out=len(train.classes), pretrained=True)
        with learn.no_bar(), learn.no_logging():
            learn.fine_tune(settings["epochs"], base_lr=settings["base_lr"], freeze_epochs=settings["freeze_epochs"],
                            lr_mult=settings["lr_mult"], cbs=[EpochLoss()])
    with Clock() as predict:
        test_dl = learn.dls.test_dl(list(range(n_train, len(images))), with_labels=True)
        with learn.no_bar():
            proba, _ = learn.get_preds(dl=test_dl)
        vocab = np.asarray(list(learn.dls.vocab), dtype=np.int64)
        predicted = vocab[proba.argmax(1).numpy()]
        truth = test.labels
        accuracy = float((predicted == truth).mean())
        macro_f1 = float(f1_score(truth, predicted, average="macro"))
    return {"accuracy": accuracy, "macro_f1": macro_f1, "fit": fit, "predict": predict,
            "history": [{"epoch": i + 1, "stage": "frozen" if i < settings["freeze_epochs"] else "unfrozen",
                         "loss": loss} for i, loss in enumerate(losses)],
            "param_groups": len(learn.opt.param_lists)}


def child(spec: dict[str, Any]) -> None:
    """Run one (method, per_class, seed) and write its record to ``spec['out']``."""
    import torch

    warnings.filterwarnings("ignore")
    load_before = os.getloadavg()
    train, test = load_splits(spec["per_class"], spec["seed"], spec["test_size"], spec.get("evaluate_on", "test"))
    workdir = Path(tempfile.mkdtemp(prefix="tk-bench-ft-"))
    try:
        if spec["method"] == "fastai":
            result = run_fastai(spec["settings"], train, test, spec["image_size"], spec["seed"])
        else:
            result = run_transferkit(spec["method"], spec["settings"], train, test, spec["image_size"], spec["seed"],
                                     workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    fit, predict = result.pop("fit"), result.pop("predict")
    record = {
        "train_images": len(train), "test_images": len(test), **result,
        "fit_wall_s": fit.wall, "fit_cpu_s": fit.cpu + fit.children_cpu,
        "predict_wall_s": predict.wall, "predict_cpu_s": predict.cpu + predict.children_cpu,
        "wall_s": fit.wall + predict.wall, "cpu_s": fit.cpu + fit.children_cpu + predict.cpu + predict.children_cpu,
        "children_cpu_s": fit.children_cpu + predict.children_cpu, "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_1m_before": load_before[0], "loadavg_1m_after": os.getloadavg()[0],
    }
    Path(spec["out"]).write_text(json.dumps(record))


# -- the benchmark (parent) --------------------------------------------------------------------------------
def run_one(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tk-bench-ft-") as tmp:
        out = Path(tmp) / "record.json"
        cmd = [sys.executable, __file__, "--child", json.dumps({**spec, "out": str(out)})]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return {"error": f"exit code {proc.returncode}", "stderr_tail": tail}
        record = json.loads(out.read_text())
        record["process_wall_s"] = time.perf_counter() - start  # with interpreter start, imports, data loading
        return record


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["per_class"], r["method"]) for r in runs}, key=lambda k: (k[0], METHODS.index(k[1])))
    for per_class, method in keys:
        ok = [r for r in runs if r["per_class"] == per_class and r["method"] == method and "error" not in r]
        failed = sum(1 for r in runs if r["per_class"] == per_class and r["method"] == method and "error" in r)
        row: dict[str, Any] = {"method": method, "per_class": per_class, "runs": len(ok), "failed": failed}
        for key in ("accuracy", "macro_f1", "fit_wall_s", "fit_cpu_s", "wall_s", "cpu_s"):
            if ok:
                row[f"{key}_mean"], row[f"{key}_std"] = mean_std([r[key] for r in ok])
        if ok:
            row["wall_s_max"] = max(r["wall_s"] for r in ok)
        rows.append(row)
    return rows


def goal_checks(summary: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, computed from the means (never asserted)."""
    by = {(row["method"], row["per_class"]): row for row in summary if row["runs"]}
    sizes = sorted({row["per_class"] for row in summary})
    goals: dict[str, Any] = {"note": "computed from means over seeds; std uses ddof=1; reported, never asserted"}
    if not sizes:
        return goals
    largest = sizes[-1]
    fine = [(m, by[m, largest]["accuracy_mean"]) for m in FINE_TUNE_METHODS if (m, largest) in by]
    base = [(m, by[m, largest]["accuracy_mean"]) for m in ("scratch", "feature-extraction") if (m, largest) in by]
    if fine and base:
        best_fine, best_base = max(fine, key=lambda t: t[1]), max(base, key=lambda t: t[1])
        margin = 100 * (best_fine[1] - best_base[1])
        goals["fine_tune_beats_baselines"] = {
            "per_class": largest, "target_points": MARGIN_POINTS,
            "best_fine_tune": {"method": best_fine[0], "accuracy_mean": best_fine[1]},
            "best_baseline": {"method": best_base[0], "accuracy_mean": best_base[1]},
            "margin_points": margin, "met": margin >= MARGIN_POINTS,
        }
    at_largest = [r for r in runs if r["per_class"] == largest and "error" not in r and r["method"] != "fastai"]
    if at_largest:
        worst = max(at_largest, key=lambda r: r["wall_s"])
        goals["run_within_budget"] = {
            "per_class": largest, "limit_s": RUN_BUDGET_S, "measure": "fit + predict wall seconds of one run",
            "max_wall_s": {m: max(r["wall_s"] for r in at_largest if r["method"] == m)
                           for m in dict.fromkeys(r["method"] for r in at_largest)},
            "slowest": {"method": worst["method"], "seed": worst["seed"], "wall_s": worst["wall_s"]},
            "met": worst["wall_s"] <= RUN_BUDGET_S,
        }
    versus = []
    for per_class in sizes:
        if ("fastai", per_class) not in by:
            continue
        fa = by["fastai", per_class]
        for method in FINE_TUNE_METHODS:
            if (method, per_class) not in by:
                continue
            ours = by[method, per_class]
            paired = {}
            for r in runs:
                if r["method"] == method and r["per_class"] == per_class and "error" not in r:
                    twin = next((f for f in runs if f["method"] == "fastai" and f["per_class"] == per_class
                                 and f["seed"] == r["seed"] and "error" not in f), None)
                    if twin is not None:
                        paired[str(r["seed"])] = 100 * (r["accuracy"] - twin["accuracy"])
            acc_diff = 100 * (ours["accuracy_mean"] - fa["accuracy_mean"])
            versus.append({
                "method": method, "per_class": per_class,
                "accuracy_diff_points": acc_diff, "accuracy_diff_points_by_seed": paired,
                "fit_wall_s": ours["fit_wall_s_mean"], "fastai_fit_wall_s": fa["fit_wall_s_mean"],
                "wall_s": ours["wall_s_mean"], "fastai_wall_s": fa["wall_s_mean"],
                "wall_ratio": ours["wall_s_mean"] / fa["wall_s_mean"],
                "cpu_ratio": ours["cpu_s_mean"] / fa["cpu_s_mean"],
                "met": acc_diff >= 0 and ours["wall_s_mean"] < fa["wall_s_mean"],
            })
    if versus:
        goals["vs_fastai"] = {"goal": "equal or better accuracy than fastai in less wall time (fit + predict)",
                              "comparisons": versus}
    return goals


def write_json(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")  # atomic: a reader never sees half a file
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    from transferkit.bundle import library_versions

    out = library_versions()
    for dist in ("fastai", "fastcore", "fasttransform", "fastprogress"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def print_summary(summary: list[dict[str, Any]], goals: dict[str, Any]) -> None:
    print(f"\n{'method':<20}{'per class':>10}{'runs':>6}{'accuracy':>18}{'macro-F1':>10}{'wall s':>16}{'cpu s':>10}")
    for row in summary:
        if not row["runs"]:
            print(f"{row['method']:<20}{row['per_class']:>10}{0:>6}   (all runs failed)")
            continue
        acc = f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}"
        wall = f"{row['wall_s_mean']:.1f} ± {row['wall_s_std']:.1f}"
        print(f"{row['method']:<20}{row['per_class']:>10}{row['runs']:>6}{acc:>18}{row['macro_f1_mean']:>10.3f}"
              f"{wall:>16}{row['cpu_s_mean']:>10.1f}")
    if "fine_tune_beats_baselines" in goals:
        g = goals["fine_tune_beats_baselines"]
        print(f"\nfine-tune vs max(scratch, feature extraction) at {g['per_class']}/class: "
              f"{g['best_fine_tune']['method']} {g['margin_points']:+.1f} points "
              f"(target +{g['target_points']:.0f}): {'met' if g['met'] else 'NOT met'}")
    if "run_within_budget" in goals:
        g = goals["run_within_budget"]
        print(f"slowest run at {g['per_class']}/class: {g['slowest']['method']} {g['slowest']['wall_s']:.0f} s "
              f"(limit {g['limit_s']:.0f} s): {'met' if g['met'] else 'NOT met'}")
    for c in goals.get("vs_fastai", {}).get("comparisons", []):
        print(f"{c['method']} vs fastai at {c['per_class']}/class: accuracy {c['accuracy_diff_points']:+.1f} points, "
              f"wall {c['wall_s']:.0f} s vs {c['fastai_wall_s']:.0f} s: {'met' if c['met'] else 'NOT met'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int_list, default=None, help="labels per class (default 10,30,100)")
    p.add_argument("--seeds", type=int_list, default=None, help="training-subset and model seeds (default 0,1,2)")
    p.add_argument("--test-size", type=int, default=None, help="held-out test images, balanced (default 2000)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--image-size", type=int, default=None, help="square input size for every method (default 112)")
    p.add_argument("--epoch-scaling", choices=("steps", "none"), default=None,
                   help="steps: scale epochs by reference/per_class so every size gets equal steps "
                        "(default; none with --quick)")
    p.add_argument("--reference-per-class", type=int, default=100, help="size at which the epoch counts hold")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="override a method setting, e.g. two-stage.lr_backbone=3e-4 (repeatable)")
    p.add_argument("--evaluate-on", choices=("test", "validation"), default="test",
                   help="validation: score on unused train-split images (for tuning settings without the test set)")
    p.add_argument("--run-timeout", type=float, default=1800.0, help="seconds before a run is recorded as failed")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 epoch per stage: checks it runs")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/finetune-<date>[-quick].json)")
    p.add_argument("--resume", action="store_true",
                   help="keep the successful runs already in --out and run only the missing ones (same settings)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(json.loads(args.child))
        return

    q = args.quick
    per_class = args.per_class or ([5] if q else [10, 30, 100])  # fastai drops the last partial batch
    seeds = args.seeds or ([0] if q else [0, 1, 2])
    test_size = args.test_size or (100 if q else 2000)
    image_size = args.image_size or (64 if q else 112)
    args.epoch_scaling = args.epoch_scaling or ("none" if q else "steps")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    settings = copy.deepcopy(DEFAULTS)
    if q:
        quick_settings(settings)
    parse_overrides(args.set, settings)
    if "fastai" in methods and importlib.util.find_spec("fastai") is None:
        raise SystemExit("error: the fastai method needs fastai; install it as bench/README.md says, "
                         "or leave it out with --methods.")

    from run import machine  # bench/run.py, next to this file

    out = Path(args.out or f"bench/results/finetune-{dt.date.today().isoformat()}{'-quick' if q else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "finetune", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv], "quick": q, "machine": machine(), "versions": versions(),
        "data": {"dataset": "fashion-mnist (Debian IDX files)", "train": "train split, tk.per_class(train, n, seed)",
                 "test": {"split": "test", "images_requested": test_size, "subset_seed": TEST_SEED,
                          "how": "tk.per_class(test, test_size // 10, seed=12345), the same for every run"},
                 "per_class": per_class, "seeds": seeds},
        "evaluated_on": args.evaluate_on, "backbone": BACKBONE, "device": "cpu", "image_size": image_size,
        "epoch_scaling": {"mode": args.epoch_scaling, "reference_per_class": args.reference_per_class,
                          "factors": {str(n): epochs_scale(n, args.reference_per_class, args.epoch_scaling)
                                      for n in per_class}},
        "methods": {m: settings[m] for m in methods},
        "timing": "wall: time.perf_counter; cpu: time.process_time (all threads) + getrusage(RUSAGE_CHILDREN); "
                  "fit includes loading the pretrained backbone, predict includes scoring the test set; each run "
                  "in a fresh process, interpreter start and data loading excluded (process_wall_s includes them)",
        "runs": [],
    }
    plan = [(n, seed, m) for n in per_class for seed in seeds for m in methods]
    done: dict[tuple[int, int, str], dict[str, Any]] = {}
    if args.resume and out.is_file():
        previous = json.loads(out.read_text())
        done = {(r["per_class"], r["seed"], r["method"]): r for r in previous["runs"] if "error" not in r}
        result["resumed"] = {"from": previous["date"], "runs_kept": len(done)}
    started = time.perf_counter()
    for i, (n, seed, method) in enumerate(plan, 1):
        scaled = settings_for(method, settings[method], epochs_scale(n, args.reference_per_class, args.epoch_scaling))
        kept = done.get((n, seed, method))
        if kept is not None:
            if kept["settings"] != scaled:
                raise SystemExit(f"error: --resume: {method} per_class={n} seed={seed} in {out} ran with other "
                                 "settings; use a new --out or the same options.")
            result["runs"].append(kept)
            print(f"[{i}/{len(plan)}] {method:<18} per_class={n:<4} seed={seed}  kept from {out.name}", flush=True)
            continue
        spec = {"method": method, "per_class": n, "seed": seed, "test_size": test_size, "image_size": image_size,
                "settings": scaled, "evaluate_on": args.evaluate_on}
        record = {"method": method, "per_class": n, "seed": seed, "settings": scaled,
                  **run_one(spec, args.run_timeout)}
        result["runs"].append(record)
        result["summary"] = summarise(result["runs"])
        result["goals"] = goal_checks(result["summary"], result["runs"])
        write_json(out, result)
        elapsed = time.perf_counter() - started
        if "error" in record:
            status = f"FAILED: {record['error']}" + (f"\n{record['stderr_tail']}" if record.get("stderr_tail") else "")
        else:
            status = (f"accuracy {record['accuracy']:.3f}  macro-F1 {record['macro_f1']:.3f}  "
                      f"fit {record['fit_wall_s']:.1f} s wall / {record['fit_cpu_s']:.1f} s cpu  "
                      f"predict {record['predict_wall_s']:.1f} s")
        print(f"[{i}/{len(plan)} {elapsed / 60:.1f} min] {method:<18} per_class={n:<4} seed={seed}  {status}",
              flush=True)
    print_summary(result["summary"], result["goals"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
