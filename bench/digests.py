"""What recording a bundle's training items costs on a folder of photos. (A benchmark, not a test.)

A fine-tune or scratch ``fit`` hashes every training file once more to keep its digests (transferkit.data.seen;
feature extraction reuses the keys its extraction computed). Question: how does that extra pass compare with the
least any training epoch must do, decoding every image once?

Protocol: N JPEG photos (random 256-px crops of scikit-image's photos at quality 90, the size a typical dataset
photo has on disk) in a class-per-folder tree; the page cache is warm for both measurements (they were just
written), so these are CPU costs, not disk costs. Times: ``training_digests(from_folder(dir))`` (read + sha256 of
every file), and decoding every image with the library's loader (PIL, RGB), each the best of 3 runs on one thread.

Usage: python bench/digests.py [--images 2000] [--out bench/results/digests-<date>.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ranking  # noqa: E402  (write_json, versions)
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.data.seen import training_digests  # noqa: E402


def write_photos(root: Path, n: int, seed: int = 0) -> int:
    """``n`` JPEG crops in two class folders; returns their total bytes."""
    from PIL import Image
    from skimage import data

    photos = [np.asarray(getattr(data, name)()) for name in ("chelsea", "astronaut", "coffee", "rocket")]
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
        path = root / f"class{i % 2}" / f"{i:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(photo[y:y + 256, x:x + 256]).save(path, quality=90)
        total += path.stat().st_size
    return total


def best_of(runs: int, job) -> float:  # noqa: ANN001
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = write_photos(root, args.images)
        ds = tk.from_folder(root)
        digest_s = best_of(3, lambda: training_digests(ds))
        decode_s = best_of(3, lambda: [ds.load(i).convert("RGB") for i in range(len(ds))])
    result = {"benchmark": "digests", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "command": [Path(sys.executable).name, *sys.argv], "machine": machine(), "versions": ranking.versions(),
              "images": args.images, "mean_file_kib": round(size / args.images / 1024, 1), "threads": 1,
              "digest_s": digest_s, "decode_s": decode_s,
              "digest_images_per_s": args.images / digest_s, "decode_images_per_s": args.images / decode_s,
              "digest_over_decode": digest_s / decode_s}
    out = Path(args.out or f"bench/results/digests-{dt.date.today().isoformat()}.json")
    ranking.write_json(out, result)
    print(f"{args.images} JPEGs of {result['mean_file_kib']} KiB: digests {digest_s:.2f} s "
          f"({result['digest_images_per_s']:.0f}/s), decoding {decode_s:.2f} s ({result['decode_images_per_s']:.0f}/s): "
          f"the digests cost {100 * result['digest_over_decode']:.1f}% of one decoding pass; wrote {out}")


if __name__ == "__main__":
    main()
