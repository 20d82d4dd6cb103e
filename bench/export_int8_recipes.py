"""Which static int8 recipe keeps EfficientNet-Lite0's decisions: layer groups kept float from the input side, and
the calibration method (a benchmark, not a test).

``export --quantize int8`` keeps the backbone's first layer groups float, one more per try, until int8 agrees with
float32 on the calibration items (:mod:`transferkit.export.quantize`). This measures what each choice gives on
*validation* images (Fashion-MNIST training images used neither to fit the bundle nor to calibrate; never the test
set): top-1 agreement with the float graph, accuracy, and batch-1 latency on one thread (interleaved with the float
graph, medians), for 0-4 float groups with MinMax ranges, and 2 float groups with Percentile (99.999) ranges. The
ranges of each method are measured once and reused by its recipes (as ``export`` does), so ``quantize_s`` of the
first recipe of a method includes its calibration and the others' do not.

Which parts of the network carry the int8 error (one part int8 at a time, per-tensor SQNR against the float graph)
was explored on the same bundles in ``results/export-int8-sensitivity-2026-12-04.json`` (bench/README.md).

Usage: ``python bench/export_int8_recipes.py [--validation 1000] [--out PATH]``; JSON and PNG in bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402
from transferkit.export import OnnxClassifier, export_onnx  # noqa: E402
from transferkit.export.quantize import HEAD_PREFIX, node_prefixes  # noqa: E402
from transferkit.export.writer import _split  # noqa: E402


class Feeds:
    """onnxruntime's CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def sets(train_per_class: int, calibration: int, validation: int) -> tuple[Any, Any, Any]:
    pool = tk.load_fashion_mnist("train")
    rng = np.random.default_rng(0)  # as export_latency.py: the same training and calibration images
    parts: list[list[int]] = [[], [], []]
    sizes = (train_per_class, 2 * calibration // 10, validation // 10)
    for c in range(len(pool.classes)):
        members = rng.permutation(np.flatnonzero(pool.labels == c))
        start = 0
        for part, size in zip(parts, sizes, strict=True):
            part += members[start:start + size].tolist()
            start += size
    return tuple(pool.subset(sorted(p)) for p in parts)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=30)
    parser.add_argument("--calibration", type=int, default=200)
    parser.add_argument("--validation", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--out", default=f"bench/results/export-int8-recipes-{dt.date.today()}.json")
    args = parser.parse_args()
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger().setLevel(logging.ERROR)
    train, calib_data, validation = sets(args.train_per_class, args.calibration, args.validation)
    out = Path(args.out)
    result: dict[str, Any] = {"benchmark": "export_int8_recipes", "machine": machine(), "versions": library_versions(),
                              "settings": vars(args), "load_before": os.getloadavg(), "recipes": []}
    with tempfile.TemporaryDirectory(prefix="tk-int8-recipes-") as tmp:
        work = Path(tmp)
        clf = tk.FeatureExtractionClassifier("packaged:efficientnet_lite0", progress=False,
                                             cache=str(work / "cache")).fit(train)
        bundle = clf.save(work / "bundle")
        fp32 = work / "fp32.onnx"
        export_onnx(bundle, fp32, calibration=validation.subset(range(20)))
        runner = OnnxClassifier(fp32, progress=False)
        # the calibration half export_onnx would use (at most --calibration images), preprocessed as it does
        calibrate_on, _ = _split(calib_data, True, args.calibration, 500, seed=0)
        pixels = np.concatenate([b["inputs"].numpy() for b in runner._batches(calibrate_on)])
        feeds = [{"pixels": pixels[i:i + 10]} for i in range(0, len(pixels) - 9, 10)]  # Percentile stacks batches
        val_pixels = np.concatenate([b["inputs"].numpy() for b in runner._batches(validation)])
        truth = np.asarray(validation.classes)[validation.labels]
        pre = work / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        nodes = [n.name for n in onnx.load(str(pre)).graph.node]
        groups = clf.backbone_._group_names
        session = ort.InferenceSession(str(pre), providers=["CPUExecutionProvider"])
        ref = np.concatenate([session.run(None, {"pixels": val_pixels[i:i + 50]})[0]
                              for i in range(0, len(val_pixels), 50)])
        classes = np.asarray(runner.classes_)
        recipes = [(k, "MinMax") for k in range(5)] + [(2, "Percentile")]
        files = {"fp32": pre}
        for k, method in recipes:
            prefixes = tuple(node_prefixes(m) for _, modules in groups[:k] for m in modules)
            excluded = [n for n in nodes if n.startswith(HEAD_PREFIX) or (prefixes and n.startswith(prefixes))]
            name = f"{k}-{method}"
            path = work / f"{name}.onnx"
            start = time.perf_counter()
            extra = {"CalibPercentile": 99.999} if method == "Percentile" else {}
            quantize_static(str(pre), str(path), Feeds(feeds),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method),
                            nodes_to_exclude=excluded, extra_options=extra,
                            calibration_cache_path=str(work / f"ranges-{method}.json"))  # measured once per method
            seconds = time.perf_counter() - start
            s8 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            p8 = np.concatenate([s8.run(None, {"pixels": val_pixels[i:i + 50]})[0]
                                 for i in range(0, len(val_pixels), 50)])
            result["recipes"].append({
                "recipe": name, "float_groups": [g for g, _ in groups[:k]], "calibration": method,
                "float_nodes": len(excluded), "quantize_s": round(seconds, 1),
                "agreement": round(float(np.mean(p8.argmax(1) == ref.argmax(1))), 4),
                "accuracy_int8": round(float(np.mean(classes[p8.argmax(1)] == truth)), 4),
                "accuracy_fp32": round(float(np.mean(classes[ref.argmax(1)] == truth)), 4)})
            files[name] = path
            print(result["recipes"][-1], flush=True)
            write_json(out, result)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        sessions = {n: ort.InferenceSession(str(f), options, providers=["CPUExecutionProvider"])
                    for n, f in files.items()}
        x = {"pixels": val_pixels[:1]}
        times: dict[str, list[float]] = {n: [] for n in sessions}
        names = list(sessions)
        rng = random.Random(0)
        for r in range(args.repeats + 5):
            rng.shuffle(names)
            for n in names:
                start = time.perf_counter()
                sessions[n].run(None, x)
                if r >= 5:
                    times[n].append(time.perf_counter() - start)
        fp32_ms = float(np.median(times["fp32"])) * 1000
        result["fp32_ms"] = round(fp32_ms, 3)
        for row in result["recipes"]:
            row["median_ms"] = round(float(np.median(times[row["recipe"]])) * 1000, 3)
            row["speedup_vs_fp32"] = round(fp32_ms / row["median_ms"], 3)
    result["load_after"] = os.getloadavg()
    write_json(out, result)
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out}")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for row in result["recipes"]:
        ax.scatter(row["speedup_vs_fp32"], 100 * row["agreement"],
                   marker="o" if row["calibration"] == "MinMax" else "s")
        ax.annotate(row["recipe"], (row["speedup_vs_fp32"], 100 * row["agreement"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 3))
    ax.axhline(99, color="grey", lw=0.8, ls="--")
    ax.axvline(1.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("batch-1 speed-up over ONNX float32 (1 thread, median)")
    ax.set_ylabel("top-1 agreement with float32, % (validation)")
    ax.set_title("EfficientNet-Lite0 int8: float groups-calibration", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
