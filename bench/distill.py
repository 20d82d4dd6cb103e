"""Distillation benchmark (not a test): does `transferkit distill` make a small student that keeps the teacher's
accuracy with a fraction of its weights, and beat the same student trained on the labels alone?

Images (issue 19's goal: the student keeps >= 97 % of the teacher's accuracy with <= 1/4 of its parameters and
beats the labels-only student): Fashion-MNIST (Debian's IDX files). The teacher is a feature-extraction bundle of
``packaged:efficientnet_lite0`` at ``--image-size`` (64 px; the images are 28 px) with the tuned logistic head on
``--per-class`` labelled training images per class; the transfer set adds ``--unlabeled`` other training images
whose labels are never read. The student is a small CNN at the images' own 28 px (``--student``, default
``small-cnn``: ``small-cnn:1x28x28``), trained by :func:`transferkit.distill` on the teacher's soft targets
(``--temperature``, ``--alpha``) for ``--epochs``; the labels-only student is the same network with the same number
of optimizer steps on the labelled images alone (what the job reports beside it). All three are scored on
``tk.per_class(test, test_size / 10, seed=12345)``. Latency is ``predict_proba`` of one image on the CPU, median
of 15 runs, preprocessing included; the machine is shared (the 1-minute load average is recorded before and after),
so timings are inflated and indicative only; accuracies are not.

Text (``--text``): bench/text.py's Debian package descriptions (8 sections), a MiniLM (``packaged:all-minilm-l6-v2``)
feature-extraction teacher on ``--text-per-class`` labelled descriptions, the rest of the pool unlabelled, and a
GloVe-mean student (``packaged:glove-6b-50d``: its vectors fine-tuned with a linear head on the soft targets;
``--restrict-vocabulary``: its table cut to the words of its labelled and unlabelled texts).

Usage:
    python bench/distill.py [--per-class 30] [--unlabeled 4000] [--test-size 1000] [--image-size 64]
        [--student small-cnn] [--epochs 10] [--temperature 4] [--alpha 0.7] [--seed 0 | --seeds 0,1,2] [--text]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from finetune import int_list, versions, write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402

TEACHER = "packaged:efficientnet_lite0"
TEST_SEED = 12345


def image_row(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    train = tk.load_fashion_mnist("train")
    test = tk.per_class(tk.load_fashion_mnist("test"), args.test_size // 10, seed=TEST_SEED)
    work.mkdir(parents=True, exist_ok=True)
    labelled = tk.per_class(train, args.per_class, seed=args.seed)
    rest = np.setdiff1d(np.arange(len(train)), _rows_of(train, labelled))
    unlabeled = train.subset(np.sort(np.random.default_rng(args.seed).permutation(rest)[:args.unlabeled]))
    backbone = tk.create_backbone(TEACHER)
    backbone.preprocessing = backbone.preprocessing.with_image_size(args.image_size)
    start = time.perf_counter()
    if args.teacher_bundle:  # a teacher this script saved before for the same --per-class and --seed
        layers, described = {}, f"bundle {args.teacher_bundle} ({args.teacher_strategy} teacher saved by this script)"
        shutil.copytree(args.teacher_bundle, work / "teacher")
    elif args.teacher_strategy == "fine-tune":
        layers, settings = {}, fine_tune_settings(args.per_class)
        teacher: Any = tk.FineTuneClassifier(backbone, seed=args.seed, progress=False, **settings).fit(labelled)
        described = f"{TEACHER} two-stage fine-tuning at {args.image_size} px ({settings})"
    else:
        layers = teacher_layers(backbone, labelled, args)
        layer = max(layers, key=lambda k: layers[k])
        teacher = tk.FeatureExtractionClassifier(backbone, layer=layer, seed=args.seed, progress=False).fit(labelled)
        described = f"{TEACHER} feature extraction at {args.image_size} px, {layer}"
    if not args.teacher_bundle:
        tk.save_bundle(teacher, work / "teacher")
    teacher_seconds = time.perf_counter() - start
    reports = []
    for alpha in args.alphas or [args.alpha]:
        cfg = tk.DistillConfig(teacher=str(work / "teacher"), data=labelled, unlabeled=unlabeled, test=test,
                               out=str(work / f"student-{alpha}"), student=args.student,
                               temperature=args.temperature, alpha=alpha, epochs=args.epochs, seed=args.seed,
                               threads=args.threads, progress=False)
        reports.append(_summary(tk.distill(cfg)))
    # the verdict's tuned from-scratch small CNN (random crops, label smoothing, 200 steps) on the labels alone: a
    # reference beside the job's labels-only student, which has the distilled student's recipe and steps
    start = time.perf_counter()
    reference = tk.SmallCNNClassifier(seed=args.seed, progress=False).fit(labelled)
    small_cnn = {"accuracy": round(float(reference.score(test)), 4), "seconds": round(time.perf_counter() - start, 1),
                 "parameters": reference.fit_info_["parameters"]}
    row = {"task": "fashion-mnist", "seed": args.seed, "per_class": args.per_class, "teacher": described,
           "teacher_layer_cv_accuracy": layers, "teacher_fit_seconds": round(teacher_seconds, 1), **reports[0],
           "small_cnn_classifier_labels_only": small_cnn}
    if len(reports) > 1:  # the same teacher, transfer set and labels-only budget at each alpha
        row["by_alpha"] = reports
    return row


def fine_tune_settings(per_class: int) -> dict[str, Any]:
    """bench/finetune.py's tuned two-stage settings (at 100/class), epochs scaled to the same optimizer steps."""
    from finetune import DEFAULTS

    settings = dict(DEFAULTS["two-stage"])
    scale = max(1, round(100 / per_class))
    settings["head_epochs"] *= scale
    settings["epochs"] *= scale
    return settings


