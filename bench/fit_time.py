"""What a default ``transferkit fit`` on 20 images costs, stage by stage (a benchmark, not a test).

Issue 16's goal: a default fit (feature extraction, tuned head, cross-fit verdict against the small CNN) on 20
labelled images under 10 s on 2 cores. The 20 images are Fashion-MNIST T-shirts and trousers (10 each, the first of
each class in the training file), written as 28-px PNG files into class folders, so the run reads files as a user's
would. Each command runs in a fresh process (``subprocess``), ``--repeats`` times, measured side by side in one run:

- ``import``: ``python -c "import transferkit.cli"`` (torch, torchvision via timm, scikit-learn);
- ``import timm``: the part of it that a fit of a timm backbone cannot avoid;
- ``fit --no-baseline``: the transfer model alone (backbone load, extraction, tuned head, bundle, confusion plot);
- ``fit (default: cold cache)``: the default, with the verdict, on an empty feature cache (a user's first fit);
- ``fit --no-cache``: the same without the cache (every fold model extracts its own features);
- ``fit (warm cache)``: the default again on a warm feature cache.

Each row records the 1-minute load average before and after (the machine may be shared: compare rows of one run),
the seconds the fit itself reported, and the verdict's own seconds. At the end a per-stage table of medians.

Usage: ``python bench/fit_time.py [--repeats 2] [--stages fit,...] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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


def stages(exe: list[str], data: Path, work: Path) -> dict[str, list[str]]:
    """``{stage: command}``, in the order they run (see the module docstring)."""
    fit = exe + ["fit", str(data), "--json", "--out"]
    return {
        "import": [sys.executable, "-c", "import transferkit.cli"],
        "import timm": [sys.executable, "-c", "import timm"],
        "fit --no-baseline": fit + [str(work / "a"), "--no-baseline", "--no-cache"],
        "fit (default: cold cache)": fit + [str(work / "b")],
        "fit --no-cache": fit + [str(work / "c"), "--no-cache"],
        "fit (warm cache)": fit + [str(work / "d")],
    }


def table(summary: dict[str, dict]) -> str:
    """The per-stage medians, one line each."""
    lines = [f"{'stage':<28}{'wall s':>8}{'(min)':>8}{'fit says':>10}{'verdict':>9}{'load 1m':>9}"]
    for stage, row in summary.items():
        said = "" if row["reported_s_median"] is None else f"{row['reported_s_median']:.1f}"
        verdict = "" if row["verdict_s_median"] is None else f"{row['verdict_s_median']:.1f}"
        lines.append(f"{stage:<28}{row['wall_s_median']:>8.1f}{min(row['wall_s']):>8.1f}{said:>10}{verdict:>9}"
                     f"{row['load_1m_before_median']:>9.1f}")
    return "\n".join(lines)


def median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stages", default=None, help="comma-separated subset of the stages (default: all)")
    parser.add_argument("--out", default=f"bench/results/fit-time-{dt.date.today()}.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tk-fit-time-"))
    data = write_images(work / "data")
    exe = [sys.executable, "-m", "transferkit"]
    every = stages(exe, data, work)
    chosen = [s.strip() for s in args.stages.split(",")] if args.stages else list(every)
    unknown = [s for s in chosen if s not in every]
    if unknown:
        raise SystemExit(f"error: unknown stage(s) {unknown}; the stages are {list(every)}")
    rows = []
    try:
        for r in range(args.repeats):
            for stage in chosen:
                cache = work / f"cache-{r}-{stage.replace(' ', '_')}"  # every stage starts from its own cache
                env = {**os.environ, "TRANSFERKIT_CACHE": str(cache)}
                for d in ("a", "b", "c", "d", "warm"):
                    shutil.rmtree(work / d, ignore_errors=True)
                if stage == "fit (warm cache)":  # fill the cache first: the row measures a warm one
                    timed(exe + ["fit", str(data), "--out", str(work / "warm"), "--json", "--no-baseline"], env)
                load_before = os.getloadavg()[0]
                seconds, report = timed(every[stage], env)
                verdict = report.get("verdict") or {}
                rows.append({"stage": stage, "repeat": r, "wall_s": round(seconds, 2),
                             "reported_s": report.get("seconds"), "verdict_s": report.get("verdict_seconds"),
                             "verdict": verdict.get("verdict"), "protocol": verdict.get("protocol"),
                             "baseline_epochs": (verdict.get("baseline") or {}).get("epochs"),
                             "accuracy": report.get("accuracy"), "load_1m_before": load_before,
                             "load_1m_after": os.getloadavg()[0]})
                print(f"{stage:28s} repeat {r}: {seconds:6.1f} s wall  (load {load_before:.1f})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for stage in dict.fromkeys(row["stage"] for row in rows):
        mine = [row for row in rows if row["stage"] == stage]
        summary[stage] = {"wall_s_median": float(np.median([row["wall_s"] for row in mine])),
                          "wall_s": [row["wall_s"] for row in mine],
                          "reported_s_median": median_or_none([row["reported_s"] for row in mine]),
                          "verdict_s_median": median_or_none([row["verdict_s"] for row in mine]),
                          "load_1m_before_median": float(np.median([row["load_1m_before"] for row in mine]))}
    result = {"benchmark": "fit-time", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "versions": library_versions(), "images": 20, "classes": 2,
              "goal": "default fit on 20 images < 10 s on 2 cores",
              "load_note": "1-minute load average of the machine around each row; above ~2 on 2 cores other "
                           "processes shared them and the wall times are inflated",
              "rows": rows, "summary": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(table(summary))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
