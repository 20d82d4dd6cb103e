"""Benchmarks of the spine (not tests): extraction speed vs a hand-written loop, cached-feature head training
vs re-running the frozen backbone, and peak memory of extraction at 5k vs 50k images.

Usage: python bench/run.py [--quick] [--out bench/results/spine-<date>.json]
Writes one JSON file with the machine, library versions, settings and figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import transferkit as tk
from transferkit.bundle import library_versions
from transferkit.data import build_transform
from transferkit.data.loader import image_loader


def machine() -> dict:
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def fashion(n: int) -> tk.ImageDataset:
    try:
        ds = tk.load_fashion_mnist("train")
    except tk.DataError:
        ds = tk.load_embedded()
    idx = np.arange(n) % len(ds)
    return tk.from_arrays(ds.items[idx], ds.labels[idx], ds.classes, name=f"fashion-mnist x{n}")


def hand_written_extraction(backbone: tk.Backbone, ds: tk.ImageDataset, batch_size: int) -> np.ndarray:
    """The loop a practitioner writes by hand: same decode/transform, DataLoader, inference_mode."""
    transform = build_transform(backbone.preprocessing)

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return transform(ds.load(i))

    out = []
    backbone.eval()
    with torch.inference_mode():
        for x in torch.utils.data.DataLoader(Images(), batch_size=batch_size):
            out.append(backbone(x).numpy())
    return np.concatenate(out)


def bench_extraction(n: int, repeats: int, batch_size: int = 64) -> dict:
    bb = tk.create_backbone("packaged:efficientnet_lite0")
    ds = fashion(n)
    hand_written_extraction(bb, fashion(batch_size), batch_size)  # warm-up
    hand_times, tk_times = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        ref = hand_written_extraction(bb, ds, batch_size)
        hand_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = tk.extract_features(bb, ds, cache=False, batch_size=batch_size, progress=False).features
        tk_times.append(time.perf_counter() - t)
    cosine = float(np.mean(np.sum(ref * ours, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(ours, axis=1) + 1e-12)))
    hand, ours_t = min(hand_times), min(tk_times)
    return {"images": n, "batch_size": batch_size, "image_size": bb.preprocessing.input_size,
            "hand_written_img_s": n / hand, "transferkit_img_s": n / ours_t, "ratio": hand / ours_t,
            "feature_cosine": cosine, "repeats": repeats, "best_of": "min time"}


def bench_cached_heads(n: int, epochs: int, cache_dir: str) -> dict:
    bb = tk.create_backbone("packaged:efficientnet_lite0")
    ds = fashion(n)
    labels = torch.as_tensor(ds.labels)
    head = torch.nn.Linear(bb.num_features, len(ds.classes))
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)

    def head_epoch(features: torch.Tensor) -> None:
        for start in range(0, len(features), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(features[start:start + 64]), labels[start:start + 64]).backward()
            opt.step()

    # Cached: extract once into the cache, then every epoch reads the features.
    t = time.perf_counter()
    feats = torch.from_numpy(tk.extract_features(bb, ds, cache=cache_dir, progress=False).features)
    first_extract = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(epochs):
        head_epoch(feats)
    cached_epochs = time.perf_counter() - t
    t = time.perf_counter()
    again = tk.extract_features(bb, ds, cache=cache_dir, progress=False)
    cache_hit = time.perf_counter() - t
    assert again.computed == 0
    # Re-running the frozen backbone every epoch (what a training loop without a cache does).
    transform = build_transform(bb.preprocessing)
    t = time.perf_counter()
    for _ in range(epochs):
        rows = []
        with torch.inference_mode():
            for batch in image_loader(ds, transform, batch_size=64):
                rows.append(bb(batch["images"]))
        head_epoch(torch.cat(rows).clone())
    rerun = time.perf_counter() - t
    return {"images": n, "epochs": epochs, "cached_total_s": first_extract + cached_epochs,
            "cached_epochs_only_s": cached_epochs, "first_extraction_s": first_extract, "cache_hit_read_s": cache_hit,
            "rerun_backbone_total_s": rerun, "speedup_total": rerun / (first_extract + cached_epochs),
            "speedup_warm_cache": rerun / (cache_hit + cached_epochs)}


def _rss_child(n: int, image_size: int, return_features: bool, cache_dir: str) -> None:
    """Extraction in a fresh process; RSS sampled every 5 ms by a thread, reported relative to just before."""
    import threading

    import psutil

    bb = tk.create_backbone("packaged:efficientnet_lite0")
    bb.preprocessing = bb.preprocessing.with_image_size(image_size)
    ds = fashion(n)
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = {"rss": before}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t = time.perf_counter()
    tk.extract_features(bb, ds, cache=cache_dir, progress=False, return_features=return_features)
    seconds = time.perf_counter() - t
    done.set()
    thread.join()
    print(json.dumps({"images": n, "rss_before_mb": before / 2**20, "peak_rss_mb": peak["rss"] / 2**20,
                      "extraction_growth_mb": (peak["rss"] - before) / 2**20, "seconds": seconds}))


def bench_rss(sizes: list[int], image_size: int, tmp: Path) -> dict:
    out = {}
    for mode in (False, True):
        rows = []
        for n in sizes:
            cache = tmp / f"rss-{n}-{mode}"
            cmd = [sys.executable, __file__, "--rss-child", str(n), "--image-size", str(image_size),
                   "--cache", str(cache)] + (["--return-features"] if mode else [])
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()))
        out["return_features" if mode else "stream_to_cache"] = rows
    out["image_size"] = image_size
    out["note"] = ("extraction_growth_mb = peak RSS during extract_features minus RSS just before (dataset and "
                   "model already loaded); stream_to_cache fills the cache only (memory flat by design); "
                   "return_features also returns the N x 1280 float32 array (N * 5 KB)")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    p.add_argument("--out", default=None)
    p.add_argument("--rss-child", type=int, default=None)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--cache", default=None)
    p.add_argument("--return-features", action="store_true")
    args = p.parse_args()
    if args.rss_child is not None:
        _rss_child(args.rss_child, args.image_size, args.return_features, args.cache)
        return
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="tk-bench-"))
    q = args.quick
    result = {"benchmark": "spine", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(), "quick": q}
    result["extraction_vs_hand_written"] = bench_extraction(64 if q else 512, 1 if q else 2)
    print(json.dumps(result["extraction_vs_hand_written"]), flush=True)
    result["cached_head_vs_rerun"] = bench_cached_heads(32 if q else 128, 3 if q else 20, str(tmp / "heads"))
    print(json.dumps(result["cached_head_vs_rerun"]), flush=True)
    result["peak_rss"] = bench_rss([500, 5000] if q else [5000, 50000], 32, tmp)
    print(json.dumps(result["peak_rss"]), flush=True)
    out = Path(args.out or f"bench/results/spine-{dt.date.today().isoformat()}{'-quick' if q else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
