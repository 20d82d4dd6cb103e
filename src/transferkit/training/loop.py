"""The fine-tuning loop: staged unfreezing, discriminative learning rates, warmup schedules, early stopping,
atomic checkpoints with exact resume, clean Ctrl-C, ``metrics.jsonl`` and a training-curve plot.

One loop serves fine-tuning, the from-scratch baseline and pretraining; strategies only choose the plan.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._dist import accelerator, all_reduce_sum, is_main_process, launched_distributed, rank_and_world
from .._errors import TransferkitError
from .._progress import progress_bar, stderr_console
from .._utils import atomic_path, autocast, move_to
from ..data import ImageDataset
from ..data.augment import batch_mix
from ..data.loader import backbone_batches
from .checkpoint import (
    load_checkpoint,
    load_optimizer_state,
    optimizer_state,
    remove_partial_writes,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig
from .lr import make_scheduler
from .plan import Stage, apply_stage, build_plan, param_groups
from .plots import save_training_curves


class Interrupted(TransferkitError):
    """Training was stopped by Ctrl-C after saving a checkpoint."""


@contextlib.contextmanager
def _graceful_sigint() -> Iterator[dict[str, bool]]:
    """First Ctrl-C sets a flag the loop checks after each step; a second one interrupts at once."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag["stop"] = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    """Train ``model`` (a :class:`~transferkit.strategies._train.TransferModel`) on images.

    Args:
        config: a :class:`TrainConfig`.
        device: where to train.
        run_dir: where checkpoints, ``metrics.jsonl`` and ``training_curves.png`` go (None: nowhere).
        progress: show progress bars.
        objective: a loss of ``(logits, labels)`` other than cross-entropy over one label per item (e.g.
            :class:`~transferkit.heads.MultiTaskLoss` over ``(N, T)`` labels), with ``correct(logits, labels)`` and
            ``validation_sums(logits, labels)`` → ``(loss sum, correct, count)`` for the report. It replaces
            ``class_weight`` and ``label_smoothing``; ``balanced_sampling`` and ``augment='strong'`` are refused.
    """

    def __init__(self, config: TrainConfig, device: torch.device, run_dir: Path | None = None, progress: bool = True,
                 objective: Any = None):
        self.distributed = False
        self.objective = objective
        self.config = config
        self.device = device
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress

    # -- pieces ----------------------------------------------------------------------------------------
    def plan(self, model: Any) -> list[Stage]:
        c = self.config
        return build_plan(model.backbone, schedule=c.schedule, head_epochs=c.head_epochs, epochs=c.epochs,
                          unfreeze_top=c.unfreeze_top, epochs_per_stage=c.epochs_per_stage,
                          layer=getattr(model, "layer", None))

    def _loss(self, labels: torch.Tensor, num_classes: int) -> nn.Module:
        weight = None
        if self.config.class_weight == "balanced":
            counts = torch.bincount(labels, minlength=num_classes).float()
            present = counts > 0  # a class without training images gets weight 0, not the largest weight
            weight = torch.where(present, counts.sum() / (int(present.sum()) * counts.clamp(min=1)), 0.0)
            weight = weight.to(self.device)
        elif self.config.class_weight is not None:
            raise TransferkitError(f"class_weight must be 'balanced' or None. Got {self.config.class_weight!r}.")
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=self.config.label_smoothing)

    def _epoch_order(self, labels: torch.Tensor, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        if self.config.balanced_sampling:
            counts = torch.bincount(labels).float()
            weights = 1.0 / counts[labels]
            return torch.multinomial(weights, len(labels), replacement=True, generator=g)
        return torch.randperm(len(labels), generator=g)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.config.precision)

    def _optimizer(self, model: Any, stage: Stage) -> torch.optim.Optimizer:
        c = self.config
        apply_stage(model.backbone, stage, train_bn=c.train_bn)
        groups = param_groups(model.backbone, model.head, stage.trainable_groups, lr_head=c.lr_head,
                              lr_backbone=c.lr_backbone, lr_decay=c.lr_decay, weight_decay=c.weight_decay)
        return torch.optim.AdamW(groups)

    @torch.inference_mode()
    def validate(self, model: Any, val: ImageDataset, loss_fn: nn.Module) -> dict[str, float]:
        model.eval()
        rank, world = rank_and_world()
        if world > 1:
            val = val.subset(np.arange(rank, len(val), world))
        loader = backbone_batches(model.backbone, val, batch_size=self.config.batch_size,
                                  num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda")
        total, correct, loss_sum = 0, 0.0, 0.0
        assert val.labels is not None
        labels = torch.as_tensor(val.labels)
        for batch in loader:
            if not len(batch["index"]):
                continue
            y = labels[batch["index"]].to(self.device)
            with self._autocast():
                logits = model(move_to(batch["inputs"], self.device)).float()
            part = self._validation_sums(logits, y)
            loss_sum, correct, total = loss_sum + part[0], correct + part[1], total + part[2]
        model.train()
        sums = all_reduce_sum([loss_sum, correct, total])
        return {"val_loss": sums[0] / max(sums[2], 1), "val_accuracy": sums[1] / max(sums[2], 1)}

    def _validation_sums(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float, int]:
        if self.objective is not None:
            return self.objective.validation_sums(logits, y)
        loss = float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        return loss, int((logits.argmax(1) == y).sum()), len(y)

    def _correct(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        if self.objective is not None:
            return float(self.objective.correct(logits, y))
        return int((logits.argmax(1) == y).sum())

    # -- the loop --------------------------------------------------------------------------------------
    def fit(self, model: Any, train: ImageDataset, val: ImageDataset | None = None,
            resume: bool = False) -> list[dict[str, Any]]:
        """Run the plan; returns one history row per epoch. With ``resume``, continue from ``run_dir``."""
        c = self.config
        assert train.labels is not None
        self.distributed = launched_distributed()
        if self.distributed and self.device.type == "cuda":  # Accelerate owns the process group and rank's GPU
            self.device = accelerator().device
        model.to(self.device).to(memory_format=torch.channels_last)
        plan = self.plan(model)
        labels = torch.as_tensor(train.labels)
        num_classes = len(train.classes)
        loss_fn = self.objective if self.objective is not None else self._loss(labels, num_classes)
        # augmentation presets are image transforms: text trains on the texts as they are
        augment = c.augment if model.backbone.modality == "image" else "none"
        if self.objective is not None and (augment == "strong" or c.balanced_sampling):
            what = "`augment='strong'` mixes" if augment == "strong" else "`balanced_sampling` samples by"
            raise TransferkitError(f"{what} one label per item, and this training has several (one per task); "
                                   "use `augment='medium'` and no `balanced_sampling`.")
        mix = batch_mix(augment, num_classes) if self.objective is None else None
        if augment not in ("none", "light", "medium", "strong"):
            raise TransferkitError(f"augment must be one of none, light, medium, strong. Got {augment!r} instead.")
        world = rank_and_world()[1]  # each process takes ceil(N / world) images an epoch (see _train_epoch)
        steps_per_epoch = max(1, math.ceil(math.ceil(len(train) / world) / c.batch_size))
        higher_is_better = c.monitor != "val_loss"
        if c.early_stopping is not None and c.early_stopping < 1:
            raise TransferkitError(f"early_stopping is a patience in epochs, at least 1. Got {c.early_stopping}.")
        if c.monitor not in ("val_accuracy", "val_loss"):
            raise TransferkitError(f"monitor must be val_accuracy or val_loss. Got {c.monitor!r} instead.")

        # Where the run is: stage, epoch within it, steps done in the current epoch (the sampler position),
        # global epoch and step counters, and the running sums of the current epoch.
        pos: dict[str, Any] = {"stage": 0, "epoch_in_stage": 0, "step_in_epoch": 0, "epoch": 0, "step": 0,
                               "running": [0.0, 0, 0]}
        es: dict[str, Any] = {"best": None, "best_epoch": None, "bad_epochs": 0}
        history: list[dict[str, Any]] = []
        best_state: dict[str, torch.Tensor] | None = None
        if resume and self.run_dir is None:
            raise TransferkitError("`resume=True` continues a run from its checkpoints; give the `run_dir` they are in.")
        if self.run_dir is not None and is_main_process():
            remove_partial_writes(self.run_dir)  # a kill -9 while writing: never read, only in the way
        loaded = load_checkpoint(self.run_dir) if (resume and self.run_dir is not None) else None
        if resume and loaded is None and is_main_process():
            # killed before its first checkpoint (or never started): what there is to resume is the whole run
            stderr_console.print(f"[yellow]note:[/yellow] nothing to resume in {str(self.run_dir)!r} (no checkpoint "
                                 "yet); starting from the beginning.", highlight=False, soft_wrap=True)
        if loaded is not None:
            tensors, meta = loaded
            if meta["config"] != json.loads(json.dumps(asdict(c))):
                raise TransferkitError(
                    f"{str(self.run_dir)!r} was started with other training settings; resume with the same options "
                    "or choose another `run_dir`."
                )
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
            best_state = best or None
            pos, es, history = meta["position"], meta["early_stopping"], meta["history"]

        sigint_guard = contextlib.nullcontext({"stop": False}) if self.distributed else _graceful_sigint()
        with sigint_guard as sigint:
            for stage_index in range(pos["stage"], len(plan)):
                stage = plan[stage_index]
                optimizer = self._optimizer(model, stage)
                # Freeze first, then wrap: DDP registers only trainable parameters, so frozen groups cause no
                # unused-parameter errors and no find_unused_parameters cost; each stage re-wraps.
                net = accelerator().prepare_model(model) if self.distributed else model
                scheduler = make_scheduler(optimizer, c.scheduler, stage.epochs * steps_per_epoch, c.warmup_fraction)
                if loaded is not None and stage_index == pos["stage"]:
                    tensors, meta = loaded
                    load_optimizer_state(optimizer, tensors, meta["optimizer"])
                    scheduler.load_state_dict(meta["scheduler"])
                    set_rng_state(tensors, meta["rng"])
                else:
                    pos.update(stage=stage_index, epoch_in_stage=0, step_in_epoch=0)
                    es["bad_epochs"] = 0
                loaded = None
                model.train()
                while pos["epoch_in_stage"] < stage.epochs:
                    if c.early_stopping is not None and es["bad_epochs"] >= c.early_stopping:
                        history[-1]["early_stopped"] = True
                        if best_state is not None:  # the next stage starts from the best weights, not the last
                            model.load_state_dict(best_state)
                        break
                    if pos["step_in_epoch"] == 0:
                        pos["epoch"] += 1
                        pos["running"] = [0.0, 0, 0]
                    row = self._train_epoch(net, model, train, labels, augment, mix, loss_fn, optimizer, scheduler,
                                            stage, pos, es, history, best_state, sigint)
                    if val is not None and len(val):
                        row.update(self.validate(model, val, loss_fn))
                    history.append(row)
                    score = row.get(c.monitor)
                    if score is not None:
                        improved = es["best"] is None or (score > es["best"] if higher_is_better else score < es["best"])
                        if improved:
                            es.update(best=score, best_epoch=row["epoch"], bad_epochs=0)
                            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                        else:
                            es["bad_epochs"] += 1
                    pos["epoch_in_stage"] += 1
                    pos["step_in_epoch"] = 0
                    self._write_metrics(history)
                    self._checkpoint(model, optimizer, scheduler, pos, es, history, best_state)
                if stage_index + 1 < len(plan):
                    pos.update(stage=stage_index + 1, epoch_in_stage=0, step_in_epoch=0)
        if best_state is not None and c.early_stopping is not None:
            model.load_state_dict(best_state)
        if c.precise_bn and history:
            recalibrate_batchnorm(model, train, self.device, max_images=c.precise_bn, batch_size=c.batch_size,
                                  seed=c.seed, autocast_ctx=self._autocast)
        model.backbone.unfreeze()
        model.eval()
        self._write_metrics(history, final=True)
        return history

    def _train_epoch(self, net: Any, model: Any, train: ImageDataset, labels: torch.Tensor, augment: str, mix: Any,
                     loss_fn: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, stage: Stage,
                     pos: dict[str, Any], es: dict[str, Any], history: list[dict[str, Any]],
                     best_state: dict[str, torch.Tensor] | None, sigint: dict[str, bool]) -> dict[str, Any]:
        c = self.config
        start = time.perf_counter()
        order = self._epoch_order(labels, pos["epoch"])
        rank, world = rank_and_world()
        if world > 1:  # every rank takes every world-th image of the same order (padded: equal step counts)
            pad = (-len(order)) % world
            order = order.repeat(math.ceil((len(order) + pad) / len(order)))[:len(order) + pad][rank::world]  # wraps
            if pos["step_in_epoch"] == 0:
                torch.manual_seed(c.seed * 100_003 + pos["epoch"] * world + rank)  # per-rank augmentation
        skip = pos["step_in_epoch"] * c.batch_size
        # worker processes seed their augmentation from this: a new seed each epoch and process (a fixed one would
        # repeat every epoch's augmentations; num_workers=0 uses the global generator, seeded above)
        worker_seed = int(np.random.SeedSequence([c.seed, pos["epoch"], rank]).generate_state(1)[0])
        loader = backbone_batches(model.backbone, train, indices=order[skip:].numpy(), batch_size=c.batch_size,
                                  num_workers=c.num_workers, pin_memory=self.device.type == "cuda",
                                  augment=augment, seed=worker_seed)
        running = pos["running"]  # [loss sum, correct, seen], kept in checkpoints so a resumed epoch reports the same
        with progress_bar(len(order) - skip, f"{stage.name} epoch {pos['epoch']}",
                          self.progress and is_main_process()) as advance:
            for batch in loader:
                if len(batch["index"]):
                    x = move_to(batch["inputs"], self.device)
                    y = labels[batch["index"]].to(self.device)
                    target = y
                    if mix is not None and len(y) > 1:
                        x, target = mix(x, y)
                    with self._autocast():
                        logits = net(x)
                    loss = loss_fn(logits.float(), target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    running[0] += float(loss.detach()) * len(y)
                    running[1] += self._correct(logits.detach(), y)
                    running[2] += len(y)
                scheduler.step()
                pos["step_in_epoch"] += 1
                pos["step"] += 1
                advance(len(batch["index"]) + len(batch["bad"]), loss=f"{running[0] / max(running[2], 1):.3f}")
                if c.checkpoint_every and pos["step"] % c.checkpoint_every == 0:
                    self._checkpoint(model, optimizer, scheduler, pos, es, history, best_state)
                if sigint["stop"]:
                    self._checkpoint(model, optimizer, scheduler, pos, es, history, best_state)
                    where = f" (checkpoint in {self.run_dir})" if self.run_dir else ""
                    raise Interrupted(f"Interrupted at step {pos['step']}{where}; continue with `resume=True`.")
        totals = all_reduce_sum(list(running))
        return {"epoch": pos["epoch"], "stage": stage.name, "loss": totals[0] / max(totals[2], 1),
                "train_accuracy": totals[1] / max(totals[2], 1),
                "lr": {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)},
                "seconds": round(time.perf_counter() - start, 3)}

    def _checkpoint(self, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, pos: dict[str, Any],
                    es: dict[str, Any], history: list[dict[str, Any]],
                    best_state: dict[str, torch.Tensor] | None) -> None:
        if self.run_dir is None or not is_main_process():
            return
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        if best_state is not None:
            tensors.update({f"best.{k}": v for k, v in best_state.items()})
        opt_tensors, opt_meta = optimizer_state(optimizer)
        rng_tensors, rng_meta = rng_state()
        tensors.update(opt_tensors)
        tensors.update(rng_tensors)
        meta = {"config": asdict(self.config), "position": dict(pos), "early_stopping": dict(es),
                "history": history, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), "rng": rng_meta}
        save_checkpoint(self.run_dir, pos["step"], tensors, meta)

    def _write_metrics(self, history: list[dict[str, Any]], final: bool = False) -> None:
        if self.run_dir is None or not is_main_process():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.run_dir / "metrics.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in history))
        if final and history:
            save_training_curves(history, self.run_dir / "training_curves.png")


@torch.no_grad()
def recalibrate_batchnorm(model: Any, data: ImageDataset, device: torch.device, *, max_images: int,
                          batch_size: int = 32, seed: int = 0,
                          autocast_ctx: Any = contextlib.nullcontext) -> int:
    """PreciseBN: exact running statistics for the BatchNorm layers that train (frozen ones keep theirs).

    Returns:
        How many BatchNorm layers were recalibrated.
    """
    model.train()  # frozen groups stay in eval mode (Backbone.train): their statistics are the source's
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    model.eval()
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    kept = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]  # restored if no batch can run
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    order = np.random.default_rng(seed).permutation(len(data))[:max_images]
    loader = backbone_batches(model.backbone, data, indices=np.sort(order), batch_size=batch_size)
    batches = 0
    try:
        for batch in loader:
            if len(batch["index"]) > 1:  # BatchNorm needs two values per channel
                with autocast_ctx():
                    model(move_to(batch["inputs"], device))
                batches += 1
    finally:
        for m, momentum, state in zip(norms, momenta, kept, strict=True):
            m.momentum = momentum
            if not batches:  # one image, or batches of one: keep the statistics training left, not mean 0, var 1
                m.load_state_dict(state)
        model.eval()
    return len(norms) if batches else 0
