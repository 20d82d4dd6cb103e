"""``transferkit report BUNDLE DATA --out report.html``: one self-contained HTML page about a bundle on labelled
data (the job: :func:`transferkit.jobs.report.report_bundle`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ..jobs.report import ReportConfig, report_bundle
from ._common import (
    add_runtime_options,
    add_text_options,
    emit,
    non_negative_int,
    positive_int,
    print_warnings,
    random_seed,
)


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a bundle on labelled data",
                       description="Score BUNDLE on DATA and write one HTML file (no network needed to view it): "
                                   "metrics, confusion matrix, per-class precision/recall, calibration with "
                                   "temperature scaling, training curves and verdict, confident mistakes, model card.")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("data", help="labelled data of the bundle's classes: folder of <class>/<image>, a CSV, a built-in "
                                "name, or a text file")
    p.add_argument("--out", required=True, help="the HTML file to write, e.g. report.html")
    p.add_argument("--mistakes", type=non_negative_int, default=12, help="most confident mistakes to show (12)")
    p.add_argument("--per-class", type=positive_int, default=None, help="score at most N items per class")
    p.add_argument("--seed", type=random_seed, default=0, help="draws --per-class and the calibration halves")
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = ReportConfig(bundle=args.bundle, data=args.data, out=args.out, mistakes=args.mistakes,
                       per_class=args.per_class, seed=args.seed, text_column=args.text_column,
                       label_column=args.label_column, encoding=args.encoding, device=args.device,
                       batch_size=args.batch_size, num_workers=args.num_workers, progress=not args.no_progress)
    emit(args, report_bundle(cfg), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['bundle']}[/bold] on {r['data']}: accuracy {r['accuracy']:.4f}, macro-F1 "
                  f"{r['macro_f1']:.4f} ({r['items']} items)", highlight=False)
    if r["ece"] is not None:
        console.print(f"calibration: ECE {r['ece']:.4f}, {r['ece_after']:.4f} with temperature "
                      f"{r['temperature']:.3f} (cross-fitted)", highlight=False)
    console.print(f"report: {r['out']} ({r['bytes'] / 1e3:.0f} kB, self-contained)", highlight=False)
    print_warnings(console, r["warnings"])
