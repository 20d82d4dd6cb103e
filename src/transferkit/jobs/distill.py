"""``transferkit distill TEACHER DATA --student SPEC --out DIR``: a smaller student from a bundle's soft targets
(:mod:`transferkit.strategies.distill`: Hinton et al. 2015).

The teacher's probabilities are computed once on the labelled training items and the ``unlabeled`` ones; the
student (any backbone spec, ``small-cnn`` for a small CNN at the data's own size, ``vectors:``/``packaged:glove-6b-50d``
for texts) is fine-tuned on them, and the same student is trained on the labels alone with the same number of
optimizer steps, for the comparison. All three are scored on ``test`` (else a held-out stratified split of DATA
that none trains on): accuracy, agreement with the teacher, parameters, CPU latency of one input (median of
``latency_runs``; reported, machine-dependent). The distilled student is a normal bundle in ``out`` that records
its teacher and the teacher's licence chain (role ``teacher``); ``distill.json`` keeps the report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import DataError, TransferkitError
from .._utils import write_json_atomic

SMALL_CNN = "small-cnn"
MAX_NATIVE_SIDE = 32


@dataclass
class DistillConfig:
    """Everything ``transferkit distill`` needs.

    Attributes:
        teacher: the teacher's bundle directory (any strategy but multi-task).
        data: labelled data of the teacher's classes (folder, CSV, text table, built-in name, or a dataset).
        out: output directory: the student's bundle and ``distill.json``.
        student: the student's backbone spec; ``small-cnn`` (or ``small-cnn:<C>x<H>x<W>[-w<width>]``) is a small CNN
            from random init at the images' own size (longest side capped at 32 px).
        unlabeled: more items for the soft targets only (a flat folder of images, a ``.txt`` of texts, or data
            whose labels are then not read), or None.
        test: labelled data to score on; None holds ``val_fraction`` of ``data`` out instead.
        temperature: T of the soft targets (> 0).
        alpha: weight of the soft term (1 - alpha: the hard labels'), in [0, 1].
        epochs: epochs of the student's training (the last stage of its schedule).
        head_epochs: epochs of the head-only stage of pretrained students (small CNNs train all at once).
        lr: learning rate (small CNN: every layer; pretrained students: the head's, the backbone 10x lower).
        batch_size: items per step.
        val_fraction: share of ``data`` held out for scoring when ``test`` is None.
        max_unlabeled: use at most this many ``unlabeled`` items (a seeded sample).
        restrict_vocabulary: a word-vector student keeps only the words of its training texts (labelled and
            unlabelled; :func:`~transferkit.backbones.vectors.restrict_vocabulary`): GloVe's 400k-word table
            shrinks to the task's words, and so does the student's parameter count.
        latency_runs: one-input predictions timed per model, on one CPU thread (the median is reported).
        threads: torch CPU threads for the whole job (restored afterwards; None: torch's own count). On a shared
            2-core machine one thread trained the small CNN 10x faster than two (spinning OpenMP workers).
        commercial: refuse a teacher or student whose licence chain does not allow commercial use.
        text_column, label_column, encoding: how text files are read.
        device, num_workers, seed, progress: as for ``fit``.
    """

    teacher: str
    data: Any
    out: str
    student: str = SMALL_CNN
    unlabeled: Any = None
    test: Any = None
    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 10
    head_epochs: int = 1
    lr: float = 3e-3
    batch_size: int = 64
    val_fraction: float = 0.2
    max_unlabeled: int | None = None
    restrict_vocabulary: bool = False
    latency_runs: int = 15
    threads: int | None = None
    commercial: bool = False
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    device: str = "auto"
    num_workers: int = 0
    seed: int = 0
    progress: bool = True


def distill(cfg: DistillConfig) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into ``cfg.student``; the report (see the module docstring).

    Raises:
        BundleError: the teacher bundle is missing or damaged.
        LicenceError: ``commercial`` and a licence in the teacher's or the student's chain that does not allow it.
        DataError: unlabelled DATA, classes the teacher does not have, a student of another modality.

    Example:
        >>> r = tk.distill(tk.DistillConfig("runs/pets", "pets/", out="runs/pets-small", unlabeled="more_pets/"))
        >>> r["models"]["student"]["accuracy"], r["kept_of_teacher"], r["parameter_ratio"]
    """
    from ..strategies.small_cnn import cpu_threads

    with cpu_threads(cfg.threads, torch.device("cpu")):
        return _distill(cfg)


def _distill(cfg: DistillConfig) -> dict[str, Any]:
    from ..backbones import licence_chain_of, require_commercial_backbone
    from ..backbones.licences import licence_record
    from ..bundle import load_bundle, output_folder, read_meta, save_bundle
    from ..strategies.distill import check_distillation_params, fit_distilled, teacher_targets

    start = time.perf_counter()
    check_distillation_params(cfg.temperature, cfg.alpha)
    for name in ("epochs", "batch_size", "latency_runs") + (("threads",) if cfg.threads is not None else ()):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TransferkitError(f"`{name}` must be a positive integer. Got {value!r} instead.")
    teacher_spec = f"bundle:{cfg.teacher}"
    meta = read_meta(Path(cfg.teacher))  # a missing or damaged bundle: one line, before anything else
    student_arch = cfg.student if cfg.student.startswith(f"{SMALL_CNN}:") or cfg.student == SMALL_CNN else None
    if cfg.commercial:
        require_commercial_backbone(teacher_spec, role="teacher")
        if student_arch is None:
            require_commercial_backbone(cfg.student)
    if meta.get("tasks"):
        raise DataError(f"Teacher {cfg.teacher!r} is a multi-task bundle; distill one task's bundle.")
    teacher = load_bundle(cfg.teacher, device=cfg.device, progress=cfg.progress, num_workers=cfg.num_workers)
    if cfg.restrict_vocabulary and (teacher.modality_ != "text" or student_arch is not None):
        raise DataError(f"`restrict_vocabulary` applies to word-vector students of texts (packaged:glove-6b-50d, "
                        f"vectors:<file>). Got student {cfg.student!r} for {teacher.modality_}s.")
    classes = [str(c) for c in np.asarray(teacher.classes_)]
    train, test, unlabeled = _read_data(cfg, teacher.modality_, classes)
    pool = _pool(train, unlabeled)
    soft, index, skipped = teacher_targets(teacher, pool)
    if not len(index):
        raise DataError(f"None of the {len(pool)} training items could be read by the teacher.")
    pool = pool.subset(index)
    hard = np.concatenate([_class_index(train, classes), np.full(len(unlabeled or []), -1)])[index]
    student_spec, backbone = _student_backbone(cfg, pool)
    report_models: dict[str, Any] = {}
    students = {}
    with output_folder(cfg.out) as out:
        student = _student_estimator(cfg, backbone)
        labels_only = _student_estimator(cfg, backbone)
        distilled = fit_distilled(student, pool, hard, soft, classes, temperature=cfg.temperature, alpha=cfg.alpha)
        labelled = np.flatnonzero(hard >= 0)
        steps = math.ceil(len(pool) / cfg.batch_size) * cfg.epochs
        epochs = max(1, round(steps / math.ceil(len(labelled) / cfg.batch_size)))  # the same optimizer steps
        baseline = fit_distilled(labels_only, pool.subset(labelled), hard[labelled], None, classes, alpha=0.0,
                                 epochs=epochs)
        students = {"teacher": teacher, "student": distilled, "labels_only": baseline}
        teacher_proba, teacher_index, _ = teacher.predict_proba_details(test)
        teacher_test = np.full(len(test), -1)  # by item: a model that could not read an item is scored without it
        teacher_test[teacher_index] = teacher_proba.argmax(1)
        truth = _class_index(test, classes)
        for name, model in students.items():
            report_models[name] = _scores(model, test, truth, teacher_test, cfg.latency_runs)
        report_models["labels_only"]["epochs"] = epochs
        teacher_chain = licence_chain_of(teacher_spec, role="teacher")
        record = licence_record(distilled.backbone_.licence_chain, teacher_chain)
        distillation = {"teacher": {"bundle": str(cfg.teacher), "strategy": meta.get("strategy"),
                                    "backbone": meta.get("backbone", {}).get("spec"), "licence": meta.get("licence")},
                        "temperature": cfg.temperature, "alpha": cfg.alpha, "labelled_items": int(len(labelled)),
                        "unlabelled_items": int(len(pool) - len(labelled)), "test_items": int(len(truth))}
        save_bundle(distilled, out, metrics={"accuracy": report_models["student"]["accuracy"]},
                    data={"name": getattr(train, "name", ""), "train_items": int(len(pool)),
                          "skipped": [list(s) for s in skipped]},
                    extra={**record, "distillation": distillation})
        kept = report_models["student"]["accuracy"] / max(report_models["teacher"]["accuracy"], 1e-12)
        report: dict[str, Any] = {
            "bundle": str(out), "student": student_spec, **distillation,
            "models": report_models, "kept_of_teacher": round(kept, 4),
            "gain_over_labels_only": round(report_models["student"]["accuracy"]
                                           - report_models["labels_only"]["accuracy"], 4),
            "parameter_ratio": round(report_models["student"]["parameters"]
                                     / max(report_models["teacher"]["parameters"], 1), 4),
            "test": "test" if cfg.test is not None else f"held-out {cfg.val_fraction:.0%} of DATA",
            "licence": record["licence"], "licence_chain": record["licence_chain"],
            "skipped": [{"input": s[0], "reason": s[1]} for s in skipped], "warnings": _warnings(report_models),
            "seconds": round(time.perf_counter() - start, 2)}
        write_json_atomic(out / "distill.json", report)
    return report


def _read_data(cfg: DistillConfig, modality: str, classes: list[str]) -> tuple[Any, Any, Any]:
    from ..data import drop_unreadable, open_dataset, stratified_split
    from ..evaluation import check_classes
    from ..strategies._base import as_dataset

    read = {"text_column": cfg.text_column, "label_column": cfg.label_column, "encoding": cfg.encoding}

    def labelled(spec: Any, what: str) -> Any:
        ds = as_dataset(open_dataset(spec, **read) if isinstance(spec, (str, Path)) else spec, modality=modality)
        if ds.labels is None or not len(ds):
            raise DataError(f"`{what}` must be labelled data (class folders or a label column). Got {spec!r}.")
        check_classes(ds, classes)  # classes the teacher lacks: one line naming them
        return drop_unreadable(ds, num_workers=cfg.num_workers)

    data = labelled(cfg.data, "data")
    if cfg.test is not None:
        train, test = data, labelled(cfg.test, "test")
    else:
        train, test = stratified_split(data, cfg.val_fraction, seed=cfg.seed)
    unlabeled = _read_unlabeled(cfg, modality) if cfg.unlabeled is not None else None
    return train, test, unlabeled


def _read_unlabeled(cfg: DistillConfig, modality: str) -> Any:
    from ..data import ImageDataset, open_dataset
    from ..data.sources import visible_files
    from ..strategies._base import as_dataset
    from .predict import read_texts

    spec = cfg.unlabeled
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if path.is_dir() and not any(d.is_dir() and not d.name.startswith(".") for d in path.iterdir()):
            spec = ImageDataset(visible_files(path), None, [], name=str(path))  # a flat folder: unlabelled images
        elif path.suffix.lower() == ".txt" and path.is_file():
            spec = read_texts([str(path)], text_column=cfg.text_column, encoding=cfg.encoding)
        else:
            spec = open_dataset(spec, text_column=cfg.text_column, label_column=cfg.label_column,
                                encoding=cfg.encoding)
    ds = as_dataset(spec, modality=modality)
    ds = dataclasses.replace(ds, labels=None)  # never read
    if not len(ds):
        raise DataError(f"`unlabeled` holds no items. Got {cfg.unlabeled!r}.")
    if cfg.max_unlabeled is not None and len(ds) > cfg.max_unlabeled:
        ds = ds.subset(np.sort(np.random.default_rng(cfg.seed).permutation(len(ds))[:cfg.max_unlabeled]))
    return ds


def _pool(train: Any, unlabeled: Any) -> Any:
    """The labelled training items then the unlabelled ones, as one dataset (labels are not kept)."""
    if unlabeled is None:
        return dataclasses.replace(train.subset(np.arange(len(train))), labels=None)
    if getattr(train, "modality", "image") == "text":
        return dataclasses.replace(train, items=list(train.items) + list(unlabeled.items), labels=None, sources=None)
    if train.is_array and unlabeled.is_array and train.items.shape[1:] == unlabeled.items.shape[1:]:
        return dataclasses.replace(train, items=np.concatenate([train.items, unlabeled.items]), labels=None,
                                   skipped=[])
    if not train.is_array and not unlabeled.is_array:
        return dataclasses.replace(train, items=list(train.items) + list(unlabeled.items), labels=None, skipped=[])
    raise DataError("DATA and `unlabeled` must both be files (folders, CSVs) or both arrays of one shape.")


def _class_index(ds: Any, classes: list[str]) -> np.ndarray:
    """``ds``'s labels as indices into the teacher's ``classes`` (matched by name)."""
    position = {c: i for i, c in enumerate(classes)}
    return np.array([position[str(ds.classes[int(v)])] for v in ds.labels], dtype=np.int64)


def _student_backbone(cfg: DistillConfig, pool: Any) -> tuple[str, Any]:
    """The student's spec and backbone; a ``small-cnn`` takes the images' own size, channels, mean and std."""
    from ..backbones import create_backbone

    if not (cfg.student == SMALL_CNN or cfg.student.startswith(f"{SMALL_CNN}:")):
        backbone = create_backbone(cfg.student)
        if cfg.restrict_vocabulary:
            from ..backbones.vectors import restrict_vocabulary

            backbone = restrict_vocabulary(backbone, [pool.load(i) for i in range(len(pool))])
        return cfg.student, backbone
    if getattr(pool, "modality", "image") != "image":
        raise DataError("`student` 'small-cnn' reads images; for texts use word vectors (packaged:glove-6b-50d, "
                        "vectors:<file>) or a smaller encoder (hf:<model>).")
    from ..backbones.small_cnn import spec_for
    from ..data.native import channel_stats, decode, grey_if_grey, native_size

    sample = pool.subset(np.sort(np.random.default_rng(cfg.seed).permutation(len(pool))[:2000]))
    size = native_size(sample, MAX_NATIVE_SIDE, cfg.seed)
    images = grey_if_grey(decode(sample, size, 3, cfg.num_workers)[0])
    spec = spec_for(images.shape[1], size) if cfg.student == SMALL_CNN else cfg.student
    backbone = create_backbone(spec, pretrained=False, init_seed=cfg.seed)
    if backbone.preprocessing.input_size[0] != images.shape[1]:
        raise DataError(f"`student` {spec} reads {backbone.preprocessing.input_size[0]}-channel images; these have "
                        f"{images.shape[1]}. Use `student='small-cnn'` to take the data's own.")
    mean, std = channel_stats(images)
    backbone.preprocessing = dataclasses.replace(
        backbone.preprocessing, mean=tuple(round(float(m), 4) for m in mean),
        std=tuple(round(max(float(s), 1e-3), 4) for s in std))
    return spec, backbone


def _student_estimator(cfg: DistillConfig, backbone: Any) -> Any:
    from ..strategies import FineTuneClassifier

    common: dict[str, Any] = {"batch_size": cfg.batch_size, "device": cfg.device, "num_workers": cfg.num_workers,
                              "seed": cfg.seed, "progress": cfg.progress, "epochs": cfg.epochs}
    if backbone.spec.startswith(f"{SMALL_CNN}:"):  # from scratch: every layer at once, one rate (SCRATCH_DEFAULTS)
        return FineTuneClassifier(backbone, pretrained=False, schedule="full", head_epochs=0, lr_head=cfg.lr,
                                  lr_backbone=cfg.lr, weight_decay=5e-4, scheduler="one-cycle", augment="light",
                                  **common)
    return FineTuneClassifier(backbone, head_epochs=cfg.head_epochs, lr_head=cfg.lr, lr_backbone=cfg.lr / 10,
                              **common)


def count_parameters(model: Any) -> int:
    """Weights of a fitted model: its backbone and its head (torch module, or a linear scikit-learn head)."""
    total = sum(p.numel() for p in model.backbone_.parameters())
    head = getattr(model, "head_module_", None)
    if isinstance(head, torch.nn.Module):
        return total + sum(p.numel() for p in head.parameters())
    fitted = getattr(model, "head_", None)
    steps = getattr(fitted, "steps", None) or [(None, fitted)]
    return total + sum(int(np.size(getattr(e, "coef_", 0)) + np.size(getattr(e, "intercept_", 0))) for _, e in steps
                       if e is not None and hasattr(e, "coef_"))


def _scores(model: Any, test: Any, truth: np.ndarray, teacher_pred: np.ndarray, runs: int) -> dict[str, Any]:
    proba, index, _ = model.predict_proba_details(test)
    pred = proba.argmax(1)
    return {"accuracy": round(float(np.mean(pred == truth[index])), 4),
            "agreement_with_teacher": round(float(np.mean(pred == teacher_pred[index])), 4),
            "parameters": count_parameters(model), "latency_ms": latency_ms(model, test, runs)}


def latency_ms(model: Any, data: Any, runs: int) -> float:
    """Median milliseconds of ``predict_proba`` on one item on one CPU thread, preprocessing included (one warm-up
    run first; a feature-extraction model without its feature cache, which would time a look-up)."""
    from ..strategies.small_cnn import cpu_threads

    one = data.subset([0])
    params = model.get_params()
    kept = {k: params[k] for k in ("device", "progress", "cache") if k in params}
    model.set_params(**{"device": "cpu", "progress": False, **({"cache": False} if "cache" in kept else {})})
    times = []
    try:
        with cpu_threads(1, torch.device("cpu")):
            model.predict_proba_details(one)
            for _ in range(runs):
                t = time.perf_counter()
                model.predict_proba_details(one)
                times.append(time.perf_counter() - t)
    finally:
        model.set_params(**kept)
    return round(1000 * float(np.median(times)), 3)


def _warnings(models: dict[str, Any]) -> list[str]:
    s, lo, t = (models[k]["accuracy"] for k in ("student", "labels_only", "teacher"))
    out = []
    if s <= lo:
        out.append(f"the distilled student ({s:.3f}) did not beat the same student on labels only ({lo:.3f}): add "
                   "unlabelled items (`unlabeled`), raise `epochs`, or keep the labels-only model.")
    if s < 0.97 * t:
        out.append(f"the student keeps {s / max(t, 1e-12):.1%} of the teacher's accuracy ({s:.3f} vs {t:.3f}).")
    return out
