"""``transferkit curve DATA --backbone SPEC --per-class 5,10,20,50,100``: transfer vs scratch over label budgets."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from .._progress import stderr_console
from ..curve import CurveConfig
from ..jobs.curve import CurveJob, curve
from ..jobs.fit import DEFAULT_BACKBONE
from ..strategies.baselines import baseline_label
from ._common import (
    add_backbone_options,
    add_runtime_options,
    add_text_options,
    backbone_options,
    emit,
    positive_int,
    positive_list,
    print_warnings,
    split_fraction,
)

int_list = positive_list(int, "integers")


def register(sub: Any) -> None:
    p = sub.add_parser("curve", help="learning curve: transfer vs scratch against labels per class",
                       description="Train transfer and scratch on growing labeled subsets of DATA (several seeds), "
                                   "score both on one held-out set, and plot where transfer pays.")
    p.add_argument("data", help="folder of <class>/<image>, a path,label CSV, 'embedded' or 'fashion-mnist[:split]'")
    p.add_argument("--out", required=True, help="directory for curve.json and curve.png (re-run to resume)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"backbone spec (default: {DEFAULT_BACKBONE})")
    p.add_argument("--per-class", type=int_list, default=[5, 10, 20, 50, 100], help="sizes (default 5,10,20,50,100)")
    p.add_argument("--seeds", type=positive_int, default=3, help="subsets and model seeds per size (default 3)")
    p.add_argument("--strategy", default="feature-extraction", choices=["feature-extraction", "fine-tune"])
    p.add_argument("--head", default=None, help="feature-extraction head (default logistic)")
    p.add_argument("--test", default=None, help="a separate labeled test set (default: hold out --test-fraction)")
    p.add_argument("--test-fraction", type=split_fraction, default=0.2, help="held-out share of DATA (default 0.2)")
    p.add_argument("--classes", default=None, help="keep only these classes: names or indices, e.g. 0-4")
    p.add_argument("--baseline", choices=["auto", "small-cnn", "tfidf", "arch"], default="auto",
                   help="what transfer is compared with (default auto: a small CNN at the images' native size, "
                        "TF-IDF + logistic regression for texts; arch: the backbone's architecture from scratch)")
    p.add_argument("--image-size", type=positive_int, default=None, help="input size of fine-tune and --baseline arch")
    p.add_argument("--scratch-epochs", type=positive_int, default=CurveConfig.scratch_epochs,
                   help=f"--baseline arch: its epochs (default {CurveConfig.scratch_epochs}; raised for small sets)")
    p.add_argument("--epochs", type=positive_int, default=CurveConfig.epochs,
                   help=f"fine-tune epochs (default {CurveConfig.epochs}; raised for small sets)")
    p.add_argument("--min-steps", type=positive_int, default=200, help="optimizer steps every trained run gets")
    add_text_options(p)
    add_backbone_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = CurveConfig(backbone=args.backbone, baseline=args.baseline, per_class=args.per_class, seeds=args.seeds, strategy=args.strategy,
                      test_fraction=args.test_fraction, image_size=args.image_size,
                      scratch_epochs=args.scratch_epochs, epochs=args.epochs, min_steps=args.min_steps,
                      batch_size=args.batch_size or CurveConfig.batch_size, num_workers=args.num_workers,
                      device=args.device, progress=not args.no_progress, backbone_options=backbone_options(args))
    log = None if args.no_progress else (lambda line: stderr_console.print(line, highlight=False))
    job = CurveJob(data=args.data, out=args.out, config=cfg, test=args.test, classes=args.classes, head=args.head,
                   text_column=args.text_column, label_column=args.label_column, encoding=args.encoding, log=log)
    emit(args, curve(job), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    baseline = baseline_label(r.get("baseline_kind", "arch"))
    table = Table(title=f"transferkit curve — {r['config']['strategy']} ({r['config']['backbone']}) vs {baseline}, "
                        f"{r['test_images']} held-out images")
    for col in ("labels/class", "transfer", "baseline", "gain (points) [95% CI]", "verdict"):
        table.add_column(col, justify="left" if col == "verdict" else "right")
    for p in r["points"]:
        ci = f" [{100 * p['gain_ci'][0]:+.1f}, {100 * p['gain_ci'][1]:+.1f}]" if "gain_ci" in p else ""
        table.add_row(str(p["per_class"]),
                      f"{p['transfer']['mean']:.3f} ± {p['transfer']['std']:.3f}" if "transfer" in p else "-",
                      f"{p['scratch']['mean']:.3f} ± {p['scratch']['std']:.3f}" if "scratch" in p else "-",
                      f"{100 * p['gain']:+.1f}{ci}" if "gain" in p else "-", p.get("verdict", "-"))
    console.print(table)
    pays = r["pays_until"]
    console.print("transfer is clearly ahead " + (f"up to {pays} labels per class" if pays else
                                                  "at none of these sizes") + f"; plot: {r['plot']}",
                  highlight=False)
    print_warnings(console, r.get("warnings", []))
