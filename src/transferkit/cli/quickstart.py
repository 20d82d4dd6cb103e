"""``transferkit quickstart``: the offline demo on the embedded Fashion-MNIST subset."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..jobs.quickstart import QuickstartConfig, quickstart
from ._common import random_seed


def register(sub: Any) -> None:
    p = sub.add_parser("quickstart", help="offline demo: packaged EfficientNet-Lite0 features vs a small CNN from scratch")
    p.add_argument("--out", default="transferkit-quickstart", help="output directory (default: transferkit-quickstart)")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--baseline", default="auto", choices=["auto", "small-cnn", "arch"],
                   help="what transfer is judged against: auto/small-cnn (a small CNN from scratch at 28 px, the "
                        "default) or arch (EfficientNet-Lite0 itself from random init at 64 px)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = quickstart(QuickstartConfig(out=args.out, seed=args.seed, device=args.device,
                                         progress=not args.no_progress, baseline=args.baseline))
    if args.json:
        import json
        import sys

        sys.stdout.write(json.dumps(result) + "\n")
    else:
        render(Console(), result)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"Embedded Fashion-MNIST subset: {r['train_images']} train / {r['val_images']} validation")
    for col in ("strategy", "accuracy", "macro-F1", "seconds"):
        table.add_column(col)
    for row in r["results"]:
        table.add_row(row["label"], f"{row['accuracy']:.3f}", f"{row['macro_f1']:.3f}", f"{row['seconds']:.1f}")
    console.print(table)
    from .fit import render_verdict

    render_verdict(console, r["verdict"])
    console.print(f"bundle: {r['bundle']}   plot: {r['plot']}   confusion matrix: {r['confusion_png']}")
    console.print(f"next: transferkit predict {r['bundle']} path/to/image.png")
