"""The end-to-end jobs behind the CLI, as plain functions: ``fit_bundle`` and ``quickstart``.

The CLI only parses arguments into a :class:`FitConfig` and prints what these return.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._dist import barrier, is_main_process, rank_and_world
from ._errors import TransferkitError, did_you_mean
from .backbones import Backbone
from .bundle import load_bundle, output_folder, read_meta, save_bundle, update_bundle_meta
from .data import (
    ImageDataset,
    TextDataset,
    drop_unreadable,
    load_embedded,
    open_dataset,
    per_class,
    select_classes,
    stratified_split,
)
from .data.seen import count_seen, seen_warnings
from .evaluation import evaluate
from .features.extract import DEFAULT_MAX_BAD_FRACTION
from .jobs.baseline import fit_model
from .strategies import STRATEGIES, FeatureExtractionClassifier, ScratchClassifier, ZeroShotClassifier
from .strategies.feature_extraction import with_options

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


def backbone_for(cfg: FitConfig) -> str | Backbone:
    """``cfg.backbone``, or with ``backbone_options`` the backbone they configure (strategies take either)."""
    pretrained = not cfg.random_init and cfg.strategy != "scratch"
    return with_options(cfg.backbone, cfg.backbone_options, pretrained=pretrained)


def _check_peft_options(cfg: FitConfig) -> None:
    """Each PEFT option belongs to one method, and every method to fine-tuning."""
    prompt_given = cfg.prompt_tokens is not None or cfg.prompt_init is not None
    if (cfg.peft or cfg.lora_rank or prompt_given) and cfg.strategy not in ("fine-tune", "zero-shot"):
        raise TransferkitError(f"--peft trains adapters while fine-tuning; use --strategy fine-tune. Got {cfg.strategy}.")
    if cfg.lora_rank is not None and cfg.peft != "lora":
        raise TransferkitError(f"--lora-rank applies to --peft lora. Got --peft {cfg.peft}; drop --lora-rank.")
    if prompt_given and cfg.peft != "prompt-tuning":
        flag = "--prompt-tokens" if cfg.prompt_tokens is not None else "--prompt-init"
        raise TransferkitError(f"{flag} applies to --peft prompt-tuning. Got --peft {cfg.peft}; add --peft "
                               f"prompt-tuning or drop {flag}.")


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
        raise TransferkitError(f"--labels applies to --strategy zero-shot; {cfg.strategy} learns the classes from DATA.")
    if cfg.strategy == "feature-extraction":
        if cfg.image_size or cfg.epochs:
            raise TransferkitError("--image-size and --epochs apply to fine-tune and scratch, not feature-extraction.")
        return FeatureExtractionClassifier(backbone_for(cfg), layer=cfg.layer, head=cfg.head,
                                           pretrained=not cfg.random_init, cache=cfg.cache, **common)
    if cfg.head != "logistic":
        raise TransferkitError(f"--head applies to feature-extraction; {cfg.strategy} trains a linear head.")
    cls = STRATEGIES[cfg.strategy]
    accepted = set(cls().get_params())
    extra: dict[str, Any] = {"epochs": cfg.epochs} if cfg.epochs else {}
    if cfg.strategy == "fine-tune":
        extra.update(layer=cfg.layer, pretrained=not cfg.random_init)
        extra.update({k: v for k, v in {"peft": cfg.peft, "lora_rank": cfg.lora_rank, "prompt_tokens": cfg.prompt_tokens,
                                        "prompt_init": cfg.prompt_init}.items() if v is not None})
    unknown = sorted(set(cfg.train) - accepted)
    if unknown:
        raise TransferkitError(f"{cfg.strategy} has no setting {unknown[0]!r}.{did_you_mean(unknown[0], accepted)}")
    extra.update({k: v for k, v in cfg.train.items() if v is not None})
    return cls(backbone_for(cfg), image_size=cfg.image_size, run_dir=cfg.out, **extra, **common)


def _zero_shot_strategy(cfg: FitConfig, common: dict[str, Any]) -> ZeroShotClassifier:
    if cfg.labels is None:
        raise TransferkitError("--strategy zero-shot needs --labels, e.g. --labels 'sports,cooking' or "
                               "'sports: a text about sport,cooking: a recipe'.")
    ignored = [flag for flag, value in (("--epochs", cfg.epochs), ("--image-size", cfg.image_size), ("--layer", cfg.layer),
                                        ("--random-init", cfg.random_init), ("--peft", cfg.peft),
                                        ("--head", cfg.head != "logistic"), ("training options", cfg.train)) if value]
    if ignored:
        raise TransferkitError(f"{ignored[0]} does not apply to zero-shot, which trains nothing; drop it.")
    extra: dict[str, Any] = {"temperature": cfg.temperature} if cfg.temperature is not None else {}
    return ZeroShotClassifier(backbone_for(cfg), labels=cfg.labels, template=cfg.template, cache=cfg.cache, **extra,
                              **common)


def zero_shot_bundle(cfg: FitConfig) -> dict[str, Any]:
    """``fit --strategy zero-shot``: embed the labels, evaluate on DATA when it is labeled, write a bundle.

    Nothing is trained, so no split is held out: a labeled DATA (after ``classes``/``per_class``) is evaluated
    whole, and its class names must be among the labels. There is no scratch baseline and no verdict: a model
    trained on DATA's labels would answer another question (what labels buy), not whether transfer helped.
    """
    start = time.perf_counter()
    data = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding)
    labeled = data.labels is not None and len(data.classes) > 0
    if labeled and cfg.classes:
        data = select_classes(data, cfg.classes)
    if labeled and cfg.per_class is not None:
        data = per_class(data, cfg.per_class, seed=cfg.seed)
    estimator = make_strategy(cfg)
    estimator.fit(data)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(estimator, data, confusion_png=out / "confusion_matrix.png") if labeled and len(data) else {}
    data_info = _data_info(cfg, data, data.subset([]), data, estimator, metrics)
    data_info["evaluated_on"] = "all of DATA (zero-shot trains nothing)" if metrics else "nothing (DATA has no labels)"
    save_bundle(estimator, out, metrics=metrics, data=data_info, training_items=cfg.training_items,
                extra={"config": dataclasses.asdict(cfg), "auto": None, "verdict": None})
    return {
        "bundle": str(out), "strategy": cfg.strategy, "backbone": estimator.backbone_.spec, "layer": estimator.layer_,
        "accuracy": metrics.get("accuracy"), "macro_f1": metrics.get("macro_f1"),
        "licence": estimator.backbone_.weights.licence, "train_images": 0, "val_images": len(data) if metrics else 0,
        "modality": "text", "labels": estimator.fit_info_["labels"], "temperature": estimator.temperature,
        "inputs": None, "duplicates": data_info.get("duplicates"),
        "skipped": [{"input": s[0], "reason": s[1]} for s in data_info["skipped"]],
        "confusion_png": metrics.get("confusion_png"), "seconds": round(time.perf_counter() - start, 2),
        "metrics": metrics, "verdict": None, "auto": None, "val_seen_by_source": None, "warnings": [],
    }


def prepare_data(cfg: FitConfig) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """``(all data, train split, validation split)`` after optional few-shot subsampling; unreadable images are
    left out before the split (listed in the first's ``skipped``), so neither side holds one."""
    data = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding)
    if cfg.classes:
        data = select_classes(data, cfg.classes)
    if cfg.per_class is not None:
        data = per_class(data, cfg.per_class, seed=cfg.seed)
    data = drop_unreadable(data, max_bad_fraction=cfg.max_bad_fraction, num_workers=cfg.num_workers)
    train, val = stratified_split(data, cfg.val_fraction, seed=cfg.seed)
    return data, train, val


