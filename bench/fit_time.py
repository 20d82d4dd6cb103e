"""What a default ``transferkit fit`` on 20 images costs, stage by stage (a benchmark, not a test).

Issue 16's goal: a default fit (feature extraction, tuned head, cross-fit verdict against the small CNN) on 20
labelled images under 10 s on 2 cores. The 20 images are Fashion-MNIST T-shirts and trousers (10 each, the first of
each class in the training file), written as 28-px PNG files into class folders, so the run reads files as a user's
would. Each command runs in a fresh process (``subprocess``), ``--repeats`` times, measured side by side in one run:

- ``import``: ``python -c "import transferkit.cli"`` (torch, torchvision via timm, scikit-learn);
- ``import timm``: the part of it that a fit of a timm backbone cannot avoid;
- ``fit --no-baseline``: the transfer model alone (backbone load, extraction, tuned head, bundle, confusion plot);
- ``fit``: the default, with the verdict;
- ``fit --cache``: the default again on a warm feature cache.

Usage: ``python bench/fit_time.py [--repeats 2] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

import transferkit as tk  # noqa: E402
from transferkit.bundle import library_versions  # noqa: E402


def write_images(root: Path) -> Path:
    ds = tk.load_fashion_mnist("train")
    for c, name in ((0, "tshirt"), (1, "trouser")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(ds.labels == c)[:10]:
            Image.fromarray(ds.items[i]).save(root / name / f"{i}.png")
    return root


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {}
    return seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=f"bench/results/fit-time-{dt.date.today()}.json")
    args = parser.parse_args()
    import os

    work = Path(tempfile.mkdtemp(prefix="tk-fit-time-"))
    data = write_images(work / "data")
    env = {**os.environ, "TRANSFERKIT_CACHE": str(work / "cache")}
    exe = [sys.executable, "-m", "transferkit"]
    rows = []
    try:
        for r in range(args.repeats):
            for stage, command in (
                ("import", [sys.executable, "-c", "import transferkit.cli"]),
                ("import timm", [sys.executable, "-c", "import timm"]),
                ("fit --no-baseline", exe + ["fit", str(data), "--out", str(work / "a"), "--no-baseline", "--json",
                                             "--no-cache"]),
                ("fit", exe + ["fit", str(data), "--out", str(work / "b"), "--json", "--no-cache"]),
                ("fit --cache (warm)", exe + ["fit", str(data), "--out", str(work / "c"), "--json"]),
            ):
                if stage == "fit --cache (warm)":  # fill the cache first: the row measures a warm one
                    timed(exe + ["fit", str(data), "--out", str(work / "warm"), "--json", "--no-baseline"], env)
                for d in ("a", "b", "c", "warm"):
                    shutil.rmtree(work / d, ignore_errors=True)
                seconds, report = timed(command, env)
                verdict = report.get("verdict") or {}
                rows.append({"stage": stage, "repeat": r, "wall_s": round(seconds, 2),
                             "reported_s": report.get("seconds"), "verdict": verdict.get("verdict"),
                             "protocol": verdict.get("protocol"), "accuracy": report.get("accuracy")})
                print(f"{stage:22s} repeat {r}: {seconds:6.1f} s wall", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for stage in dict.fromkeys(row["stage"] for row in rows):
        walls = [row["wall_s"] for row in rows if row["stage"] == stage]
        summary[stage] = {"wall_s_median": float(np.median(walls)), "wall_s": walls}
    result = {"benchmark": "fit-time", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(), "images": 20, "classes": 2,
              "goal": "default fit on 20 images < 10 s on 2 cores", "rows": rows, "summary": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
