"""``transferkit predict BUNDLE INPUT...``: label and class probabilities for each image (or text).

A text bundle reads its inputs from files: a ``.txt`` holds one text per line, a ``.csv``/``.tsv``/``.jsonl``
has a text column (a label column, if any, is ignored).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .._errors import DataError
from ..bundle import load_bundle
from ..data import ImageDataset, TextDataset, from_audio_files, read_text_table
from ..data.sources import visible_files
from ._common import add_runtime_options, add_text_options, emit, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify images or texts with a bundle")
    p.add_argument("bundle", help="bundle directory written by `transferkit fit`")
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively); for a text bundle: "
                                             ".txt files (one text per line) or CSV/TSV/JSONL with a text column")
    p.add_argument("--top", type=positive_int, default=3, help="classes shown per image (table output)")
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def expand_inputs(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for text in inputs:
        p = Path(text)
        if p.is_dir():
            paths.extend(visible_files(p))
        else:
            paths.append(p)
    if not paths:
        raise DataError(f"No images found in {', '.join(inputs)}.")
    return paths


def read_texts(inputs: list[str], *, text_column: str = "text", encoding: str = "utf-8") -> TextDataset:
    """The texts of every input file, in order: ``.txt`` one per line, CSV/TSV/JSONL from ``text_column``."""
    texts: list[str] = []
    sources: list[str] = []
    skipped: list[tuple[str, str]] = []
    for text in inputs:
        ds = read_text_table(text, text_column=text_column, encoding=encoding, require_labels=False)
        texts.extend(ds.items)
        sources.extend(ds.describe(i) for i in range(len(ds)))
        skipped.extend(ds.skipped)
    return TextDataset(texts, None, [], "inputs", skipped, sources)


def predict_files(bundle: str, inputs: list[str], *, text_column: str = "text", encoding: str = "utf-8",
                  **overrides: Any) -> dict[str, Any]:
    """Predictions for image (or text) files with a bundle: ``{"predictions": [...], "skipped": [...],
    "classes": [...]}``; text predictions also carry ``text``."""
    model = load_bundle(bundle, **overrides)
    if model.modality_ == "text":
        ds: Any = read_texts(inputs, text_column=text_column, encoding=encoding)
    elif model.modality_ == "audio":
        ds = from_audio_files(expand_inputs(inputs))
    else:
        ds = ImageDataset(expand_inputs(inputs), None, [], name="inputs")
    proba, index, skipped = model.predict_proba_details(ds)
    classes = [str(c) for c in model.classes_]
    predictions = [
        {"input": ds.describe(i), **({"text": ds.items[i]} if model.modality_ == "text" else {}),
         "label": classes[int(np.argmax(p))],
         "probabilities": {c: float(v) for c, v in zip(classes, p, strict=True)}}
        for i, p in zip(index.tolist(), proba, strict=True)
    ]
    skipped = list(dict.fromkeys(tuple(s) for s in [*ds.skipped, *skipped]))  # empty lines of text files too
    if not predictions:
        raise nothing_readable(skipped, model.modality_)
    return {"bundle": bundle, "classes": classes, "predictions": predictions,
            "skipped": [{"input": s[0], "reason": s[1]} for s in skipped]}


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"device": args.device, "num_workers": args.num_workers,
                                 "progress": not args.no_progress}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    result = predict_files(args.bundle, args.inputs, text_column=args.text_column, encoding=args.encoding, **overrides)
    emit(args, result, lambda console, r: render(console, r, args.top))
    return 0


def nothing_readable(skipped: list[tuple[str, str]], modality: str) -> DataError:
    """One line naming the inputs (the first three) and why each could not be read."""
    named = "; ".join(f"{item} ({reason})" for item, reason in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    expected = (".txt files (one text per line) or CSV/TSV/JSONL with a text column" if modality == "text"
                else f"{modality} files or folders of them")
    return DataError(f"None of the {len(skipped)} inputs could be read: {named}{more}. Pass {expected}.")


def render(console: Console, r: dict[str, Any], top: int) -> None:
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
