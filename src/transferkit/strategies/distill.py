"""Knowledge distillation: a student learns a frozen teacher's soft targets.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (NIPS 2014 Deep Learning Workshop, 2015):
the student minimises ``alpha * T² * KL(p_T || q_T) + (1 - alpha) * CE(y, q)``, where ``p_T`` and ``q_T`` are the
teacher's and the student's probabilities at temperature ``T`` (softmax of logits / T) and ``y`` the hard label. The
``T²`` keeps the soft term's gradients at the scale of the hard one's whatever ``T``. Unlabelled items (``y = -1``)
bring the soft term only: transfer sets larger than the labelled set are where distillation pays.

The teacher is frozen, so its probabilities are computed once, before training (:func:`teacher_targets`), not at
every step. From probabilities ``p`` the tempered ones are ``softmax(log p / T)``, the same as ``softmax(z / T)`` of
its logits ``z``. The student is a :class:`~transferkit.strategies.FineTuneClassifier` (any backbone: timm,
torchvision, packaged, ``small-cnn:``, word vectors) trained by the fine-tuning loop with
:class:`DistillationLoss` as its objective (:func:`fit_distilled`); the result is a fitted fine-tune model, saved
as a normal bundle.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import DataError, TransferkitError
from .._utils import resolve_device, set_seed
from ..data.seen import training_digests
from ..training import Trainer
from .feature_extraction import resolve_backbone
from .fine_tune import FineTuneClassifier


class DistillationLoss(nn.Module):
    """The fine-tuning loop's ``objective`` for distillation (:class:`~transferkit.training.Trainer`).

    The loop hands an objective ``(logits, labels)``; here the "labels" are row numbers into the target table
    given at construction — the hard label (-1: unlabelled) and the teacher's probabilities of each training item —
    so that soft targets travel through the loop's sampler, checkpoints and distributed split like labels do.

    Args:
        hard: ``(N,)`` class indices, -1 for unlabelled items.
        soft: ``(N, K)`` teacher probabilities (rows sum to 1).
        temperature: T > 0; 1 matches the plain probabilities, higher softens them.
        alpha: weight of the soft term in [0, 1]; 0 is hard-label cross-entropy only (the labels-only student).
    """

    def __init__(self, hard: np.ndarray, soft: np.ndarray, temperature: float = 4.0, alpha: float = 0.5):
        super().__init__()
        check_distillation_params(temperature, alpha)
        self.hard = torch.as_tensor(np.asarray(hard), dtype=torch.long)
        log_p = torch.as_tensor(np.asarray(soft), dtype=torch.float32).clamp_min(1e-8).log()
        self.soft_t = (log_p / temperature).softmax(-1)  # the teacher's tempered probabilities, once
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def forward(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.cpu()
        hard = self.hard[rows].to(logits.device)
        loss = logits.new_zeros(())
        if self.alpha > 0:
            target = self.soft_t[rows].to(logits.device)
            log_q = nn.functional.log_softmax(logits / self.temperature, -1)
            kl = nn.functional.kl_div(log_q, target, reduction="batchmean")
            loss = loss + self.alpha * self.temperature ** 2 * kl
        labelled = hard >= 0
        if self.alpha < 1 and bool(labelled.any()):
            loss = loss + (1 - self.alpha) * nn.functional.cross_entropy(logits[labelled], hard[labelled])
        return loss

    def correct(self, logits: torch.Tensor, rows: torch.Tensor) -> float:
        """Items whose arg-max is the teacher's (what the student is taught on every item)."""
        return float((logits.argmax(1).cpu() == self.soft_t[rows.cpu()].argmax(1)).sum())

    def validation_sums(self, logits: torch.Tensor, rows: torch.Tensor) -> tuple[float, float, int]:
        """Hard-label cross-entropy sum, correct and count over the labelled rows."""
        hard = self.hard[rows.cpu()].to(logits.device)
        keep = hard >= 0
        if not bool(keep.any()):
            return 0.0, 0.0, 0
        loss = float(nn.functional.cross_entropy(logits[keep], hard[keep], reduction="sum"))
        return loss, float((logits[keep].argmax(1) == hard[keep]).sum()), int(keep.sum())


