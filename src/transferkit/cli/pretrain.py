"""``transferkit pretrain DATA --arch SPEC --out DIR``: train your own source model, then transfer it.

The bundle it writes is a backbone for later runs: ``transferkit fit TARGET --backbone bundle:DIR``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..jobs.fit import DEFAULT_BACKBONE, FitConfig
from ..jobs.pretrain import pretrain_bundle
from ._common import (
    add_backbone_options,
    add_bundle_options,
    add_runtime_options,
    backbone_options,
    emit,
    fraction,
    positive_int,
    random_seed,
    split_fraction,
)
from ._train_options import add_train_options, train_overrides
from .fit import render


def register(sub: Any) -> None:
    p = sub.add_parser("pretrain", help="train a source model from scratch, reusable as bundle:DIR",
                       description="Train an architecture from random weights on an abundant source task.")
    p.add_argument("data", help="source data: folder of <class>/<image>, a path,label CSV, or a built-in name")
    p.add_argument("--arch", default=DEFAULT_BACKBONE, help="architecture spec, e.g. timm:resnet18 (weights unused)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--classes", default=None, help="keep only these classes (names or indices, e.g. 0-4)")
    p.add_argument("--per-class", type=positive_int, default=None)
    p.add_argument("--val-fraction", type=split_fraction, default=0.1)
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--image-size", type=positive_int, default=None)
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--max-bad", type=fraction, default=0.1)
    add_train_options(p)
    add_backbone_options(p)
    add_bundle_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = FitConfig(
        data=args.data, out=args.out, backbone=args.arch, strategy="scratch", per_class=args.per_class,
        val_fraction=args.val_fraction, seed=args.seed, epochs=args.epochs, image_size=args.image_size,
        device=args.device, batch_size=args.batch_size, num_workers=args.num_workers, max_bad_fraction=args.max_bad,
        progress=not args.no_progress, classes=args.classes, resume=args.resume,
        train=train_overrides(args, "scratch"), backbone_options=backbone_options(args),
        training_items=not args.no_training_items,
    )
    emit(args, pretrain_bundle(cfg), render)
    return 0