def _in_output_folder(fit: Callable[[FitConfig], dict[str, Any]]) -> Callable[[FitConfig], dict[str, Any]]:
    """``fit`` inside :func:`~transferkit.bundle.output_folder` of ``cfg.out``: a killed run's temporaries are
    cleared first, and a run that fails leaves no ``--out`` it created."""
    @functools.wraps(fit)
    def run(cfg: FitConfig) -> dict[str, Any]:
        with output_folder(cfg.out):
            return fit(cfg)

    return run


@_in_output_folder
def fit_bundle(cfg: FitConfig) -> dict[str, Any]:
    """Fit the configured strategy on the training split, evaluate on the validation split, write a bundle.

    Unless ``cfg.baseline`` is off (or the strategy is ``scratch``), the same architecture is then trained from
    scratch on the same split and the transfer verdict is stored in the bundle. The bundle is written before the
    baseline starts, so an interrupted baseline loses nothing: ``resume`` picks up the baseline alone.

    Returns:
        A JSON-ready summary: ``bundle``, ``accuracy``, ``macro_f1``, ``strategy``, ``backbone``, ``licence``,
        ``train_images``, ``val_images``, ``skipped``, ``seconds``, ``confusion_png``, ``metrics``, ``verdict``.
    """
    if cfg.strategy == "zero-shot":
        return zero_shot_bundle(cfg)
    start = time.perf_counter()
    data, train, val = prepare_data(cfg)
    auto = None
    if cfg.strategy == "auto":
        cfg, auto = resolve_auto(cfg, train)
    estimator = make_strategy(cfg)
    if cfg.baseline_seeds < 1:
        raise TransferkitError(f"--baseline-seeds must be >= 1. Got {cfg.baseline_seeds} instead.")
    if cfg.baseline and cfg.strategy != "scratch":  # a wrong choice fails now, not after the transfer model trained
        from .jobs.baseline import baseline_kind, protocol_for

        if baseline_kind(cfg.baseline_model, getattr(data, "modality", "image")) != "arch" and cfg.baseline_image_size:
            raise TransferkitError("--baseline-image-size applies to --baseline arch; the small CNN trains at the "
                                   "images' own size. Drop it, or add --baseline arch.")
        protocol_for(cfg.verdict_protocol, len(val), np.asarray(data.labels), cfg.cross_fit_folds)
    if cfg.resume and cfg.strategy == "feature-extraction" and not _verdict_pending(cfg):
        raise TransferkitError("--resume applies to fine-tune and scratch; feature extraction resumes by itself "
                               "through the feature cache.")
    out = Path(cfg.out)
    with_baseline = cfg.baseline and cfg.strategy != "scratch"
    if _verdict_pending(cfg):  # the transfer model finished in an earlier run; only the baseline is left
        estimator = load_bundle(out, device=cfg.device, progress=cfg.progress)
        meta = read_meta(out)
        metrics, seen = meta["metrics"], meta["data"].get("val_seen_by_source")
    else:
        fit_model(estimator, train, val, resume=cfg.resume)
        metrics, seen = {}, None
        if is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            seen = count_seen(estimator.backbone_.source_items, val)
            metrics = evaluate(estimator, val, confusion_png=out / "confusion_matrix.png")
            save_bundle(estimator, out, metrics=metrics,
                        data={**_data_info(cfg, data, train, val, estimator, metrics),
                              "val_seen_by_source": seen}, training_items=cfg.training_items,
                        extra={"config": dataclasses.asdict(cfg), "auto": auto,
                               "verdict": {"status": "pending"} if with_baseline else None})
        barrier()
    from .jobs.baseline import baseline_verdict  # the job imports make_strategy from here

    verdict = baseline_verdict(cfg, estimator, data, train, val) if with_baseline else None
    if not is_main_process():  # under torchrun/accelerate only rank 0 evaluates and writes
        barrier()
        return {"rank": rank_and_world()[0]}
    if with_baseline:
        update_bundle_meta(out, verdict=verdict)
    barrier()
    data_info = _data_info(cfg, data, train, val, estimator, metrics)
    # a bundle: source trained on validation images makes accuracy and verdict optimistic (transferkit.data.seen)
    warnings = seen_warnings(str(cfg.backbone), seen, len(val), "validation images",
                             "the accuracy" + (" and the transfer verdict are" if with_baseline else " is")
                             + " optimistic", "validate on images it was not trained on (e.g. --classes or a DATA "
                             "without them)")
    return {
        "bundle": str(out),
        "strategy": cfg.strategy,
        "backbone": estimator.backbone_.spec if cfg.strategy != "scratch" else f"{cfg.backbone} (random init)",
        "layer": estimator.layer_,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "licence": estimator.backbone_.weights.licence,
        "train_images": len(train),
        "val_images": len(val),
        "modality": estimator.backbone_.modality,
        "inputs": _inputs_report(estimator),
        "duplicates": data_info.get("duplicates"),
        "skipped": [{"input": s[0], "reason": s[1]} for s in data_info["skipped"]],
        "confusion_png": metrics.get("confusion_png"),
        "seconds": round(time.perf_counter() - start, 2),
        "metrics": metrics,
        "val_seen_by_source": seen,
        "head": getattr(estimator, "fit_info_", {}).get("head"),
        "warnings": warnings,
        "verdict": verdict,
        "auto": auto,
        **_training_report(estimator, out),
    }


