"""``transferkit adapt SOURCE --target-unlabeled DATA --out DIR``: domain adaptation with unlabelled target data (the
job: :func:`transferkit.jobs.adapt.adapt`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..jobs.adapt import CNN_METHODS, FEATURE_METHODS, AdaptConfig, adapt
from ._common import add_runtime_options, add_text_options, emit, positive_int, print_warnings, random_seed

METHOD_CHOICES = ("auto",) + tuple(dict.fromkeys(FEATURE_METHODS + CNN_METHODS))


def register(sub: Any) -> None:
    p = sub.add_parser("adapt", help="adapt a source-trained model to unlabelled target data (domain adaptation)",
                       description="Train on labelled SOURCE data and adapt to unlabelled target data of another "
                                   "distribution. Pretrained backbones adapt a head on cached features (coral, "
                                   "self-training) and write a bundle; --backbone small-cnn trains a small CNN on both "
                                   "domains (adabn, coral, dann, mcc, self-training).")
    p.add_argument("source", help="labelled source data: folder of <class>/<item>, a CSV, a text file or a built-in name")
    p.add_argument("--target-unlabeled", required=True, help="target data (labels, if any, are not read)")
    p.add_argument("--target-test", default=None, help="labelled target data to report accuracy on (never trained on)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--backbone", default="packaged:efficientnet_lite0",
                   help="backbone spec, or small-cnn (default: packaged:efficientnet_lite0)")
    p.add_argument("--method", choices=METHOD_CHOICES, default="auto",
                   help="auto (every method of the backbone's family, the best by a label-free score) or one method")
    p.add_argument("--layer", default=None, help="feature layer of a pretrained backbone (default: pre-logits)")
    p.add_argument("--steps", type=positive_int, default=1000, help="training steps of small-cnn runs (default 1000)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--seed", type=random_seed, default=0, help="seeds training and the label-free scores")
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = AdaptConfig(source=args.source, target_unlabeled=args.target_unlabeled, out=args.out,
                      backbone=args.backbone, method=args.method, target_test=args.target_test, layer=args.layer,
                      steps=args.steps, text_column=args.text_column, label_column=args.label_column,
                      encoding=args.encoding, device=args.device, batch_size=args.batch_size or 64,
                      num_workers=args.num_workers, cache=not args.no_cache, progress=not args.no_progress,
                      seed=args.seed)
    emit(args, adapt(cfg), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['method']}[/bold] (chosen by {r['selected_by']}, no target label) on {r['target']}, "
                  f"from {r['source']} ({r['backbone']})", highlight=False)
    table = Table()
    test = r["target_test"] is not None
    for col in ("method", "target-test accuracy" if test else None, "info. max.", "SND", "proxy A-dist.", "MMD"):
        if col:
            table.add_column(col)
    for run_ in r["runs"]:
        gap = run_.get("gap") or {}
        cells = [run_["method"], f"{run_['target_test_accuracy']:.3f}" if test else None,
                 f"{run_['information_maximization']:.3f}", f"{run_['snd']:.3f}",
                 f"{gap['proxy_a_distance']:.3f}" if gap else "-", f"{gap['mmd']:.4f}" if gap else "-"]
        table.add_row(*[c for c in cells if c is not None])
    console.print(table)
    if r.get("bundle"):
        console.print(f"bundle: {r['bundle']}")
    elif r.get("note"):
        console.print(r["note"])
    print_warnings(console, r["warnings"])
