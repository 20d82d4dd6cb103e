"""Unfreezing plans and discriminative learning rates over a backbone's layer groups.

- ``two-stage``: the new head alone (backbone frozen), then every group at a lower learning rate — the
  Keras transfer-learning guide's recipe and LP-FT (Kumar et al., ICLR 2022).
- ``gradual``: the head alone, then one more group per stage from the top down — ULMFiT (Howard & Ruder,
  ACL 2018, "gradual unfreezing").
- ``unfreeze_top=K``: partial fine-tuning, only the top K groups ever learn.
- Discriminative learning rates (ULMFiT): the top group learns at ``lr_backbone``, each group below at
  ``lr_decay`` times the one above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .._errors import TransferkitError
from ..backbones import Backbone

SCHEDULES = ("two-stage", "gradual", "full")


@dataclass(frozen=True)
class Stage:
    """One phase of training.

    Attributes:
        name: shown in progress and metrics (``head``, ``fine-tune``, ``unfreeze blocks.6`` …).
        epochs: epochs of this stage.
        trainable_groups: backbone groups that learn; ``()`` trains the head only.
    """

    name: str
    epochs: int
    trainable_groups: tuple[str, ...]


def build_plan(
    backbone: Backbone,
    *,
    schedule: str = "two-stage",
    head_epochs: int = 2,
    epochs: int = 5,
    unfreeze_top: int | None = None,
    epochs_per_stage: int = 1,
    layer: str | None = None,
) -> list[Stage]:
    """The stages a schedule implies for this backbone.

    Args:
        schedule: ``two-stage``, ``gradual`` or ``full`` (every group from the first step, e.g. from scratch).
        head_epochs: epochs of the head-only stage (not used by ``full``).
        epochs: epochs with the backbone (partly) unfrozen; for ``gradual`` the epochs after the last group
            was unfrozen.
        unfreeze_top: only the top K groups are ever unfrozen (partial fine-tuning).
        epochs_per_stage: ``gradual`` only: epochs between two unfreezings.
        layer: the feature layer the head reads; groups after it compute nothing the head sees and stay frozen.
    """
    if schedule not in SCHEDULES:
        raise TransferkitError(f"`schedule` must be one of {', '.join(SCHEDULES)}. Got {schedule!r} instead.")
    groups = backbone.groups_for(layer)
    if unfreeze_top is not None:
        if not 0 <= unfreeze_top <= len(groups):
            below = f" up to `layer={layer!r}`" if len(groups) < len(backbone.layer_groups()) else ""
            raise TransferkitError(
                f"`unfreeze_top` must be between 0 and {len(groups)} (the groups of {backbone.spec}{below}). "
                f"Got {unfreeze_top} instead."
            )
        candidates = groups[len(groups) - unfreeze_top:]
    else:
        candidates = groups
    if schedule == "full":
        plan = [Stage("full", epochs, tuple(candidates))]
    else:
        plan = [Stage("head", head_epochs, ())]
        if schedule == "gradual":  # top group first, one more per stage, then all candidates
            for k in range(1, len(candidates)):
                plan.append(Stage(f"unfreeze {candidates[-k]}", epochs_per_stage, tuple(candidates[-k:])))
        if candidates:
            plan.append(Stage("fine-tune", epochs, tuple(candidates)))
    return [stage for stage in plan if stage.epochs > 0]


def param_groups(
    backbone: Backbone,
    head: nn.Module,
    trainable: tuple[str, ...],
    *,
    lr_head: float,
    lr_backbone: float,
    lr_decay: float = 1.0,
    weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head, then each trainable backbone group with its own learning rate.

    Biases and normalisation weights get no weight decay (the usual AdamW practice).
    Only parameters that require grad are included, so frozen groups have no optimizer state.
    """
    out: list[dict[str, Any]] = []

    def split(params: list[nn.Parameter], lr: float, name: str) -> None:
        decay = [p for p in params if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
        if decay:
            out.append({"params": decay, "lr": lr, "weight_decay": weight_decay, "name": name})
        if no_decay:
            out.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name} (no decay)"})

    split(list(head.parameters()), lr_head, "head")
    groups = [g for g in backbone.layer_groups() if g.name in trainable]
    for depth, group in enumerate(reversed(groups)):  # depth 0 = the group nearest the head
        split(list(group.parameters()), lr_backbone * (lr_decay**depth), group.name)
    # frozen groups whose BatchNorm keeps learning (train_bn): their affine parameters still need an optimizer
    learning_bn = [p for g in backbone.layer_groups() if g.name not in trainable for p in g.parameters()
                   if p.requires_grad]
    if learning_bn:
        out.append({"params": learning_bn, "lr": lr_backbone, "weight_decay": 0.0, "name": "frozen groups' BatchNorm"})
    return out


def apply_stage(backbone: Backbone, stage: Stage, *, train_bn: bool = False) -> None:
    """Freeze every group not trainable in ``stage``; frozen BatchNorm keeps its statistics unless ``train_bn``."""
    backbone.unfreeze()
    frozen = [g.name for g in backbone.layer_groups() if g.name not in stage.trainable_groups]
    if frozen:
        backbone.freeze(frozen, train_bn=train_bn)
