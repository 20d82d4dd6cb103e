"""``transferkit predict BUNDLE INPUT...``: label and class probabilities for each image (or text); the job is
:func:`transferkit.jobs.predict.predict_files`."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..jobs.predict import PredictConfig, predict_files
from ._common import add_runtime_options, add_text_options, emit, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify images or texts with a bundle")
    p.add_argument("bundle", help="bundle directory written by `transferkit fit`, or a .onnx file written by "
                                  "`transferkit export`")
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively); for a text bundle: "
                                             ".txt files (one text per line) or CSV/TSV/JSONL with a text column")
    p.add_argument("--top", type=positive_int, default=3, help="classes shown per image (table output)")
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = PredictConfig(bundle=args.bundle, inputs=args.inputs, text_column=args.text_column, encoding=args.encoding,
                        device=args.device, batch_size=args.batch_size, num_workers=args.num_workers,
                        progress=not args.no_progress)
    result = predict_files(cfg)
    emit(args, result, lambda console, r: render(console, r, args.top))
    return 0


def render(console: Console, r: dict[str, Any], top: int) -> None:
    if r.get("tasks"):
        render_tasks(console, r)
        return
    table = Table(title=f"predictions ({r['bundle']})")
    table.add_column("input", overflow="fold")
    table.add_column("label")
    table.add_column(f"top-{top} probabilities")
    for p in r["predictions"]:
        best = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])[:top]
        shown = p["input"] if "text" not in p else f"{p['input']}: {p['text'][:60]}{'…' if len(p['text']) > 60 else ''}"
        table.add_row(shown, p["label"], ", ".join(f"{c} {v:.2f}" for c, v in best))
    console.print(table)
    for s in r["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {s['input']}: {s['reason']}", highlight=False)


def render_tasks(console: Console, r: dict[str, Any]) -> None:
    """A multi-task bundle's predictions: one column per task, its label and that label's probability."""
    table = Table(title=f"predictions ({r['bundle']})")
    table.add_column("input", overflow="fold")
    for task in r["tasks"]:
        table.add_column(task)
    for p in r["predictions"]:
        shown = p["input"] if "text" not in p else f"{p['input']}: {p['text'][:60]}{'…' if len(p['text']) > 60 else ''}"
        table.add_row(shown, *(f"{p['labels'][t]} {p['probabilities'][t][p['labels'][t]]:.2f}" for t in r["tasks"]))
    console.print(table)
    for s in r["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {s['input']}: {s['reason']}", highlight=False)