def resolve_auto(cfg: FitConfig, train: ImageDataset) -> tuple[FitConfig, dict[str, Any]]:
    """``--strategy auto``: measure, choose, and return the concrete config plus the decision and its reasons."""
    from .selection.auto import choose_strategy

    if cfg.random_init:
        raise TransferkitError("--strategy auto judges pretrained weights; drop --random-init, or pick a strategy.")
    decision = choose_strategy(train, backbone_for(cfg), seed=cfg.seed, device=cfg.device, cache=cfg.cache,
                               progress=cfg.progress)
    if decision.strategy == "feature-extraction":
        ignored = sorted(k for k, v in {"epochs": cfg.epochs, "image_size": cfg.image_size, **cfg.train}.items() if v)
        if ignored:
            decision.reasons.append(f"Training options ignored by feature extraction: {', '.join(ignored)}.")
        cfg = dataclasses.replace(cfg, strategy="feature-extraction", layer=cfg.layer or decision.layer, epochs=None,
                                  image_size=None, train={})
    else:
        cfg = dataclasses.replace(cfg, strategy="fine-tune", layer=cfg.layer or decision.layer,
                                  train={**decision.train, **cfg.train})
    return cfg, decision.to_dict()


def _data_info(cfg: FitConfig, data: ImageDataset, train: ImageDataset, val: ImageDataset, estimator: Any,
               metrics: dict[str, Any]) -> dict[str, Any]:
    skipped = list(data.skipped) + [tuple(s) for s in _skipped(estimator)] + \
        [tuple(s) for s in metrics.get("skipped", [])]
    text: dict[str, Any] = {"modality": "text", "duplicates": data.duplicates()} if isinstance(data, TextDataset) else {}
    return {"name": data.name, "images": len(data), "train_images": len(train), "val_images": len(val), **text,
            "per_class": cfg.per_class, "val_fraction": cfg.val_fraction, "seed": cfg.seed,
            "skipped": [list(s) for s in dict.fromkeys(tuple(s) for s in skipped)]}


