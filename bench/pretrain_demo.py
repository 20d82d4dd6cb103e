"""Your own source model, measured (not a test): pretrain on Fashion-MNIST classes 0-4 (plenty of labels), then
transfer to classes 5-9 with few labels, against training from scratch and against ImageNet features.

Usage: python bench/pretrain_demo.py [--source-per-class 1000] [--target-per-class 10] [--seeds 0,1,2]
Writes bench/results/pretrain-demo-<date>.json with the machine, versions, settings and figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from run import machine  # noqa: E402  (bench/ is run as a script folder)

import transferkit as tk
from transferkit.bundle import library_versions
from transferkit.data import select_classes


def timed(fn):
    start = time.perf_counter()
    cpu = time.process_time()
    out = fn()
    return out, round(time.perf_counter() - start, 1), round(time.process_time() - cpu, 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--source-per-class", type=int, default=1000)
    p.add_argument("--target-per-class", type=int, default=10)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--source-epochs", type=int, default=6)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    size = args.image_size
    train_all, test_all = tk.load_fashion_mnist("train"), tk.load_fashion_mnist("test")
    source = tk.per_class(select_classes(train_all, "0-4"), args.source_per_class, seed=0)
    target_pool = select_classes(train_all, "5-9")
    target_test = tk.per_class(select_classes(test_all, "5-9"), 200, seed=12345)
    tmp = Path(tempfile.mkdtemp(prefix="tk-pretrain-"))
    pretrained, seconds, cpu = timed(lambda: tk.ScratchClassifier(
        "packaged:efficientnet_lite0", epochs=args.source_epochs, image_size=size, progress=False).fit(source))
    pretrained.save(tmp / "source")
    result = {"benchmark": "pretrain-demo", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(),
              "settings": {"source": "fashion-mnist train classes 0-4", "source_images": len(source),
                           "source_epochs": args.source_epochs, "image_size": size,
                           "target": "fashion-mnist classes 5-9", "target_per_class": args.target_per_class,
                           "test_images": len(target_test)},
              "source_model": {"seconds": seconds, "cpu_seconds": cpu,
                               "source_test_accuracy": tk.evaluate(pretrained, tk.per_class(
                                   select_classes(test_all, "0-4"), 200, seed=12345))["accuracy"]},
              "runs": []}
    print(json.dumps(result["source_model"]), flush=True)
    own = f"bundle:{tmp / 'source'}"
    methods = {
        "own source: feature extraction": lambda s: tk.FeatureExtractionClassifier(own, progress=False, cache=False),
        "own source: fine-tune (two-stage)": lambda s: tk.FineTuneClassifier(
            own, head_epochs=5, epochs=10, lr_head=3e-3, lr_backbone=3e-4, progress=False, seed=s),
        "ImageNet (packaged) at the same size: feature extraction": lambda s: tk.FeatureExtractionClassifier(
            _at_size(size), progress=False, cache=False),
        "scratch on the target": lambda s: tk.ScratchClassifier(
            "packaged:efficientnet_lite0", epochs=30, image_size=size, progress=False, seed=s),
    }
    for seed in [int(x) for x in args.seeds.split(",")]:
        target = tk.per_class(target_pool, args.target_per_class, seed=seed)
        for name, make in methods.items():
            model, seconds, cpu = timed(lambda make=make, seed=seed, target=target: make(seed).fit(target))
            accuracy = tk.evaluate(model, target_test)["accuracy"]
            row = {"method": name, "seed": seed, "accuracy": accuracy, "seconds": seconds, "cpu_seconds": cpu}
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for name in methods:
        accs = [r["accuracy"] for r in result["runs"] if r["method"] == name]
        summary[name] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "n": len(accs)}
    result["summary"] = summary
    out = Path(args.out or f"bench/results/pretrain-demo-{dt.date.today().isoformat()}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


def _at_size(size: int) -> tk.Backbone:
    bb = tk.create_backbone("packaged:efficientnet_lite0")
    bb.preprocessing = bb.preprocessing.with_image_size(size)
    return bb


if __name__ == "__main__":
    main()
