"""Fine-tuning: train a new head on the frozen backbone, then unfreeze the backbone at lower learning rates.

The two-stage recipe of Yosinski et al., "How transferable are features in deep neural networks?" (NeurIPS
2014) and Kumar et al., "Fine-Tuning can Distort Pretrained Features" (ICLR 2022; LP-FT): a random head
trained jointly with the backbone first sends large gradients into pretrained weights, so the head goes first.
Gradual unfreezing and discriminative learning rates follow ULMFiT (Howard & Ruder, ACL 2018). The loop is
:class:`transferkit.training.Trainer`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .._dist import is_main_process
from .._errors import TransferkitError
from .._utils import resolve_device, set_seed
from ..backbones import Backbone
from ..backbones.adapters import DEFAULT_LORA_RANK, PEFT_METHODS, LoraAdapters
from ..backbones.prompt_tuning import DEFAULT_PROMPT_TOKENS, PromptTuning
from ..data import ImageDataset, MultiTaskDataset, check_trainable, multitask_split, stratified_split
from ..data.loader import backbone_batches
from ..data.multitask import check_tasks_trainable
from ..data.seen import training_digests
from ..features.extract import DEFAULT_MAX_BAD_FRACTION, check_bad_fraction
from ..heads import MultiTaskHead, MultiTaskLoss, build_head_module, multitask_config
from ..heads.persist import module_head_state, restore_module_head
from ..training import FINE_TUNE_DEFAULTS, TrainConfig, Trainer
from ..training.checkpoint import checkpoint_config
from . import _multitask
from ._base import TransferClassifier, as_dataset, class_values
from ._train import TransferModel, predict_logits, scan_images
from .feature_extraction import resolve_backbone

# TrainConfig fields that are also constructor parameters of the image-training strategies.
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


class FineTuneClassifier(TransferClassifier):
    """Fine-tune a pretrained backbone with a new linear head.

    The training defaults are :data:`~transferkit.training.FINE_TUNE_DEFAULTS` (each with its reason there).

    Args:
        backbone: spec or :class:`Backbone`.
        layer: feature layer the head reads (default: pre-logits).
        schedule: ``two-stage`` (head, then all groups), ``gradual`` (head, then one more group per stage from
            the top) or ``full`` (everything from the first step).
        head_epochs: epochs of the head-only stage (backbone frozen, BatchNorm statistics fixed).
        epochs: epochs with the backbone unfrozen (after the last unfreezing for ``gradual``).
        epochs_per_stage: ``gradual``: epochs between two unfreezings.
        unfreeze_top: only the top K layer groups ever learn (partial fine-tuning).
        lr_head: learning rate of the head.
        lr_backbone: learning rate of the top backbone group (typically 10-100x lower than the head's).
        lr_decay: discriminative factor per group going down towards the input (1.0: one rate for all).
        scheduler: ``cosine``, ``one-cycle`` or ``constant``, each with linear warmup of ``warmup_fraction``.
        weight_decay, label_smoothing: regularisation.
        class_weight: ``balanced`` weighs the loss by inverse class frequency.
        balanced_sampling: sample batches with equal class probability.
        augment: ``none``, ``light``, ``medium`` or ``strong`` (RandAugment + MixUp/CutMix).
        train_bn: let BatchNorm in frozen groups keep learning (default: frozen statistics).
        precise_bn: recompute the statistics of the BatchNorm layers that trained over up to this many training
            images after training (0: off); rescues eval-mode accuracy when the weights moved fast.
        early_stopping: patience in epochs; needs validation data (``fit(validation=...)`` or, when absent,
            ``validation_fraction`` of the training data is held out). The best weights are restored.
        monitor: ``val_accuracy`` or ``val_loss``.
        validation_fraction: held-out share used for early stopping when no validation set is given.
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        batch_size: images per step.
        image_size: train and predict at this square size instead of the weights' own.
        pretrained: False trains the same architecture from a random initialisation.
        run_dir: where checkpoints, ``metrics.jsonl`` and ``training_curves.png`` go; needed for ``resume``.
        checkpoint_every: also checkpoint every N steps (every epoch always, when ``run_dir`` is set).
        peft: ``lora`` trains LoRA adapters on the attention of a transformer text backbone instead of its
            weights (merged into them after training; see :mod:`transferkit.backbones.adapters`);
            ``prompt-tuning`` trains ``prompt_tokens`` virtual tokens prepended to every text, the encoder frozen
            (kept in the backbone, which then runs with them; see :mod:`transferkit.backbones.prompt_tuning`). The
            head is trained as usual. Adapters and prompts learn at ``lr_backbone`` (LoRA usually wants about
            1e-3, a prompt 1e-2 or more).
        lora_rank: rank of the LoRA adapters.
        prompt_tokens: ``prompt-tuning``: number of virtual tokens.
        prompt_init: ``prompt-tuning``: a text whose token embeddings the prompt starts from (default: embeddings
            of randomly sampled vocabulary tokens).
        lr_find: run a learning-rate range test for the head (backbone frozen) first and use its suggestion as
            ``lr_head``; the model is restored exactly afterwards (see :func:`transferkit.training.lr_find`).
        task_weighting: fitted on several tasks (a :class:`~transferkit.data.MultiTaskDataset`, or ``y`` as
            ``{task: labels}``): one shared backbone, one linear head per task, trained on ``equal``-weighted
            task losses or with ``uncertainty`` weighting (Kendall et al. 2018, learned log-variances); items with
            no label for a task are masked out of its loss (:mod:`transferkit.heads.multitask`).
        max_bad_fraction, device, num_workers, seed, progress: as everywhere.

    Example:
        >>> clf = FineTuneClassifier("packaged:efficientnet_lite0", schedule="gradual", lr_decay=0.5)
        >>> clf.fit(train, validation=val).score(test)
    """

    strategy_name = "fine-tune"

    def __init__(
        self,
        backbone: str | Backbone = "packaged:efficientnet_lite0",
        layer: str | None = None,
        schedule: str = FINE_TUNE_DEFAULTS.schedule,
        head_epochs: int = FINE_TUNE_DEFAULTS.head_epochs,
        epochs: int = FINE_TUNE_DEFAULTS.epochs,
        epochs_per_stage: int = FINE_TUNE_DEFAULTS.epochs_per_stage,
        unfreeze_top: int | None = FINE_TUNE_DEFAULTS.unfreeze_top,
        lr_head: float = FINE_TUNE_DEFAULTS.lr_head,
        lr_backbone: float = FINE_TUNE_DEFAULTS.lr_backbone,
        lr_decay: float = FINE_TUNE_DEFAULTS.lr_decay,
        scheduler: str = FINE_TUNE_DEFAULTS.scheduler,
        warmup_fraction: float = FINE_TUNE_DEFAULTS.warmup_fraction,
        weight_decay: float = FINE_TUNE_DEFAULTS.weight_decay,
        label_smoothing: float = FINE_TUNE_DEFAULTS.label_smoothing,
        class_weight: str | None = FINE_TUNE_DEFAULTS.class_weight,
        balanced_sampling: bool = FINE_TUNE_DEFAULTS.balanced_sampling,
        augment: str = FINE_TUNE_DEFAULTS.augment,
        train_bn: bool = FINE_TUNE_DEFAULTS.train_bn,
        precise_bn: int = FINE_TUNE_DEFAULTS.precise_bn,
        early_stopping: int | None = FINE_TUNE_DEFAULTS.early_stopping,
        monitor: str = FINE_TUNE_DEFAULTS.monitor,
        validation_fraction: float = 0.1,
        precision: str = FINE_TUNE_DEFAULTS.precision,
        batch_size: int = FINE_TUNE_DEFAULTS.batch_size,
        image_size: int | None = None,
        pretrained: bool = True,
        run_dir: str | None = None,
        checkpoint_every: int | None = FINE_TUNE_DEFAULTS.checkpoint_every,
        lr_find: bool = False,
        peft: str | None = None,
        lora_rank: int = DEFAULT_LORA_RANK,
        prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
        prompt_init: str | None = None,
        task_weighting: str = "equal",
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        device: str = "auto",
        num_workers: int = FINE_TUNE_DEFAULTS.num_workers,
        seed: int = FINE_TUNE_DEFAULTS.seed,
        progress: bool = True,
    ):
        self.lr_find = lr_find
        self.peft = peft
        self.lora_rank = lora_rank
        self.prompt_tokens = prompt_tokens
        self.prompt_init = prompt_init
        self.task_weighting = task_weighting
        self.backbone = backbone
        self.layer = layer
        self.schedule = schedule
        self.head_epochs = head_epochs
        self.epochs = epochs
        self.epochs_per_stage = epochs_per_stage
        self.unfreeze_top = unfreeze_top
        self.lr_head = lr_head
        self.lr_backbone = lr_backbone
        self.lr_decay = lr_decay
        self.scheduler = scheduler
        self.warmup_fraction = warmup_fraction
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.balanced_sampling = balanced_sampling
        self.augment = augment
        self.train_bn = train_bn
        self.precise_bn = precise_bn
        self.early_stopping = early_stopping
        self.monitor = monitor
        self.validation_fraction = validation_fraction
        self.precision = precision
        self.batch_size = batch_size
        self.image_size = image_size
        self.pretrained = pretrained
        self.run_dir = run_dir
        self.checkpoint_every = checkpoint_every
        self.max_bad_fraction = max_bad_fraction
        self.device = device
        self.num_workers = num_workers
        self.seed = seed
        self.progress = progress

    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` these parameters describe."""
        params = self.get_params(deep=False)
        return TrainConfig(**{k: v for k, v in params.items() if k in _TRAIN_FIELDS})

    def _build(self, backbone: Backbone, n_classes: int | list[int]) -> tuple[TransferModel, dict[str, Any]]:
        """The model: a linear head of ``n_classes`` outputs, or one per task (a list of their sizes)."""
        if self.image_size is not None:
            backbone.preprocessing = backbone.preprocessing.with_image_size(self.image_size)
        layer = backbone._check_layer(self.layer)
        linear = [{"type": "linear", "in_features": backbone.layer_dim(layer), "out_features": k,
                   "standardize": False} for k in (n_classes if isinstance(n_classes, list) else [n_classes])]
        config = multitask_config(linear, self.task_weighting) if isinstance(n_classes, list) else linear[0]
        return TransferModel(backbone, build_head_module(config), layer), config

    def fit(self, X: Any, y: Any = None, *, validation: Any = None, resume: bool = False) -> FineTuneClassifier:
        """Train on ``X``.

        Args:
            X, y: labeled images.
            validation: labeled images evaluated after every epoch (history, early stopping).
            resume: continue the interrupted run saved in ``run_dir``.
        """
        start = time.perf_counter()
        self._check_peft()
        set_seed(self.seed)
        config = self.train_config()
        backbone = resolve_backbone(self.backbone, self.pretrained)
        ds = as_dataset(X, y, modality=backbone.modality)
        multitask = isinstance(ds, MultiTaskDataset)
        _multitask.check_weighting(self.task_weighting, multitask)
        check = check_tasks_trainable if multitask else check_trainable
        check(ds)
        if backbone.modality != "image" and config.augment not in ("none", "light"):
            # "light" is the default; anything else was asked for and cannot be honoured
            warnings.warn(f"augment={config.augment!r} is an image preset; {backbone.modality} trains without "
                          "augmentation.", UserWarning, stacklevel=2)
        if backbone is self.backbone:  # training changes weights and preprocessing: never the caller's object
            backbone = copy.deepcopy(backbone)
        good, skipped = scan_images(ds, getattr(backbone.preprocessing, "channels", 3), self.num_workers)
        check_bad_fraction(len(skipped), len(ds), self.max_bad_fraction, ds.name or "the dataset")
        train = ds.subset(good)
        check(train)
        val = as_dataset(validation, modality=backbone.modality) if validation is not None else None
        if val is not None and getattr(val, "tasks", None) != getattr(ds, "tasks", None):
            raise TransferkitError(f"`validation` must be labelled for the same tasks as X ({getattr(ds, 'tasks', None)})"
                                   f". Got {getattr(val, 'tasks', None)} instead.")
        if val is None and self.early_stopping is not None:
            train, val = (multitask_split if multitask else stratified_split)(train, self.validation_fraction,
                                                                              seed=self.seed)
        device = resolve_device(self.device)
        torch.manual_seed(self.seed)
        adapters: LoraAdapters | PromptTuning | None = None
        if self.peft == "lora":
            adapters = LoraAdapters(backbone, self.lora_rank)
        elif self.peft == "prompt-tuning":
            adapters = PromptTuning(backbone, self.prompt_tokens, self.prompt_init)
        model, head_config = self._build(backbone, [len(c) for c in ds.classes] if multitask else len(ds.classes))
        objective = MultiTaskLoss(cast(MultiTaskHead, model.head), _multitask.class_weights(train, config.class_weight),
                                  config.label_smoothing) if multitask else None
        run_dir = Path(self.run_dir) if self.run_dir else None
        lr_found = None
        if self.lr_find and resume and run_dir is not None:  # the rate the interrupted run found, not a new search
            recorded = checkpoint_config(run_dir)
            if recorded is not None:
                lr_found = {"suggested_lr": recorded["lr_head"], "steps": None, "resumed": True}
        if self.lr_find and lr_found is None:  # a new run, or a resume with no checkpoint yet: it starts over
            lr_found = self._find_head_lr(model, train, objective)
        if lr_found is not None:
            config = dataclasses.replace(config, lr_head=lr_found["suggested_lr"])
        trainer = Trainer(config, device, run_dir, progress=self.progress, objective=objective)
        self.history_ = trainer.fit(model, train, val, resume=resume)
        plan = [dataclasses.asdict(s) for s in trainer.plan(model)]  # before finishing peft changes the groups back
        if run_dir is not None and is_main_process():  # finished: the fitted model supersedes the checkpoints
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        model.cpu()
        peft_report = self._finish_peft(adapters, model) if adapters is not None else None
        self.model_ = model
        self.backbone_ = model.backbone
        self.layer_ = model.layer
        self.head_module_ = model.head
        self.head_config_ = head_config
        if multitask:
            _multitask.set_tasks(self, ds, [np.arange(len(c)) for c in ds.classes])
        else:
            self.tasks_ = None
            self.head_classes_ = np.arange(len(ds.classes))
            self.classes_ = class_values(ds, y)
        self.train_items_ = training_digests(train)
        self.fit_info_ = {
            "strategy": self.strategy_name, "train_images": int(len(train)), "modality": backbone.modality,
            "inputs": backbone.describe_inputs(train),
            "val_images": int(len(val)) if val is not None else 0,
            "skipped": [list(s) for s in ds.skipped + skipped], "history": self.history_,
            "train_config": dataclasses.asdict(config),
            "plan": plan,
            "lr_find": lr_found,
            **({"peft": peft_report} if peft_report is not None else {}),
            **({"task_weighting": self.task_weighting, "task_weights": cast(MultiTaskHead, model.head).task_weights()}
               if multitask else {}),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return self

    def _check_peft(self) -> None:
        if self.peft is not None and self.peft not in PEFT_METHODS:
            raise TransferkitError(f"`peft` must be one of: {', '.join(PEFT_METHODS)}. Got {self.peft!r} instead.")
        if self.peft == "prompt-tuning" and self.unfreeze_top is not None:
            raise TransferkitError(f"`unfreeze_top` does not apply to `peft='prompt-tuning'`, which trains only the "
                                   f"prompt (below every layer) and the head. Got `unfreeze_top={self.unfreeze_top!r}`; "
                                   "drop it.")
        if self.peft == "prompt-tuning":  # PromptTuning checks these too, in its own names (num_tokens, init_text)
            tokens, init = self.prompt_tokens, self.prompt_init
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
                raise TransferkitError(f"`prompt_tokens` must be a positive integer. Got {tokens!r} instead.")
            if init is not None and (not isinstance(init, str) or not init.strip()):
                raise TransferkitError(f"`prompt_init` must be a non-empty text. Got {init!r} instead.")

    @staticmethod
    def _finish_peft(adapters: LoraAdapters | PromptTuning, model: TransferModel) -> dict[str, Any]:
        """Merge LoRA adapters (a prompt stays as it is); count what was trained (adapters or prompt + head)."""
        report = dict(adapters.finish())
        head = sum(p.numel() for p in model.head.parameters())
        trainable = adapters.trained_parameters + head
        report.update(head_parameters=head, trainable_parameters=trainable,
                      trainable_fraction=round(trainable / (report["backbone_parameters"] + trainable), 6))
        return report

    def _find_head_lr(self, model: TransferModel, train: ImageDataset, objective: Any = None) -> dict[str, Any]:
        from ..training import lr_find

        assert train.labels is not None
        labels = torch.as_tensor(train.labels)
        loader = backbone_batches(model.backbone, train, batch_size=self.batch_size, shuffle=True, seed=self.seed)
        steps = min(60, 4 * math.ceil(len(train) / self.batch_size) + 20)
        # decode only the batches the search can use (at most one per step), not the whole training set
        batches = [(b["inputs"], labels[b["index"]]) for b in itertools.islice(loader, steps) if len(b["index"])]
        model.backbone.freeze()
        try:
            found = lr_find(model, batches, objective or torch.nn.functional.cross_entropy, start_lr=1e-6,
                            end_lr=1.0, num_steps=steps)
        finally:
            model.backbone.unfreeze()
        return {"suggested_lr": found["suggested_lr"], "steps": len(found["lrs"])}

    def _bundle_state(self, directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The linear head; the trained backbone is in every bundle already."""
        return module_head_state(self.head_module_, self.head_config_, self._head_name())

    def _restore_state(self, directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.head_module_, self.head_config_ = restore_module_head(directory, meta, tensors)
        self.head_ = None
        self.model_ = TransferModel(self.backbone_, self.head_module_, self.layer_).eval()

    def _predict_proba_dataset(self, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        device = resolve_device(self.device)
        logits, index, skipped = predict_logits(self.model_, ds, device, self.batch_size, self.num_workers,
                                                progress=self.progress and len(ds) > 256, precision=self.precision)
        self.model_.cpu()
        if _multitask.tasks_of(self):  # the tasks' logits side by side: a softmax per task
            return _multitask.joint_softmax(torch.from_numpy(logits), _multitask.task_sizes(self)), index, skipped
        return torch.from_numpy(logits).softmax(-1).numpy(), index, skipped
