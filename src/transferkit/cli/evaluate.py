"""``transferkit evaluate BUNDLE DATA``: accuracy, macro-F1, per-class scores, confusion matrix PNG; a warning when
the bundle was trained on some of DATA (``seen``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..bundle import load_bundle
from ..data import open_dataset
from ..data.seen import count_seen, seen_warnings
from ..evaluation import evaluate
from ._common import add_runtime_options, add_text_options, emit, print_warnings


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a bundle on labeled images")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("data", help="labeled images: folder of <class>/<image>, a path,label CSV, or a built-in name")
    p.add_argument("--plot", default=None, help="confusion matrix PNG (default: BUNDLE/evaluation_confusion.png)")
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def evaluate_bundle(bundle: str, data: str, plot: str | None = None, *, text_column: str = "text",
                    label_column: str = "label", encoding: str = "utf-8", **overrides: Any) -> dict[str, Any]:
    """Load ``bundle``, score it on ``data``; the confusion matrix is saved as a PNG."""
    model = load_bundle(bundle, **overrides)
    ds = open_dataset(data, text_column=text_column, label_column=label_column, encoding=encoding)
    png = Path(plot) if plot else Path(bundle) / "evaluation_confusion.png"
    seen = count_seen(getattr(model, "train_items_", None), ds)
    return {"bundle": bundle, "data": ds.name, **evaluate(model, ds, confusion_png=png), "seen": seen,
            "warnings": seen_warnings(bundle, seen, len(ds), "evaluated images", "the scores are optimistic",
                                      "evaluate on images it was not trained on")}


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"device": args.device, "num_workers": args.num_workers,
                                 "progress": not args.no_progress}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    emit(args, evaluate_bundle(args.bundle, args.data, args.plot, text_column=args.text_column,
                               label_column=args.label_column, encoding=args.encoding, **overrides), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['bundle']}[/bold] on {r['data']}: accuracy {r['accuracy']:.4f}, "
                  f"macro-F1 {r['macro_f1']:.4f} ({r['images']} images)")
    table = Table()
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col)
    for c, s in r["per_class"].items():
        table.add_row(c, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))
    console.print(table)
    console.print(f"confusion matrix: {r['confusion_png']}")
    for s in r["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {s[0]}: {s[1]}", highlight=False)
    print_warnings(console, r["warnings"])