def _verdict_pending(cfg: FitConfig) -> bool:
    """``resume`` of a run whose transfer model is saved and whose baseline had not finished."""
    if not cfg.resume or not (Path(cfg.out) / "transferkit.json").is_file():
        return False
    try:
        meta = read_meta(cfg.out)
    except TransferkitError:
        return False
    return isinstance(meta.get("verdict"), dict) and meta["verdict"].get("status") == "pending"


def _training_report(estimator: Any, out: Path) -> dict[str, Any]:
    """What a trained strategy used (settings and plan) and where its curves are."""
    info = getattr(estimator, "fit_info_", {})
    if "train_config" not in info:
        return {}
    report: dict[str, Any] = {"train_config": info["train_config"], "plan": info["plan"],
                              "epochs_run": len(info["history"]), "lr_find": info.get("lr_find")}
    if info.get("peft"):
        report["peft"] = info["peft"]
    if (out / "metrics.jsonl").is_file():
        report["metrics_jsonl"] = str(out / "metrics.jsonl")
    if (out / "training_curves.png").is_file():
        report["training_curves_png"] = str(out / "training_curves.png")
    return report


def pretrain_bundle(cfg: FitConfig) -> dict[str, Any]:
    """Train your own source model from scratch (``transferkit pretrain``); reuse it as ``bundle:<out>``."""
    result = fit_bundle(dataclasses.replace(cfg, strategy="scratch"))
    result["reuse_as"] = f"bundle:{cfg.out}"
    return result


