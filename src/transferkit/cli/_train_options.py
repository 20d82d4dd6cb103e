"""The fine-tune/scratch options shared by ``fit`` and ``pretrain``: each maps to a strategy parameter."""

from __future__ import annotations

import argparse
from typing import Any

from ..training import PRESETS, SCHEDULERS, SCHEDULES
from ._common import fraction, positive_int

# (flag, strategy parameter, argparse keyword arguments)
TRAIN_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--schedule", "schedule", {"choices": SCHEDULES, "help": "fine-tune: two-stage (default), gradual, full"}),
    ("--head-epochs", "head_epochs", {"type": int, "help": "epochs of the head-only stage"}),
    ("--epochs-per-stage", "epochs_per_stage", {"type": positive_int, "help": "gradual: epochs per unfreezing"}),
    ("--unfreeze-top", "unfreeze_top", {"type": int, "help": "only the top K layer groups learn"}),
    ("--lr", "lr_head", {"type": float, "help": "learning rate of the head (scratch: of everything)"}),
    ("--lr-backbone", "lr_backbone", {"type": float, "help": "learning rate of the top backbone group"}),
    ("--lr-decay", "lr_decay", {"type": float, "help": "discriminative factor per group towards the input"}),
    ("--scheduler", "scheduler", {"choices": SCHEDULERS, "help": "learning-rate schedule (with warmup)"}),
    ("--warmup", "warmup_fraction", {"type": fraction, "help": "fraction of steps spent warming up"}),
    ("--weight-decay", "weight_decay", {"type": float}),
    ("--label-smoothing", "label_smoothing", {"type": fraction}),
    ("--class-weight", "class_weight", {"choices": ["balanced"], "help": "weigh the loss by class frequency"}),
    ("--balanced-sampling", "balanced_sampling", {"action": "store_true", "default": None}),
    ("--augment", "augment", {"choices": PRESETS, "help": "augmentation preset (default light)"}),
    ("--precise-bn", "precise_bn", {"type": positive_int, "metavar": "IMAGES",
                                    "help": "after training, exact BatchNorm statistics over up to N training images"}),
    ("--train-bn", "train_bn", {"action": "store_true", "default": None,
                                "help": "BatchNorm of frozen groups keeps learning"}),
    ("--early-stopping", "early_stopping", {"type": positive_int, "metavar": "PATIENCE"}),
    ("--monitor", "monitor", {"choices": ["val_accuracy", "val_loss"]}),
    ("--precision", "precision", {"choices": ["auto", "bf16", "fp32"]}),
    ("--checkpoint-every", "checkpoint_every", {"type": positive_int, "metavar": "STEPS"}),
    ("--lr-find", "lr_find", {"action": "store_true", "default": None,
                              "help": "pick the head learning rate with a range test (model left untouched)"}),
]


def add_train_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("fine-tune / scratch training")
    for flag, dest, kwargs in TRAIN_OPTIONS:
        group.add_argument(flag, dest=f"train_{dest}", **{"default": None, **kwargs})
    group.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")


def train_overrides(args: argparse.Namespace, strategy: str) -> dict[str, Any]:
    values = {dest: getattr(args, f"train_{dest}") for _, dest, _ in TRAIN_OPTIONS}
    values = {k: v for k, v in values.items() if v is not None}
    if strategy == "scratch" and "lr_head" in values:
        values["lr"] = values.pop("lr_head")
    return values
