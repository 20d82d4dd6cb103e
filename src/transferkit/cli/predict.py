"""``transferkit predict BUNDLE INPUT...``: label and class probabilities for each image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .._errors import DataError
from ..bundle import load_bundle
from ..data import ImageDataset
from ._common import add_runtime_options, emit, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify images with a bundle")
    p.add_argument("bundle", help="bundle directory written by `transferkit fit`")
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--top", type=positive_int, default=3, help="classes shown per image (table output)")
    add_runtime_options(p)
    p.set_defaults(run=run)


def expand_inputs(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for text in inputs:
        p = Path(text)
        if p.is_dir():
            paths.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        else:
            paths.append(p)
    if not paths:
        raise DataError(f"No images found in {', '.join(inputs)}.")
    return paths


def predict_files(bundle: str, inputs: list[str], **overrides: Any) -> dict[str, Any]:
    """Predictions for image files with a bundle: ``{"predictions": [...], "skipped": [...], "classes": [...]}``."""
    model = load_bundle(bundle, **overrides)
    paths = expand_inputs(inputs)
    proba, index, skipped = model.predict_proba_details(ImageDataset(paths, None, [], name="inputs"))
    classes = [str(c) for c in model.classes_]
    predictions = [
        {"input": str(paths[i]), "label": classes[int(np.argmax(p))],
         "probabilities": {c: float(v) for c, v in zip(classes, p, strict=True)}}
        for i, p in zip(index.tolist(), proba, strict=True)
    ]
    return {"bundle": bundle, "classes": classes, "predictions": predictions,
            "skipped": [{"input": s[0], "reason": s[1]} for s in skipped]}


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"device": args.device, "num_workers": args.num_workers,
                                 "progress": not args.no_progress}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    result = predict_files(args.bundle, args.inputs, **overrides)
    emit(args, result, lambda console, r: render(console, r, args.top))
    if not result["predictions"]:
        raise DataError(f"None of the {len(result['skipped'])} inputs could be read as an image.")
    return 0


def render(console: Console, r: dict[str, Any], top: int) -> None:
    table = Table(title=f"predictions ({r['bundle']})")
    table.add_column("input", overflow="fold")
    table.add_column("label")
    table.add_column(f"top-{top} probabilities")
    for p in r["predictions"]:
        best = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])[:top]
        table.add_row(p["input"], p["label"], ", ".join(f"{c} {v:.2f}" for c, v in best))
    console.print(table)
    for s in r["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {s['input']}: {s['reason']}", highlight=False)
