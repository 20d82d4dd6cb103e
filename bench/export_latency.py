"""Batch-1 CPU latency of an exported model: PyTorch vs ONNX float32 vs ONNX int8, and what int8 costs in accuracy
(a benchmark, not a test).

Issue 19's goal: int8 at least 1.5x faster than float32 at batch 1 on a CPU, with top-1 agreement >= 99 % and an
accuracy drop <= 1 point on a real test set; float32 within 1e-4 of the bundle's probabilities.

Tasks (``--tasks``):

- ``image``: a feature-extraction bundle of ``packaged:efficientnet_lite0`` (224 px) with the default tuned logistic
  head, fitted on ``--train-per-class`` Fashion-MNIST training images per class (seed 0). int8 is static QDQ,
  calibrated and checked on ``2 x --calibration`` other training images (``export_onnx`` calibrates on one half
  and checks on the other); scored on ``--test-per-class`` x 10 test images (seed 12345, as bench/finetune.py).
- ``text``: the same with ``packaged:all-minilm-l6-v2`` on bench/text.py's Debian package descriptions (8 sections;
  needs apt's Translation-en lists, see that script); int8 is dynamic (no calibration), checked on
  ``--calibration`` pool texts outside the training set; scored on bench/text.py's fixed test set.

Latency: one preprocessed input (an image of the test set; the median-length test text, padded to nothing), the
network alone — the traced graph's torch module under ``torch.inference_mode`` against onnxruntime sessions of the
two files — with 1 and 2 threads (``--threads``). The machine is shared with other jobs: every repeat runs the three
back to back in a shuffled order (interleaved), so load hits them alike; the figures are medians over
``--repeats`` calls after ``--warmup`` calls, and the ratios are taken between the medians of one run.

Usage: ``python bench/export_latency.py [--quick] [--tasks image,text] [--out PATH]``; writes the JSON and a PNG
beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402
from transferkit.export import OnnxClassifier, export_onnx  # noqa: E402
from transferkit.export.graph import build_graph  # noqa: E402


def image_task(args: argparse.Namespace) -> tuple[tk.ImageDataset, tk.ImageDataset, tk.ImageDataset, str]:
    pool = tk.load_fashion_mnist("train")
    rng = np.random.default_rng(0)  # per class: the first images of a seeded shuffle train, the next calibrate
    train_idx: list[int] = []
    calibration_idx: list[int] = []
    for c in range(len(pool.classes)):
        members = rng.permutation(np.flatnonzero(pool.labels == c))
        train_idx += members[:args.train_per_class].tolist()
        calibration_idx += members[args.train_per_class:args.train_per_class + 2 * args.calibration // 10].tolist()
    train, calibration = pool.subset(sorted(train_idx)), pool.subset(sorted(calibration_idx))
    test = tk.per_class(tk.load_fashion_mnist("test"), args.test_per_class, seed=12345)
    return train, calibration, test, "packaged:efficientnet_lite0"


def text_task(args: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    from text import build_dataset, split

    ds, _ = build_dataset()
    pool, test = split(ds, args.test_per_class)
    train = tk.per_class(pool, args.train_per_class, seed=0)
    used = set(train.items)
    rest = pool.subset([i for i, t in enumerate(pool.items) if t not in used])
    calibration = tk.per_class(rest, max(1, args.calibration // len(ds.classes)), seed=1)
    return train, calibration, test, "packaged:all-minilm-l6-v2"


def accuracy(model: Any, test: Any) -> tuple[float, np.ndarray]:
    proba, index, _ = model.predict_proba_details(test)
    truth = np.asarray(test.classes)[test.labels[index]]
    return float(np.mean(np.asarray(model.classes_).astype(str)[proba.argmax(1)] == truth)), proba


def one_input(model: Any, test: Any) -> dict[str, torch.Tensor]:
    """The graph inputs of one test item: the first image, or the median-length text."""
    if model.modality_ == "image":
        from transferkit.data.loader import backbone_batches

        batch = next(iter(backbone_batches(model.backbone_, test.subset([0]), batch_size=1)))
        return {"pixels": batch["inputs"]}
    lengths = [len(t.split()) for t in test.items]
    text = test.items[int(np.argsort(lengths)[len(lengths) // 2])]
    return {k: v.to(torch.int64) for k, v in model.backbone_.encoder([text]).items()}


def latency(graph: torch.nn.Module, files: dict[str, Path], inputs: dict[str, torch.Tensor], threads: int,
            repeats: int, warmup: int) -> dict[str, Any]:
    import onnxruntime as ort

    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    sessions = {name: ort.InferenceSession(str(f), options, providers=["CPUExecutionProvider"])
                for name, f in files.items()}
    feeds = {name: {i.name: inputs[i.name].numpy() for i in s.get_inputs()} for name, s in sessions.items()}
    args = tuple(inputs.values())

    def call(name: str) -> float:
        start = time.perf_counter()
        if name == "pytorch":
            with torch.inference_mode():
                graph(*args)
        else:
            sessions[name].run(None, feeds[name])
        return time.perf_counter() - start

    names = ["pytorch", *sessions]
    for _ in range(warmup):
        for name in names:
            call(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            times[name].append(call(name))
    med = {n: float(np.median(v)) * 1000 for n, v in times.items()}
    return {"threads": threads, "median_ms": {n: round(v, 3) for n, v in med.items()},
            "p25_ms": {n: round(float(np.percentile(v, 25)) * 1000, 3) for n, v in times.items()},
            "p75_ms": {n: round(float(np.percentile(v, 75)) * 1000, 3) for n, v in times.items()},
            "speedup_int8_vs_fp32": round(med["fp32"] / med["int8"], 3),
            "speedup_int8_vs_pytorch": round(med["pytorch"] / med["int8"], 3),
            "speedup_fp32_vs_pytorch": round(med["pytorch"] / med["fp32"], 3)}


def run_task(task: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    train, calibration, test, spec = (image_task if task == "image" else text_task)(args)
    start = time.perf_counter()
    clf = tk.FeatureExtractionClassifier(spec, progress=False, cache=str(work / "cache")).fit(train)
    bundle = clf.save(work / task)
    fit_s = time.perf_counter() - start
    files = {"fp32": work / f"{task}.fp32.onnx", "int8": work / f"{task}.int8.onnx"}
    reports = {"fp32": export_onnx(bundle, files["fp32"], calibration=calibration),
               "int8": export_onnx(bundle, files["int8"], quantize="int8", calibration=calibration,
                                   calibration_size=args.calibration, force=True,
                                   qat_steps=args.qat_steps if task == "image" else 0)}
    model = tk.load_bundle(bundle, progress=False, cache=False, device="cpu")
    scores: dict[str, Any] = {}
    acc_bundle, p_bundle = accuracy(model, test)
    for name, f in files.items():
        acc, proba = accuracy(OnnxClassifier(f, progress=False), test)
        scores[name] = {"accuracy": round(acc, 4), "max_abs_diff": float(np.abs(proba - p_bundle).max()),
                        "agreement": round(float(np.mean(proba.argmax(1) == p_bundle.argmax(1))), 4),
                        "size_mb": round(f.stat().st_size / 1e6, 2), "export_s": reports[name]["seconds"]}
    graph, _ = build_graph(model, str(bundle))
    inputs = one_input(model, test)
    timing = [latency(graph, files, inputs, t, args.repeats, args.warmup) for t in args.threads]
    return {"task": task, "backbone": spec, "train": len(train), "calibration_data": len(calibration),
            "test": len(test), "fit_s": round(fit_s, 1), "head": clf.fit_info_["head"],
            "input_shape": {k: list(v.shape) for k, v in inputs.items()},
            "accuracy_bundle": round(acc_bundle, 4), "onnx": scores,
            "export_parity": {n: r["parity"] for n, r in reports.items()},
            "quantization": reports["int8"]["quantization"], "int8_warnings": reports["int8"]["warnings"],
            "accuracy_drop_int8_points": round(100 * (acc_bundle - scores["int8"]["accuracy"]), 2),
            "latency": timing}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = result["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        names = ["pytorch", "fp32", "int8"]
        width = 0.8 / len(task["latency"])
        for k, row in enumerate(task["latency"]):
            med = [row["median_ms"][n] for n in names]
            lo = [m - row["p25_ms"][n] for m, n in zip(med, names, strict=True)]
            hi = [row["p75_ms"][n] - m for m, n in zip(med, names, strict=True)]
            xs = np.arange(3) + k * width
            ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=f"{row['threads']} thread(s)")
            for x, m in zip(xs, med, strict=True):
                ax.text(x, m, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(np.arange(3) + width * (len(task["latency"]) - 1) / 2,
                      ["PyTorch", "ONNX fp32", "ONNX int8"])
        ax.set_yscale("log")  # 2-thread PyTorch on a busy machine is an order of magnitude off the rest
        ax.set_ylabel("batch-1 latency, median ms (p25-p75, log)")
        drop = task["accuracy_drop_int8_points"]
        ax.set_title(f"{task['backbone'].split(':')[1]}: int8 {task['latency'][0]['speedup_int8_vs_fp32']:.2f}x "
                     f"fp32\nint8 agreement {100 * task['onnx']['int8']['agreement']:.1f}%, accuracy "
                     f"{-drop:+.1f} points", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="image,text")
    parser.add_argument("--train-per-class", type=int, default=30)
    parser.add_argument("--calibration", type=int, default=200, help="items int8 calibrates on (image task)")
    parser.add_argument("--test-per-class", type=int, default=None, help="default 100 (image), 150 (text)")
    parser.add_argument("--qat-steps", type=int, default=0,
                        help="image int8: quantization-aware fine-tuning steps first (export --qat-steps)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="10/class, 40 calibration items, 20 test per class")
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot-only", default=None, metavar="JSON", help="redraw the PNG of a results file")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(Path(args.plot_only).read_text()), Path(args.plot_only).with_suffix(".png"))
        return
    if args.quick:
        args.train_per_class, args.calibration, args.repeats, args.warmup = 10, 40, 20, 3
    args.threads = [int(t) for t in args.threads.split(",")]
    out = Path(args.out or f"bench/results/export-latency-{dt.date.today()}{'-quick' if args.quick else ''}.json")
    result: dict[str, Any] = {"benchmark": "export_latency", "machine": machine(), "versions": library_versions(),
                              "load_before": os.getloadavg(), "settings": {k: v for k, v in vars(args).items()
                                                                           if k != "out"}, "tasks": []}
    import onnx
    import onnxruntime

    result["versions"].update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    with tempfile.TemporaryDirectory(prefix="tk-export-bench-") as tmp:
        for task in args.tasks.split(","):
            defaults = {"image": 100, "text": 150}
            task_args = argparse.Namespace(**{**vars(args), "test_per_class": args.test_per_class or
                                              (20 if args.quick else defaults[task])})
            result["tasks"].append(run_task(task, task_args, Path(tmp)))
            row = result["tasks"][-1]
            print(f"{task}: accuracy bundle {row['accuracy_bundle']:.4f} fp32 {row['onnx']['fp32']['accuracy']:.4f} "
                  f"int8 {row['onnx']['int8']['accuracy']:.4f} (agreement {row['onnx']['int8']['agreement']:.4f}); "
                  + "; ".join(f"{r['threads']} thr: {r['median_ms']} int8/fp32 {r['speedup_int8_vs_fp32']}x"
                              for r in row["latency"]), flush=True)
            result["load_after"] = os.getloadavg()
            write_json(out, result)
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