def check_distillation_params(temperature: Any, alpha: Any) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise TransferkitError(f"`temperature` must be a number > 0 (Hinton et al. used 1-20; 4 is common). Got "
                               f"{temperature!r} instead.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise TransferkitError(f"`alpha` (the weight of the teacher's soft targets) must be in [0, 1]. Got {alpha!r} "
                               "instead.")


def teacher_targets(teacher: Any, ds: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """The frozen teacher's probabilities on ``ds``, once: ``(proba (n_read, K), index of read items, skipped)``."""
    proba, index, skipped = teacher.predict_proba_details(ds)
    return np.asarray(proba, dtype=np.float32), np.asarray(index, dtype=np.int64), skipped


def fit_distilled(student: FineTuneClassifier, data: Any, hard: np.ndarray, soft: np.ndarray | None,
                  classes: list[str], *, temperature: float = 4.0, alpha: float = 0.5,
                  epochs: int | None = None) -> FineTuneClassifier:
    """Train ``student`` (unfitted; its parameters say the backbone, schedule and rates) on ``data``.

    Args:
        student: the student's :class:`FineTuneClassifier` (its ``epochs`` unless ``epochs`` is given).
        data: every training item, labelled or not (an ``ImageDataset`` or ``TextDataset``; its labels are not read).
        hard: ``(N,)`` indices into ``classes``, -1 for unlabelled items.
        soft: ``(N, K)`` teacher probabilities over ``classes``; None with ``alpha=0`` (labels only).
        classes: the class names (the teacher's).
        temperature, alpha: as :class:`DistillationLoss`.
        epochs: epochs of the last stage instead of ``student.epochs`` (a budget in steps, matched by the caller).

    Returns:
        ``student``, fitted: a fine-tune model whose ``fit_info_["distillation"]`` records the settings.

    Raises:
        DataError: sizes that do not match, or no labelled item when ``alpha < 1``.
    """
    start = time.perf_counter()
    hard = np.asarray(hard, dtype=np.int64)
    if soft is None:
        if alpha != 0:
            raise TransferkitError("`soft` targets are needed unless `alpha=0` (labels only).")
        soft = np.full((len(hard), len(classes)), 1.0 / len(classes), dtype=np.float32)
    if len(hard) != len(data) or soft.shape != (len(data), len(classes)):
        raise DataError(f"Got {len(data)} items, {len(hard)} hard labels and soft targets of shape {soft.shape}; "
                        f"they must match ({len(classes)} classes).")
    if alpha < 1 and not (hard >= 0).any():
        raise DataError("No labelled item to learn the hard labels from; label some items or use `alpha=1`.")
    if epochs is not None:
        student.set_params(epochs=epochs)
    set_seed(student.seed)
    config = student.train_config()
    backbone = resolve_backbone(student.backbone, student.pretrained)
    if backbone is student.backbone:  # training changes weights: never the caller's object
        backbone = copy.deepcopy(backbone)
    if getattr(data, "modality", "image") != backbone.modality:
        raise DataError(f"The student reads {backbone.modality}s but the data holds "
                        f"{getattr(data, 'modality', 'image')}s; choose a student of the teacher's modality.")
    if backbone.modality != "image":
        config = dataclasses.replace(config, augment="none")
    train = data.subset(np.arange(len(data)))
    train.labels = np.arange(len(data))  # row numbers into the objective's target table
    train.classes = list(classes)
    objective = DistillationLoss(hard, soft, temperature, alpha)
    torch.manual_seed(student.seed)
    model, head_config = student._build(backbone, len(classes))
    trainer = Trainer(config, resolve_device(student.device), None, progress=student.progress, objective=objective)
    student.history_ = trainer.fit(model, train)
    plan = [dataclasses.asdict(s) for s in trainer.plan(model)]
    model.cpu()
    student.model_ = model
    student.backbone_ = model.backbone
    student.layer_ = model.layer
    student.head_module_ = model.head
    student.head_config_ = head_config
    student.tasks_ = None
    student.head_classes_ = np.arange(len(classes))
    student.classes_ = np.asarray(classes)
    student.train_items_ = training_digests(data)
    labelled = int((hard >= 0).sum())
    student.fit_info_ = {
        "strategy": student.strategy_name, "train_images": int(len(data)), "modality": backbone.modality,
        "inputs": backbone.describe_inputs(data), "val_images": 0, "skipped": [], "history": student.history_,
        "train_config": dataclasses.asdict(config), "plan": plan, "lr_find": None,
        "distillation": {"temperature": float(temperature), "alpha": float(alpha), "labelled_items": labelled,
                         "unlabelled_items": int(len(data) - labelled)},
        "seconds": round(time.perf_counter() - start, 3),
    }
    return student


__all__ = ["DistillationLoss", "check_distillation_params", "fit_distilled", "teacher_targets"]
