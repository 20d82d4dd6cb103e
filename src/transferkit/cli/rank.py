"""``transferkit rank DATA --candidates SPEC[,SPEC...]``: which backbone and layer to reuse, scored in seconds."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..data import open_dataset, select_classes
from ..transferability import METRICS
from ..transferability.rank import rank_backbones
from ._common import (
    add_backbone_options,
    add_runtime_options,
    add_text_options,
    backbone_options,
    emit,
    positive_int,
)


def register(sub: Any) -> None:
    p = sub.add_parser("rank", help="rank backbones and layers for DATA by a transferability score",
                       description="Score candidate backbones (and their layers) on DATA without training any, best "
                                   "first. Candidates may be random:<spec> (an untrained floor) and bundle:<dir>.")
    p.add_argument("data", help="folder of <class>/<image>, a path,label CSV, 'embedded' or 'fashion-mnist[:split]'")
    p.add_argument("--candidates", required=True, help="comma-separated backbone specs")
    p.add_argument("--layers", default="last", help="last (default), all, or comma-separated layer names")
    p.add_argument("--sample", type=positive_int, default=None, help="score on at most N images, balanced over classes")
    p.add_argument("--metric", default="logme", help=f"one of: {', '.join(METRICS)} (default logme)")
    p.add_argument("--classes", default=None, help="keep only these classes: names or indices, e.g. 0-4")
    p.add_argument("--seed", type=int, default=0, help="seeds the sample")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="score images at this square size, the one you will fine-tune at (default: each "
                        "candidate's own)")
    add_text_options(p)
    add_backbone_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def rank(args: argparse.Namespace) -> dict[str, Any]:
    data = open_dataset(args.data, text_column=args.text_column, label_column=args.label_column,
                        encoding=args.encoding)
    if args.classes:
        data = select_classes(data, args.classes)
    rows = rank_backbones(data, args.candidates, layers=args.layers, sample=args.sample, metric=args.metric,
                          seed=args.seed, device=args.device, cache=not args.no_cache,
                          batch_size=args.batch_size or 64, progress=not args.no_progress,
                          backbone_options=backbone_options(args), image_size=args.image_size)
    return {"data": data.name, "metric": rows[0]["metric"], "images": max(r.get("images", 0) for r in rows),
            "ranking": rows}


def run(args: argparse.Namespace) -> int:
    emit(args, rank(args), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"transferkit rank — {r['metric']} on {r['images']} images of {r['data']} (higher is better)")
    for col in ("#", "backbone", "layer", "score", "seconds", "dim", "licence"):
        table.add_column(col, justify="right" if col in ("#", "score", "seconds", "dim") else "left")
    for row in r["ranking"]:
        if row["score"] is None:
            table.add_row(str(row["rank"]), row["backbone"], str(row["layer"] or "-"), "-", "-", "-",
                          f"[yellow]{row['error']}[/yellow]")
            continue
        table.add_row(str(row["rank"]), row["backbone"], row["layer"], f"{row['score']:.4f}",
                      f"{row['seconds']:.1f}", str(row["dim"]), row["licence"])
    console.print(table)
