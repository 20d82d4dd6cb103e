"""``FitConfig`` and the estimator it describes: shared by ``fit`` (:mod:`.fit`) and by its transfer verdict
(:mod:`.baseline`), which trains more models of the same configuration.

Its checks speak parameter names (`` `lora_rank` ``, see :mod:`transferkit._errors`); the CLI spells them as flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .._errors import TransferkitError, did_you_mean
from ..backbones import Backbone, require_commercial_backbone
from ..features.extract import DEFAULT_MAX_BAD_FRACTION
from ..strategies import STRATEGIES, FeatureExtractionClassifier, ZeroShotClassifier
from ..strategies.feature_extraction import with_options

DEFAULT_BACKBONE = "packaged:efficientnet_lite0"


@dataclass
class FitConfig:
    """Everything ``transferkit fit`` needs.

    Attributes:
        data: ``embedded``, ``fashion-mnist[:train|test]``, a class-per-folder directory or a ``path,label`` CSV.
        out: bundle directory to write.
        backbone: backbone spec (for ``scratch``: the architecture).
        strategy: ``feature-extraction``, ``fine-tune`` or ``scratch``.
        head: head of ``feature-extraction`` (``logistic``, ``linear``, ``mlp``, ``svm``, ``random-forest``,
            ``gradient-boosting``).
        layer: feature layer (default: pooled pre-logits).
        per_class: keep at most this many images per class (few-shot), drawn with ``seed``.
        val_fraction: stratified validation split used for the reported metrics.
        seed: seeds the split, the subsampling and training.
        random_init: use the backbone's architecture without its pretrained weights.
        epochs: training epochs for ``fine-tune`` (second stage) and ``scratch`` (default: the strategy's).
        image_size: square input size override (default: the weights' own).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: images per batch (default: 64 for extraction, 32 for training).
        num_workers: DataLoader worker processes for decoding.
        max_bad_fraction: fail when more than this fraction of images is unreadable.
        cache: use the on-disk feature cache.
        progress: show progress bars.
        classes: keep only these classes (names or indices, ``"0-4"`` or ``"Bag,Coat"``), e.g. a source task.
        resume: continue an interrupted fine-tune/scratch run from the checkpoints in ``out``.
        train: fine-tune/scratch settings, by constructor parameter name of the strategy (``schedule``,
            ``lr_decay``, ``early_stopping``, ...); anything not given keeps the strategy's default.
        baseline: also train a model from scratch and judge the transfer against it (positive / neutral /
            negative, with a confidence interval); ignored for ``scratch`` itself.
        baseline_model: what the baseline is (:mod:`transferkit.jobs.baseline`): ``auto`` (a small CNN at the
            images' native size, TF-IDF + logistic regression for texts, the architecture for audio),
            ``small-cnn``, ``tfidf``, or ``arch`` (the transfer model's architecture from random init).
        verdict_protocol: ``auto`` (cross-fit when the validation split holds fewer than 100 items), ``holdout``
            (score both on the validation split) or ``cross-fit`` (k folds over every labelled item).
        cross_fit_folds: at most this many folds for cross-fitting (fewer when a class has fewer items).
        baseline_seeds: with more than 1, retrain both models with this many seeds (cross-fit: reshuffled folds);
            the interval then covers seeds too.
        baseline_epochs: epochs of the baseline (default: the baseline's own).
        baseline_image_size: input size of the ``arch`` baseline (default: the transfer model's).
        text_column, label_column, encoding: how a text file (CSV/TSV/JSONL) is read.
        labels: ``zero-shot``: the classes, ``"a,b,c"`` or ``"name: description"`` items separated by commas.
        template: ``zero-shot``: format string each label text is embedded through (``"{}"``).
        temperature: ``zero-shot``: softmax temperature over cosine similarities (default 0.05).
        peft: ``fine-tune`` of a transformer text backbone with parameter-efficient adapters: ``lora`` or
            ``prompt-tuning``.
        lora_rank: rank of the LoRA adapters (alpha = 2 x rank).
        prompt_tokens: ``prompt-tuning``: virtual tokens (default 20).
        prompt_init: ``prompt-tuning``: text the prompt starts from (default: sampled vocabulary embeddings).
        backbone_options: options of the backbone's source, given to :func:`~transferkit.create_backbone`: for
            text ``pooling`` (``mean``/``cls``/``max`` for transformers, ``mean``/``sif`` for word vectors) and
            ``max_length`` (transformers); the scratch baseline is built with them too.
        training_items: keep the content digests of the training items in the bundle (see :func:`save_bundle`);
            False for membership privacy, at the price of no warning when the model meets them again.
        commercial: the model is for commercial use: refuse, before reading any data, a backbone whose licence
            chain holds a non-commercial or unknown licence (:func:`~transferkit.backbones.require_commercial_use`).
        targets: several label columns of DATA (a ``.csv`` of images with a ``path`` column, or a table of texts),
            one task each: one shared backbone, one head per task (:mod:`transferkit.jobs._fit_tasks`); an empty
            cell means "no label for that task". ``label_column`` is then not read.
        task_weighting: ``fine-tune`` with ``targets``: ``equal`` (the sum of the tasks' losses) or
            ``uncertainty`` (Kendall et al. 2018: learned log-variances weigh them).
        compare_single_task: with ``targets``, also train one single-task model per task with the same strategy,
            settings and split, and report each task against it (costs one more fit per task).
    """

    data: str
    out: str
    backbone: str = DEFAULT_BACKBONE
    strategy: str = "feature-extraction"
    head: str = "logistic"
    layer: str | None = None
    per_class: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    random_init: bool = False
    epochs: int | None = None
    image_size: int | None = None
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int = 0
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
    cache: bool = True
    progress: bool = True
    classes: str | None = None
    resume: bool = False
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    baseline: bool = True
    baseline_model: str = "auto"
    verdict_protocol: str = "auto"
    cross_fit_folds: int = 5
    baseline_seeds: int = 1
    baseline_epochs: int | None = None
    baseline_image_size: int | None = None
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    labels: str | None = None
    template: str = "{}"
    temperature: float | None = None
    peft: str | None = None
    lora_rank: int | None = None
    prompt_tokens: int | None = None
    prompt_init: str | None = None
    backbone_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    training_items: bool = True
    commercial: bool = False
    targets: list[str] | None = None
    task_weighting: str = "equal"
    compare_single_task: bool = False


def backbone_for(cfg: FitConfig) -> str | Backbone:
    """``cfg.backbone``, or with ``backbone_options`` the backbone they configure (strategies take either)."""
    pretrained = not cfg.random_init and cfg.strategy != "scratch"
    return with_options(cfg.backbone, cfg.backbone_options, pretrained=pretrained)


def check_licence(cfg: FitConfig) -> None:
    """``commercial``: refuse a backbone whose licence chain does not allow commercial use (a random
    initialisation, and the scratch strategy, use no third-party weights and always pass)."""
    if cfg.commercial:
        require_commercial_backbone(cfg.backbone, pretrained=not cfg.random_init and cfg.strategy != "scratch",
                                    **cfg.backbone_options)


def _check_peft_options(cfg: FitConfig) -> None:
    """Each PEFT option belongs to one method, and every method to fine-tuning."""
    prompt_given = cfg.prompt_tokens is not None or cfg.prompt_init is not None
    if (cfg.peft or cfg.lora_rank or prompt_given) and cfg.strategy not in ("fine-tune", "zero-shot"):
        raise TransferkitError(f"`peft` trains adapters while fine-tuning; use `strategy='fine-tune'`. Got "
                               f"{cfg.strategy}.")
    if cfg.lora_rank is not None and cfg.peft != "lora":
        raise TransferkitError(f"`lora_rank` applies to `peft='lora'`. Got `peft={cfg.peft!r}`; drop `lora_rank`.")
    if prompt_given and cfg.peft != "prompt-tuning":
        name = "`prompt_tokens`" if cfg.prompt_tokens is not None else "`prompt_init`"
        raise TransferkitError(f"{name} applies to `peft='prompt-tuning'`. Got `peft={cfg.peft!r}`; add "
                               f"`peft='prompt-tuning'` or drop {name}.")


def make_strategy(cfg: FitConfig) -> Any:
    """The unfitted estimator a config describes."""
    if cfg.strategy not in STRATEGIES:
        raise TransferkitError(
            f"Unknown strategy {cfg.strategy!r}; strategies are: {', '.join(STRATEGIES)}.{did_you_mean(cfg.strategy, STRATEGIES)}"
        )
    _check_peft_options(cfg)
    common: dict[str, Any] = {"device": cfg.device, "num_workers": cfg.num_workers, "seed": cfg.seed, "progress": cfg.progress,
              "max_bad_fraction": cfg.max_bad_fraction}
    if cfg.batch_size:
        common["batch_size"] = cfg.batch_size
    if cfg.strategy == "zero-shot":
        return _zero_shot_strategy(cfg, common)
    if cfg.labels is not None:
        raise TransferkitError(f"`labels` applies to `strategy='zero-shot'`; {cfg.strategy} learns the classes from "
                               "DATA.")
    check_task_options(cfg)
    if cfg.strategy == "feature-extraction":
        if cfg.image_size or cfg.epochs:
            raise TransferkitError("`image_size` and `epochs` apply to fine-tune and scratch, not feature-extraction.")
        return FeatureExtractionClassifier(backbone_for(cfg), layer=cfg.layer, head=cfg.head,
                                           pretrained=not cfg.random_init, cache=cfg.cache, **common)
    if cfg.head != "logistic":
        raise TransferkitError(f"`head` applies to feature-extraction; {cfg.strategy} trains a linear head.")
    cls = STRATEGIES[cfg.strategy]
    accepted = set(cls().get_params())
    extra: dict[str, Any] = {"epochs": cfg.epochs} if cfg.epochs else {}
    if cfg.strategy == "fine-tune":
        extra.update(layer=cfg.layer, pretrained=not cfg.random_init)
        if cfg.targets:
            extra["task_weighting"] = cfg.task_weighting
        extra.update({k: v for k, v in {"peft": cfg.peft, "lora_rank": cfg.lora_rank, "prompt_tokens": cfg.prompt_tokens,
                                        "prompt_init": cfg.prompt_init}.items() if v is not None})
    unknown = sorted(set(cfg.train) - accepted)
    if unknown:
        raise TransferkitError(f"{cfg.strategy} has no setting {unknown[0]!r}.{did_you_mean(unknown[0], accepted)}")
    extra.update({k: v for k, v in cfg.train.items() if v is not None})
    return cls(backbone_for(cfg), image_size=cfg.image_size, run_dir=cfg.out, **extra, **common)


def check_task_options(cfg: FitConfig) -> None:
    """The multi-task options belong to ``targets``, and ``uncertainty`` weighting to fine-tuning."""
    if not cfg.targets:
        named = next((n for n, v in (("`task_weighting`", cfg.task_weighting != "equal"),
                                     ("`compare_single_task`", cfg.compare_single_task)) if v), None)
        if named:
            raise TransferkitError(f"{named} applies to multi-task fits; name their label columns with `targets`.")
        return
    if cfg.strategy not in ("feature-extraction", "fine-tune"):
        raise TransferkitError(f"Multi-task fits (`targets`) train with feature-extraction or fine-tune. Got "
                               f"`strategy={cfg.strategy!r}` instead.")
    if cfg.task_weighting != "equal" and cfg.strategy != "fine-tune":
        raise TransferkitError(f"`task_weighting={cfg.task_weighting!r}` weighs task losses that share trained "
                               "weights; feature extraction fits each task's head on its own (the backbone is frozen), "
                               "so no weighting changes them. Use `strategy='fine-tune'`, or drop `task_weighting`.")


def _zero_shot_strategy(cfg: FitConfig, common: dict[str, Any]) -> ZeroShotClassifier:
    if cfg.labels is None:
        raise TransferkitError("`strategy='zero-shot'` needs `labels`, e.g. `labels='sports,cooking'` or "
                               "`labels='sports: a text about sport,cooking: a recipe'`.")
    ignored = [name for name, value in (("`epochs`", cfg.epochs), ("`image_size`", cfg.image_size),
                                        ("`layer`", cfg.layer), ("`random_init`", cfg.random_init),
                                        ("`peft`", cfg.peft), ("`head`", cfg.head != "logistic"),
                                        ("training options", cfg.train)) if value]
    if ignored:
        raise TransferkitError(f"{ignored[0]} does not apply to zero-shot, which trains nothing; drop it.")
    extra: dict[str, Any] = {"temperature": cfg.temperature} if cfg.temperature is not None else {}
    return ZeroShotClassifier(backbone_for(cfg), labels=cfg.labels, template=cfg.template, cache=cfg.cache, **extra,
                              **common)