def teacher_layers(backbone: Any, labelled: tk.ImageDataset, args: argparse.Namespace) -> dict[str, float]:
    """5-fold cross-validated accuracy of a logistic regression on each candidate layer's features of the labelled
    images only (no test image): the teacher reads the best layer. Far from ImageNet, a middle block can beat the
    pre-logits features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = {}
    for layer in args.teacher_layers.split(","):
        x = tk.extract_features(backbone, labelled, layer=layer, progress=False).features
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        scores[layer] = round(float(cross_val_score(probe, x, labelled.labels, cv=5).mean()), 4)
    return scores


def seed_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sd (ddof 1) over seeds of each model's accuracy, and of the paired per-seed differences (the same
    labelled draw, transfer set and test for the three models of a seed)."""
    def stats(values: list[float]) -> dict[str, Any]:
        v = np.asarray(values, dtype=float)
        return {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
                "min": round(float(v.min()), 4), "max": round(float(v.max()), 4), "values": [round(float(x), 4) for x in v]}

    acc = {m: np.array([r["models"][m]["accuracy"] for r in rows]) for m in ("teacher", "student", "labels_only")}
    return {"seeds": [r["seed"] for r in rows], **{f"{m}_accuracy": stats(list(a)) for m, a in acc.items()},
            "small_cnn_classifier_labels_only_accuracy": stats(
                [r["small_cnn_classifier_labels_only"]["accuracy"] for r in rows]),
            "student_minus_labels_only": stats(list(acc["student"] - acc["labels_only"])),
            "student_minus_teacher": stats(list(acc["student"] - acc["teacher"])),
            "kept_of_teacher": stats([r["kept_of_teacher"] for r in rows]),
            "goal_met_seeds": sum(r["goal_met"] for r in rows)}


def _rows_of(train: tk.ImageDataset, subset: tk.ImageDataset) -> np.ndarray:
    """Which rows of ``train`` ``subset`` holds (per_class keeps arrays, so match by content)."""
    keys = {train.items[i].tobytes(): i for i in range(len(train))}
    return np.array([keys[a.tobytes()] for a in subset.items])


