"""``transferkit evaluate BUNDLE DATA``: accuracy, macro-F1, per-class scores, confusion matrix PNG; a warning when
the bundle was trained on some of DATA (the job: :func:`transferkit.jobs.evaluate.evaluate_bundle`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..jobs.evaluate import EvaluateConfig, evaluate_bundle
from ._common import add_runtime_options, add_text_options, emit, print_warnings


def register(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a bundle (or an exported .onnx) on labelled data")
    p.add_argument("bundle", help="bundle directory, or a .onnx file written by `transferkit export`")
    p.add_argument("data", help="labeled images: folder of <class>/<image>, a path,label CSV, or a built-in name")
    p.add_argument("--plot", default=None, help="confusion matrix PNG (default: BUNDLE/evaluation_confusion.png; "
                                                    "NAME.evaluation_confusion.png beside NAME.onnx)")
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = EvaluateConfig(bundle=args.bundle, data=args.data, plot=args.plot, text_column=args.text_column,
                         label_column=args.label_column, encoding=args.encoding, device=args.device,
                         batch_size=args.batch_size, num_workers=args.num_workers, progress=not args.no_progress)
    emit(args, evaluate_bundle(cfg), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    if "tasks" in r:
        render_tasks(console, r)
        return
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


def render_tasks(console: Console, r: dict[str, Any]) -> None:
    """A multi-task bundle's scores: one row per task (on the items labelled for it), then the means."""
    console.print(f"[bold]{r['bundle']}[/bold] on {r['data']}: mean over tasks accuracy {r['accuracy']:.4f}, "
                  f"macro-F1 {r['macro_f1']:.4f} ({r['images']} images)")
    table = Table()
    for col in ("task", "labelled", "accuracy", "macro-F1", "confusion matrix"):
        table.add_column(col)
    for task, s in r["tasks"].items():
        if s["accuracy"] is None:
            table.add_row(task, "0", "-", "-", "-")
        else:
            table.add_row(task, str(s["images"]), f"{s['accuracy']:.4f}", f"{s['macro_f1']:.4f}",
                          str(s.get("confusion_png", "-")))
    console.print(table)
    for s in r["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {s[0]}: {s[1]}", highlight=False)
    print_warnings(console, r["warnings"])
