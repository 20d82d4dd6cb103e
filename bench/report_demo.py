"""What ``transferkit report`` gives on a real small task, and the screenshot in ``docs/`` (a demo, not a test).

A two-stage fine-tune of ``packaged:efficientnet_lite0`` at 64 px (the learning rates ``bench/finetune.py`` tuned,
6 epochs after 2 of the head alone) on 30 Fashion-MNIST training images per class
(Debian's ``dataset-fashion-mnist``; a third held out for the verdict against the small CNN), reported on the 400
embedded images (40 per class, drawn from the *test* split, so none was trained on). Each command runs in a fresh
process as a user would run it; the page is then rendered in headless Chromium (Debian's ``chromium``), which must
log nothing to its console, and a screenshot of it is written to ``docs/report-screenshot.png``.

Usage: ``python bench/report_demo.py [--work DIR] [--out bench/results/report-demo-<date>.json]``.
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

sys.path.insert(0, str(Path(__file__).parent))
from finetune import write_json  # noqa: E402
from run import machine  # noqa: E402

from transferkit.bundle import library_versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIT = ["fit", "fashion-mnist:train", "--per-class", "30", "--backbone", "packaged:efficientnet_lite0",
       "--strategy", "fine-tune", "--image-size", "64", "--epochs", "6", "--lr", "3e-3", "--lr-backbone", "1e-3",
       "--lr-decay", "0.7", "--augment", "light", "--val-fraction", "0.34", "--no-progress", "--json"]


def transferkit(*args: str) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "transferkit", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"transferkit {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, json.loads(done.stdout)


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    if browser is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--no-first-run", f"--user-data-dir={profile}", *args, page.as_uri()],
                              capture_output=True, text=True, timeout=300, check=True)


def screenshot(page: Path, target: Path, width: int = 1280, height: int = 5200) -> tuple[int, int]:
    """The page's top ``height`` px at ``width``, the empty bottom cut off; (width, height) of the PNG."""
    from PIL import Image, ImageChops

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "shot.png"
        chromium(page, f"--window-size={width},{height}", f"--screenshot={raw}")
        image = Image.open(raw).convert("RGB")
        background = Image.new("RGB", image.size, image.getpixel((width - 1, height - 1)))
        box = ImageChops.difference(image, background).getbbox()
        image = image.crop((0, 0, width, min(height, (box[3] if box else height) + 24)))
        target.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=256).save(target, optimize=True)
        return image.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="where the bundle goes (default: a temporary dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                        f"report-demo-{dt.date.today().isoformat()}.json")
    parser.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "report-screenshot.png")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="report-demo-"))
    bundle, page = work / "bundle", work / "report.html"
    fit_s, fit = transferkit(*FIT, "--out", str(bundle))
    report_s, report = transferkit("report", str(bundle), "embedded", "--out", str(page), "--no-progress", "--json")
    console = [line for line in chromium(page, "--enable-logging=stderr", "--v=0", "--dump-dom").stderr.splitlines()
               if ":CONSOLE" in line]
    size = screenshot(page, args.screenshot)
    result = {
        "question": "what transferkit report shows on a real small task, and what it costs",
        "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(), "versions": library_versions(),
        "fit_command": ["transferkit", *FIT, "--out", "BUNDLE"],
        "report_command": ["transferkit", "report", "BUNDLE", "embedded", "--out", "report.html"],
        "fit_seconds": round(fit_s, 1), "report_seconds": round(report_s, 1),
        "fit": {k: fit.get(k) for k in ("accuracy", "macro_f1", "train_images", "val_images", "licence")},
        "verdict": (fit.get("verdict") or {}).get("verdict"),
        "report": {k: report[k] for k in ("items", "accuracy", "macro_f1", "ece", "ece_after", "temperature",
                                          "mistakes", "bytes", "training_curves", "verdict", "licence")},
        "chromium_console_lines": console, "screenshot": str(args.screenshot.relative_to(ROOT)),
        "screenshot_size": list(size),
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