def text_row(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from text import build_dataset  # bench/text.py: Debian's apt lists, 8 sections

    ds, info = build_dataset()
    order = np.random.default_rng(args.seed).permutation(len(ds))
    ds = ds.subset(order)
    assert ds.labels is not None
    test_rows = np.concatenate([np.flatnonzero(ds.labels == c)[:100] for c in range(len(ds.classes))])
    rest = np.setdiff1d(np.arange(len(ds)), test_rows)
    lab_rows = np.concatenate([rest[ds.labels[rest] == c][:args.text_per_class] for c in range(len(ds.classes))])
    unl_rows = np.setdiff1d(rest, lab_rows)[:args.text_unlabeled]
    start = time.perf_counter()
    teacher = tk.FeatureExtractionClassifier("packaged:all-minilm-l6-v2", progress=False).fit(ds.subset(lab_rows))
    tk.save_bundle(teacher, work / "text-teacher")
    teacher_seconds = time.perf_counter() - start
    reports = []
    for alpha in args.alphas or [args.alpha]:
        cfg = tk.DistillConfig(teacher=str(work / "text-teacher"), data=ds.subset(lab_rows),
                               unlabeled=ds.subset(unl_rows), test=ds.subset(test_rows),
                               out=str(work / f"text-student-{alpha}"), student="packaged:glove-6b-50d",
                               temperature=args.temperature, alpha=alpha, epochs=args.text_epochs, lr=1e-2,
                               seed=args.seed, threads=args.threads, restrict_vocabulary=args.restrict_vocabulary,
                               progress=False)
        reports.append({**_summary(tk.distill(cfg)), "restrict_vocabulary": args.restrict_vocabulary})
    row = {"task": "debian-sections", "seed": args.seed, "teacher": "packaged:all-minilm-l6-v2 feature extraction",
           "teacher_fit_seconds": round(teacher_seconds, 1), "data": info, **reports[0]}
    if len(reports) > 1:
        row["by_alpha"] = reports
    return row


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("student", "temperature", "alpha", "labelled_items", "unlabelled_items", "test_items", "models",
            "kept_of_teacher", "gain_over_labels_only", "parameter_ratio", "warnings", "seconds")
    row = {k: report[k] for k in keep}
    row["goal_met"] = bool(report["kept_of_teacher"] >= 0.97 and report["parameter_ratio"] <= 0.25
                           and report["gain_over_labels_only"] > 0)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--unlabeled", type=int, default=4000)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--teacher-layers", default="blocks.4,blocks.6,pre_logits",
                   help="candidate layers of the teacher, chosen by 5-fold CV on the labelled images")
    p.add_argument("--teacher-strategy", choices=("feature-extraction", "fine-tune"), default="feature-extraction",
                   help="fine-tune: bench/finetune.py's two-stage recipe at --image-size instead of frozen features")
    p.add_argument("--teacher-bundle", default=None,
                   help="reuse a teacher bundle this script saved for the same --per-class and --seed")
    p.add_argument("--student", default="small-cnn")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--alphas", type=lambda t: [float(v) for v in t.split(",")], default=None,
                   help="comma-separated alphas, each distilled from the same teacher (rows' `by_alpha`)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int_list, default=None,
                   help="comma-separated seeds of the image row (labelled draw, transfer set, training); a summary "
                        "of mean ± sd and paired differences follows the rows")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fastest on the shared 2 cores)")
    p.add_argument("--no-images", action="store_true")
    p.add_argument("--text", action="store_true", help="also the text row (MiniLM teacher, GloVe student)")
    p.add_argument("--text-per-class", type=int, default=20)
    p.add_argument("--text-unlabeled", type=int, default=3000)
    p.add_argument("--text-epochs", type=int, default=5)
    p.add_argument("--restrict-vocabulary", action="store_true",
                   help="the text student keeps only its training texts' words (DistillConfig.restrict_vocabulary)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)  # the teacher's fit too
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = None
        if not args.no_images:
            for seed in args.seeds or [args.seed]:
                rows.append(image_row(argparse.Namespace(**{**vars(args), "seed": seed}), Path(tmp) / f"seed{seed}"))
                print(rows[-1], flush=True)
            if len(rows) > 1:
                summary = seed_summary(rows)
                print(summary, flush=True)
        if args.text:
            rows.append(text_row(args, Path(tmp)))
            print(rows[-1], flush=True)
    date = dt.date.today().isoformat()
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"distill-{date}.json"
    result = {"benchmark": "distill", "date": date, "machine": machine(), "versions": versions(),
              "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "goal": "student accuracy >= 97% of the teacher's, <= 1/4 of its parameters, beats labels-only",
              "rows": rows, **({"seed_summary": summary} if summary else {}), "wall_seconds": round(time.perf_counter() - start, 1)}
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
