"""How to train: :class:`TrainConfig`, and the one place the strategies' training defaults are written down.

``FineTuneClassifier``, ``ScratchClassifier``, ``learning_curve`` (:class:`~transferkit.CurveConfig`) and the CLI's
training options all read their defaults from here, so the numbers a user gets cannot drift apart between them.
A preset lists only what differs from :class:`TrainConfig`'s own defaults, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """How to train (every field has a sensible default; ``--json`` reports the values used).

    The defaults describe the two-stage fine-tune: the new head alone first (a random head trained jointly with a
    pretrained backbone sends large gradients into it: Kumar et al., LP-FT, ICLR 2022), then every group, the
    backbone at a rate 10x below the head's, frozen BatchNorm statistics, light augmentation and AdamW. A strategy
    starts from its preset (:data:`FINE_TUNE_DEFAULTS`, :data:`SCRATCH_DEFAULTS`), not from these bare defaults;
    ``epochs=5`` here only applies when a :class:`~transferkit.training.Trainer` is driven with a bare
    ``TrainConfig()``.

    Attributes:
        schedule: ``two-stage``, ``gradual`` or ``full`` (see :mod:`transferkit.training.plan`).
        head_epochs: epochs of the head-only stage.
        epochs: epochs with the backbone unfrozen (after the last unfreezing for ``gradual``).
        epochs_per_stage: ``gradual``: epochs between two unfreezings.
        unfreeze_top: only the top K layer groups are ever trained (partial fine-tuning).
        lr_head: learning rate of the new head.
        lr_backbone: learning rate of the top backbone group (typically 10-100x lower than the head's).
        lr_decay: discriminative factor per group going down (1.0 = the same rate everywhere).
        scheduler: ``cosine``, ``one-cycle`` or ``constant``, each with linear warmup.
        warmup_fraction: fraction of each stage's steps spent warming up.
        weight_decay: AdamW weight decay (not applied to biases and norm weights).
        label_smoothing: cross-entropy label smoothing.
        class_weight: ``balanced`` weighs the loss by inverse class frequency; None for plain.
        balanced_sampling: draw batches with equal class probability instead.
        augment: ``none``, ``light``, ``medium`` or ``strong`` (see :mod:`transferkit.training.augment`).
        train_bn: let BatchNorm layers of frozen groups keep learning (default: statistics frozen).
        precise_bn: after training, recompute the running statistics of every BatchNorm layer that trained, as
            exact averages over up to this many training images seen as at inference (no augmentation); 0: off.
            The momentum-averaged statistics lag behind weights that moved fast (a random initialisation, few
            steps) and then collapse eval-mode predictions (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).
        early_stopping: patience in epochs on ``monitor``; a stage that stops early hands its best weights (so far) to
            the next, and the best weights are restored at the end.
        monitor: ``val_accuracy`` (higher is better) or ``val_loss`` (lower is better).
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        batch_size: images per step.
        checkpoint_every: also checkpoint every N steps (epochs always end with one when a run dir is given).
        seed: seeds batch order, augmentation and initialisation of the head.
        num_workers: DataLoader workers for decoding.
    """

    schedule: str = "two-stage"
    head_epochs: int = 2
    epochs: int = 5
    epochs_per_stage: int = 1
    unfreeze_top: int | None = None
    lr_head: float = 1e-3
    lr_backbone: float = 1e-4
    lr_decay: float = 1.0
    scheduler: str = "cosine"
    warmup_fraction: float = 0.05
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    class_weight: str | None = None
    balanced_sampling: bool = False
    augment: str = "light"
    train_bn: bool = False
    precise_bn: int = 0
    early_stopping: int | None = None
    monitor: str = "val_accuracy"
    precision: str = "auto"
    batch_size: int = 32
    checkpoint_every: int | None = None
    seed: int = 0
    num_workers: int = 0


#: ``FineTuneClassifier`` and ``fit --strategy fine-tune``: two head-only epochs, then 3 with every group, a default
#: that finishes in minutes on a CPU (bench/finetune.py's tuned two-stage recipe runs 6; ``epochs=`` / ``--epochs``
#: asks for more). Read-only: the constructor defaults are taken from it when the strategies are imported.
FINE_TUNE_DEFAULTS = TrainConfig(epochs=3)

#: ``ScratchClassifier``, the random-initialisation baseline (and ``transferkit pretrain``): every layer from the
#: first step (``full``, no head stage), one rate for all, 15 epochs at 2e-3 and weight decay 5e-4 (bench/README.md,
#: "Methods and their default settings": a random initialisation needs more steps and a higher rate than a
#: pretrained one, and, learning every weight from few labels, more weight decay). Read-only.
SCRATCH_DEFAULTS = TrainConfig(schedule="full", head_epochs=0, epochs=15, lr_head=2e-3, lr_backbone=2e-3,
                               weight_decay=5e-4)

#: ``learning_curve``'s fine-tune (``CurveConfig.epochs``, ``curve --epochs``): the two-stage recipe of
#: bench/finetune.py, 2 head epochs then 6 with every group (10 instead of 6 bought no accuracy there, bench/README.md);
#: small subsets get more through ``min_steps``.
CURVE_FINE_TUNE_EPOCHS = 6
