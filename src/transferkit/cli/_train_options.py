"""The fine-tune/scratch options shared by ``fit`` and ``pretrain``: each maps to a strategy parameter.

An absent flag leaves the strategy's own default (:data:`~transferkit.training.FINE_TUNE_DEFAULTS`,
:data:`~transferkit.training.SCRATCH_DEFAULTS`); the help text reads the values from there.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..training import FINE_TUNE_DEFAULTS, PRESETS, SCHEDULERS, SCHEDULES, SCRATCH_DEFAULTS
from ._common import fraction, positive_int


def _default(field: str, *, scratch_takes_it: bool = True) -> str:
    """``default X`` from the fine-tune preset, ``; scratch Y`` when the scratch preset differs (an absent flag
    leaves the strategy's own default in place, so the help reports the presets, it does not set them)."""
    fine_tune, scratch = getattr(FINE_TUNE_DEFAULTS, field), getattr(SCRATCH_DEFAULTS, field)
    text = f"default {fine_tune:g}" if isinstance(fine_tune, float) else f"default {fine_tune}"
    if scratch == fine_tune or not scratch_takes_it:
        return text
    return text + (f"; scratch {scratch:g}" if isinstance(scratch, float) else f"; scratch {scratch}")


# (flag, strategy parameter, argparse keyword arguments)
TRAIN_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--schedule", "schedule", {"choices": SCHEDULES,
                                "help": f"fine-tune: {', '.join(SCHEDULES)} (default {FINE_TUNE_DEFAULTS.schedule})"}),
    ("--head-epochs", "head_epochs", {"type": int, "help": "epochs of the head-only stage "
                                                           f"({_default('head_epochs', scratch_takes_it=False)})"}),
    ("--epochs-per-stage", "epochs_per_stage", {"type": positive_int, "help": "gradual: epochs per unfreezing "
                                                                             f"({_default('epochs_per_stage')})"}),
    ("--unfreeze-top", "unfreeze_top", {"type": int, "help": "only the top K layer groups learn (default: all)"}),
    ("--lr", "lr_head", {"type": float, "help": f"learning rate of the head, scratch: of everything "
                                                f"({_default('lr_head')})"}),
    ("--lr-backbone", "lr_backbone", {"type": float, "help": "learning rate of the top backbone group "
                                                             f"({_default('lr_backbone', scratch_takes_it=False)})"}),
    ("--lr-decay", "lr_decay", {"type": float, "help": "discriminative factor per group towards the input "
                                                       f"({_default('lr_decay')})"}),
    ("--scheduler", "scheduler", {"choices": SCHEDULERS, "help": "learning-rate schedule (with warmup; "
                                                                 f"{_default('scheduler')})"}),
    ("--warmup", "warmup_fraction", {"type": fraction, "help": "fraction of steps spent warming up "
                                                               f"({_default('warmup_fraction')})"}),
    ("--weight-decay", "weight_decay", {"type": float, "help": f"AdamW weight decay ({_default('weight_decay')})"}),
    ("--label-smoothing", "label_smoothing", {"type": fraction, "help": _default("label_smoothing")}),
    ("--class-weight", "class_weight", {"choices": ["balanced"], "help": "weigh the loss by class frequency"}),
    ("--balanced-sampling", "balanced_sampling", {"action": "store_true", "default": None}),
    ("--augment", "augment", {"choices": PRESETS, "help": f"augmentation preset ({_default('augment')})"}),
    ("--precise-bn", "precise_bn", {"type": positive_int, "metavar": "IMAGES",
                                    "help": "after training, exact BatchNorm statistics over up to N training images"}),
    ("--train-bn", "train_bn", {"action": "store_true", "default": None,
                                "help": "BatchNorm of frozen groups keeps learning"}),
    ("--early-stopping", "early_stopping", {"type": positive_int, "metavar": "PATIENCE"}),
    ("--monitor", "monitor", {"choices": ["val_accuracy", "val_loss"], "help": _default("monitor")}),
    ("--precision", "precision", {"choices": ["auto", "bf16", "fp32"], "help": _default("precision")}),
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
