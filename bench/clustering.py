"""Unsupervised transfer: clustering pretrained features vs clustering the raw inputs (a benchmark, not a test).

- ``fashion``: 1,000 Fashion-MNIST test images (100 per class, seed 12345); packaged EfficientNet-Lite0 pooled
  features vs raw 28-px pixels.
- ``text``: the Debian package descriptions of ``bench/text.py`` (8 sections, 100 per section); packaged MiniLM
  features vs TF-IDF (word 1-2-grams).
- ``digits``: scikit-learn's 1,797 handwritten digits; EfficientNet-Lite0 features vs raw 8-px pixels.

Same clustering for both (``transferkit.clustering.cluster_features``: L2 + PCA 64, then k-means with k = the number
of classes, k-means with ``k="auto"`` by silhouette, and ``scan``: SCAN heads on the kNN of the same features, at the
true k), scored by NMI, ARI and cluster accuracy. The raw inputs also get k-means without L2 + PCA and with PCA 128,
so the baseline is the best cheap raw variant (``best_raw``). Issue 18's goal: pretrained NMI >= raw NMI + 0.15 on
Fashion-MNIST and on a text set.

Usage: ``python bench/clustering.py [--datasets fashion,text,digits] [--out PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402
from transferkit.clustering import cluster_features, cluster_scores, prepare, raw_inputs  # noqa: E402


def dataset(name: str) -> tuple[tk.ImageDataset, str]:
    if name == "fashion":
        return tk.per_class(tk.load_fashion_mnist("test"), 100, seed=12345), "packaged:efficientnet_lite0"
    if name == "digits":
        from transferkit.data.digit_shift import load_handwritten_digits

        return load_handwritten_digits(), "packaged:efficientnet_lite0"
    from text import build_dataset

    ds, _ = build_dataset()
    return tk.per_class(ds, 100, seed=12345), "packaged:all-minilm-l6-v2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion,text,digits")
    parser.add_argument("--out", default=f"bench/results/clustering-{dt.date.today()}.json")
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        ds, spec = dataset(name)
        start = time.perf_counter()
        backbone = tk.create_backbone(spec)
        extracted = tk.extract_features(backbone, ds, cache=False, progress=False)
        seconds = time.perf_counter() - start
        labels = np.asarray(ds.labels)[extracted.index]
        k = len(ds.classes)
        raw = raw_inputs(ds.subset(extracted.index))
        inputs = {"pretrained": prepare(extracted.features), "raw": prepare(raw),
                  "raw (no L2, no PCA)": raw, "raw (L2 + PCA 128)": prepare(raw, dims=128)}
        for kind, x in inputs.items():
            runs = [("kmeans", k), ("kmeans", "auto"), ("scan", k)] if kind in ("pretrained", "raw") else [("kmeans", k)]
            for method, k_choice in runs:
                t = time.perf_counter()
                result = cluster_features(x, k=k_choice, method=method, prepared=True, k_range=range(2, 2 * k + 1))
                row = {"dataset": name, "features": kind, "backbone": spec if kind == "pretrained" else None,
                       "method": method, "k": result.k, "k_choice": k_choice, "items": len(x),
                       **cluster_scores(labels, result.labels), "cluster_seconds": round(time.perf_counter() - t, 2),
                       "extract_seconds": round(seconds, 1) if kind == "pretrained" else None}
                rows.append(row)
                print(f"{name:8s} {kind:20s} {method:6s} k={row['k']:2d} ({k_choice}) NMI {row['nmi']:.3f} "
                      f"ARI {row['ari']:.3f} acc {row['accuracy']:.3f}", flush=True)
    gains, best = {}, {}
    for name in dict.fromkeys(r["dataset"] for r in rows):
        at_k = [r for r in rows if r["dataset"] == name and r["k_choice"] != "auto"]
        raw_best = max((r for r in at_k if r["features"] != "pretrained"), key=lambda r: r["nmi"])
        pre_best = max((r for r in at_k if r["features"] == "pretrained"), key=lambda r: r["nmi"])
        best[name] = {"pretrained": {"method": pre_best["method"], "nmi": pre_best["nmi"]},
                      "best_raw": {"features": raw_best["features"], "method": raw_best["method"],
                                   "nmi": raw_best["nmi"]}}
        gains[name] = {method: round(next(r["nmi"] for r in at_k if r["features"] == "pretrained"
                                          and r["method"] == method) - raw_best["nmi"], 4)
                       for method in ("kmeans", "scan")}
    result = {"benchmark": "clustering", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(), "goal": "pretrained NMI >= raw NMI + 0.15",
              "load": "timings taken on 2 cores shared with four other sessions (load average 10-12)",
              "nmi_gain_over_best_raw_at_true_k": gains, "best": best, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print("NMI gain (pretrained - best raw variant) at the true k:", gains)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