def _inputs_report(estimator: Any) -> dict[str, Any] | None:
    """What the backbone said about the training inputs (text: out-of-vocabulary tokens, truncated texts)."""
    info = getattr(estimator, "fit_info_", {})
    return info.get("extraction", {}).get("inputs") or info.get("inputs") or None


def _skipped(estimator: Any) -> list[list[str]]:
    info = getattr(estimator, "fit_info_", {})
    return info.get("extraction", {}).get("skipped") or info.get("skipped") or []


def quickstart(out: str = "transferkit-quickstart", *, seed: int = 0, device: str = "auto",
               progress: bool = True) -> dict[str, Any]:
    """Offline demo on the embedded Fashion-MNIST subset: packaged EfficientNet-Lite0 features vs scratch.

    Both use the same seeded split (300 train / 100 validation). The scratch baseline trains the same
    architecture from random weights at 64 px (the images are 28 px; 224 px scratch training would take
    minutes on a CPU without changing the lesson). Writes the feature-extraction bundle to ``out/bundle``,
    a comparison plot ``out/quickstart.png`` and a confusion matrix.
    """
    out_dir = Path(out)
    data = load_embedded()
    train, val = stratified_split(data, 0.25, seed=seed)
    results = []
    fitted = []
    bundle_dir = out_dir / "bundle"
    for label, estimator in (
        ("feature-extraction (packaged:efficientnet_lite0 + logistic)",
         FeatureExtractionClassifier(DEFAULT_BACKBONE, seed=seed, device=device, progress=progress)),
        ("scratch (same architecture, random init, 64 px, 10 epochs)",
         ScratchClassifier(DEFAULT_BACKBONE, epochs=10, image_size=64, seed=seed, device=device, progress=progress)),
    ):
        start = time.perf_counter()
        estimator.fit(train)
        fitted.append(estimator)
        is_transfer = estimator.strategy_name == "feature-extraction"
        metrics = evaluate(estimator, val, confusion_png=(bundle_dir / "confusion_matrix.png") if is_transfer else None)
        seconds = time.perf_counter() - start
        results.append({"strategy": estimator.strategy_name, "label": label, "accuracy": metrics["accuracy"],
                        "macro_f1": metrics["macro_f1"], "seconds": round(seconds, 2)})
        if is_transfer:
            save_bundle(estimator, bundle_dir, metrics=metrics,
                        data={"name": data.name, "train_images": len(train), "val_images": len(val), "seed": seed})
    plot = save_comparison_plot(results, out_dir / "quickstart.png")
    transfer, scratch = results
    from .verdict import transfer_verdict

    verdict = transfer_verdict(fitted[0], fitted[1], val, seed=seed,
                               context={"strategy": "feature-extraction", "backbone": DEFAULT_BACKBONE,
                                        "data": "embedded"}).to_dict()
    update_bundle_meta(bundle_dir, verdict=verdict)
    return {
        "verdict": verdict,
        "accuracy": transfer["accuracy"],
        "scratch_accuracy": scratch["accuracy"],
        "gain": round(transfer["accuracy"] - scratch["accuracy"], 4),
        "bundle": str(bundle_dir),
        "plot": str(plot),
        "confusion_png": str(bundle_dir / "confusion_matrix.png"),
        "results": results,
        "train_images": len(train),
        "val_images": len(val),
    }


def save_comparison_plot(results: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._utils import atomic_path

    names = [r["strategy"] for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    colors = ["#2a9d8f", "#e76f51", "#264653", "#e9c46a"][: len(results)]
    ax1.bar(names, [r["accuracy"] for r in results], color=colors)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("validation accuracy")
    for i, r in enumerate(results):
        ax1.text(i, r["accuracy"] + 0.02, f"{r['accuracy']:.2f}", ha="center")
    ax2.bar(names, [r["seconds"] for r in results], color=colors)
    ax2.set_ylabel("seconds (fit + evaluate)")
    fig.suptitle("Transfer vs scratch on the embedded Fashion-MNIST subset")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
