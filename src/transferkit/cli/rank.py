"""``transferkit rank DATA --candidates SPEC[,SPEC...]``: which backbone and layer to reuse, scored in seconds (the
job: :func:`transferkit.jobs.rank.rank`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..jobs.rank import RankConfig, rank
from ..transferability import METRICS
from ._common import (
    add_backbone_options,
    add_runtime_options,
    add_text_options,
    backbone_options,
    emit,
    positive_int,
    positive_list,
    print_warnings,
    random_seed,
)


def register(sub: Any) -> None:
    p = sub.add_parser("rank", help="rank backbones and layers for DATA by a transferability score",
                       description="Score candidate backbones (and their layers) on DATA without training any, best "
                                   "first. Candidates may be random:<spec> (an untrained floor) and bundle:<dir>.")
    p.add_argument("data", help="folder of <class>/<image>, a path,label CSV, 'embedded' or 'fashion-mnist[:split]'")
    p.add_argument("--candidates", required=True, help="comma-separated backbone specs")
    p.add_argument("--layers", default="last", help="last (default), all, or comma-separated layer names")
    p.add_argument("--sample", type=positive_int, default=None, help="score on about N images: N / classes of each (rounded up)")
    p.add_argument("--metric", default="logme", help=f"one of: {', '.join(METRICS)} (default logme)")
    p.add_argument("--classes", default=None, help="keep only these classes: names or indices, e.g. 0-4")
    p.add_argument("--seed", type=random_seed, default=0, help="seeds the sample")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="score images at this square size, the one you will fine-tune at (default: each "
                        "candidate's own)")
    race = p.add_argument_group("race", "fine-tune the best-scored candidates briefly and rank them by that instead "
                                        "(successive halving over candidates x learning rates, k-fold validated)")
    race.add_argument("--race", nargs="?", const="all", default=None, type=race_count, metavar="K",
                      help="race the top K candidates by score (all when K is left out), on the images that were "
                           "scored (--sample)")
    race.add_argument("--race-lrs", default="1e-3,1e-2,1e-1", type=learning_rates, metavar="LRS",
                      help="backbone learning rates each raced candidate is tried with (default 1e-3,1e-2,1e-1)")
    race.add_argument("--race-epochs", default="1,9", type=epoch_range, metavar="MIN,MAX",
                      help="fine-tuning epochs of the first rung and the cap; x3 per rung (default 1,9)")
    race.add_argument("--race-folds", default=3, type=positive_int, metavar="N", help="cross-validation folds (default 3)")
    race.add_argument("--race-state", default=None, metavar="FILE",
                      help="JSON file keeping every finished fine-tune, so a stopped race resumes (default: in the "
                           "cache directory; none with --no-cache)")
    add_text_options(p)
    add_backbone_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def race_count(text: str) -> int | str:
    return "all" if text == "all" else positive_int(text)


learning_rates = positive_list(float, "learning rates such as 1e-3,1e-2")


def epoch_range(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts) and 1 <= int(parts[0]) <= int(parts[1]):
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"expected MIN,MAX epochs with 1 <= MIN <= MAX, e.g. 1,9, got {text!r}")


def run(args: argparse.Namespace) -> int:
    cfg = RankConfig(
        data=args.data, candidates=args.candidates, layers=args.layers, sample=args.sample, metric=args.metric,
        classes=args.classes, seed=args.seed, cache=not args.no_cache, image_size=args.image_size, race=args.race,
        race_lrs=args.race_lrs, race_epochs=args.race_epochs, race_folds=args.race_folds, race_state=args.race_state,
        text_column=args.text_column, label_column=args.label_column, encoding=args.encoding,
        backbone_options=backbone_options(args), device=args.device, batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    emit(args, rank(cfg), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    title = f"transferkit rank — {r['metric']} on {r['images']} images of {r['data']} (higher is better)"
    raced = r.get("race")
    if raced:
        title += (f"; top {raced['candidates']} raced by {raced['folds']}-fold fine-tuning ({raced['seconds']:.0f} s):"
                  f" out-of-fold accuracy at the most epochs each reached")
    table = Table(title=title)
    race_cols = ("race acc", "epochs", "lr") if raced else ()
    for col in ("#", "backbone", "layer", "score", *race_cols, "seconds", "dim", "licence"):
        text = col in ("backbone", "layer", "licence")  # folded, never cut: a spec is useless without its end
        table.add_column(col, justify="left" if text else "right", overflow="fold" if text else "ellipsis",
                         no_wrap=not text)
    for row in r["ranking"]:
        if row["score"] is None:
            table.add_row(str(row["rank"]), row["backbone"], str(row["layer"] or "-"), "-", *("-" for _ in race_cols),
                          "-", "-", f"[yellow]{row['error']}[/yellow]")
            continue
        cells: tuple[str, ...] = ()
        if raced:
            cells = (("-", "-", "-") if row.get("race_accuracy") is None else
                     (f"{row['race_accuracy']:.3f}", str(row["race_epochs"]), f"{row['race_lr']:g}"))
        table.add_row(str(row["rank"]), row["backbone"], row["layer"], f"{row['score']:.4f}", *cells,
                      f"{row['seconds']:.1f}", str(row["dim"]), row["licence"])
    console.print(table)
    if r.get("copies"):
        console.print(f"copies left out: {r['copies']} (images identical to another under the same label; each "
                      f"distinct image is scored {'and raced ' if raced else ''}once)")
    print_warnings(console, r["warnings"])
