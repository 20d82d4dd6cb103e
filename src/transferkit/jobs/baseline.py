"""``fit``'s transfer verdict: train the baseline(s), and cross-fit both models when the validation split is small.

The baseline is what a user would do without transfer, and cheap enough to run on every fit: a small CNN at the
images' native resolution (:class:`~transferkit.SmallCNNClassifier`), TF-IDF + logistic regression for texts
(:class:`~transferkit.TfidfClassifier`); audio, and ``baseline="arch"`` for any input, trains the transfer model's own
architecture from random init (:class:`~transferkit.ScratchClassifier`), which answers "did pretraining help this
network?" rather than "should I transfer at all?".

The protocol: with a validation split of at least :data:`CROSS_FIT_BELOW` items, both models are scored on it (the
bundle's own model and one baseline). Below that a split says little (4 validation images cannot tell 4/4 from 2/4),
so both are cross-fitted instead: k stratified folds over every labelled item, both models trained on k-1 folds and
scored on the held-out one, the interval paired over all out-of-fold predictions (cross-fitting as in Chernozhukov
et al., "Double/debiased machine learning", 2018; its bootstrap over items ignores that the k fold models differ, so
it is somewhat narrow: Bates, Hastie & Tibshirani, "Cross-validation: what does it estimate and how well does it do
it?", JASA 2023). ``baseline_seeds`` > 1 repeats it with reshuffled folds, and the interval then covers seeds too.
Every finished run leaves its marks in the bundle's pending verdict, so ``resume`` trains only what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from .._dist import is_main_process, rank_and_world
from .._errors import TransferkitError, did_you_mean
from .._progress import progress_bar
from ..bundle import read_meta, update_bundle_meta
from ..data.seen import item_digests
from ..features.cache import FeatureCache
from ..strategies.baselines import BASELINES, DEFAULT_BASELINE, baseline_kind
from ._fit_config import FitConfig, make_strategy

__all__ = ["BASELINES", "DEFAULT_BASELINE", "baseline_kind", "baseline_verdict", "make_baseline", "protocol_for"]

PROTOCOLS = ("auto", "holdout", "cross-fit")
#: validation splits smaller than this are judged by cross-fitting (``protocol="auto"``)
CROSS_FIT_BELOW = 100
CROSS_FIT_FOLDS = 5


def protocol_for(choice: str, n_val: int, labels: np.ndarray, folds: int = CROSS_FIT_FOLDS) -> tuple[str, int | None]:
    """``(protocol, folds)``: cross-fit with a validation split under :data:`CROSS_FIT_BELOW` items (``auto``)."""
    if choice not in PROTOCOLS:
        raise TransferkitError(f"`verdict_protocol` must be one of {', '.join(PROTOCOLS)}. Got {choice!r} instead."
                               f"{did_you_mean(choice, PROTOCOLS)}")
    counts = np.bincount(np.asarray(labels))
    k = int(min(folds, counts[counts > 0].min()))
    if choice == "holdout" or (choice == "auto" and n_val >= CROSS_FIT_BELOW):
        return "holdout", None
    if k < 2:
        if choice == "cross-fit":
            raise TransferkitError("Cross-fitting needs at least 2 labelled items per class; label more, or use "
                                   "`verdict_protocol='holdout'`.")
        return "holdout", None
    return "cross-fit", k


def make_baseline(cfg: FitConfig, estimator: Any, seed: int, run_dir: str | None, *, progress: bool) -> Any:
    """The unfitted baseline for ``estimator``'s data (see the module docstring)."""
    from ..backbones import Backbone, create_backbone
    from ..strategies import ScratchClassifier, SmallCNNClassifier, TfidfClassifier

    backbone = estimator.backbone_
    kind = baseline_kind(cfg.baseline_model, backbone.modality)
    if kind == "small-cnn":
        return SmallCNNClassifier(epochs=cfg.baseline_epochs, seed=seed, device=cfg.device,
                                  num_workers=cfg.num_workers, progress=progress, max_bad_fraction=cfg.max_bad_fraction)
    if kind == "tfidf":
        return TfidfClassifier(seed=seed)
    image_size = None
    if backbone.modality == "image":
        image_size = cfg.baseline_image_size or cfg.image_size or backbone.preprocessing.image_size[0]
    extra: dict[str, Any] = {"epochs": cfg.baseline_epochs} if cfg.baseline_epochs else {}
    if cfg.batch_size:
        extra["batch_size"] = cfg.batch_size
    # the same architecture, pooling and max_length: a spec alone rebuilds it unless it was created with options
    arch: str | Backbone = backbone.arch_spec
    if backbone.options:
        arch = create_backbone(backbone.arch_spec, pretrained=False, **backbone.options)
    return ScratchClassifier(arch, image_size=image_size, run_dir=run_dir, seed=seed, device=cfg.device,
                             num_workers=cfg.num_workers, progress=progress, max_bad_fraction=cfg.max_bad_fraction,
                             **extra)


def describe(model: Any, arch: str) -> dict[str, Any]:
    """What the verdict says it compared against: ``strategy``, words for people (``name``) and the settings."""
    info = getattr(model, "fit_info_", {})
    if model.strategy_name == "small-cnn":
        h, w = info.get("input_size", ["?", "?"])
        return {"strategy": "small-cnn", "name": f"a small CNN trained from scratch at {h}x{w} px",
                "input_size": info.get("input_size"), "epochs": info.get("epochs"),
                "parameters": info.get("parameters")}
    if model.strategy_name == "tfidf":
        return {"strategy": "tfidf", "name": "TF-IDF + logistic regression", "C": info.get("C")}
    size = f" at {model.image_size} px" if getattr(model, "image_size", None) else ""
    return {"strategy": "scratch", "name": f"the same architecture ({arch}) trained from scratch{size}", "arch": arch,
            "image_size": model.image_size, "epochs": model.epochs}


def baseline_verdict(cfg: FitConfig, estimator: Any, data: Any, train: Any, val: Any) -> dict[str, Any]:
    """Train the baseline(s) (and, for several seeds or cross-fitting, more transfer models) and judge the transfer.

    Returns:
        The verdict's dict (:meth:`~transferkit.verdict.Verdict.to_dict`) plus ``baseline`` and ``protocol``; ``{}``
        on every process but the first of a distributed run.
    """
    from ..verdict import judge, marks

    out = Path(cfg.out)
    protocol, folds = protocol_for(cfg.verdict_protocol, len(val), data.labels, cfg.cross_fit_folds)
    scored = val if protocol == "holdout" else data
    key = _verdict_key(cfg, scored, protocol, folds)
    done = _finished_runs(out, key)
    finished = set(done)  # decided once, so that every process of a distributed run skips the same runs
    runs = _runs(cfg, protocol, folds, data, train, val)
    transfer_marks: list[str] = []
    scratch_marks: list[str] = []
    baseline = None
    shared: dict[str, Any] = {}  # the transfer backbone, loaded once for every fold and seed
    quiet = protocol == "cross-fit" or baseline_kind(cfg.baseline_model, estimator.backbone_.modality) != "arch"
    if cfg.progress and is_main_process():
        _announce(cfg, estimator, protocol, folds, len(val), len(scored))
    with progress_bar(sum(len(r["models"]) for r in runs), "verdict", cfg.progress and quiet) as advance:
        def record(name: str, model_marks: str) -> None:
            if is_main_process():
                done[name] = model_marks
                update_bundle_meta(out, verdict={"status": "pending", "key": key, "runs": done})
            advance(1)

        todo = []
        for run in runs:
            for name, role, model_dir in run["models"]:
                model = (estimator if model_dir is None and role == "transfer"
                         else _model(cfg, estimator, role, run["seed"], model_dir, shared,
                                     progress=cfg.progress and not quiet))
                if role == "baseline":
                    baseline = model
                if name in finished:
                    advance(1)
                else:
                    todo.append((name, model, run, model_dir))
        # small CNNs train in threads beside the rest, which this thread fits meanwhile
        with _side_by_side([(n, m, r) for n, m, r, _ in todo if _parallel(m)]) as side_by_side:
            for name, model, run, model_dir in todo:
                if not _parallel(model):
                    if model is not estimator:
                        fit_model(model, run["train"], run["val"], resume=_resumable(cfg, model_dir))
                    record(name, marks(model, run["val"]))
            for name, model_marks in side_by_side():
                record(name, model_marks)
        for seed in dict.fromkeys(r["seed"] for r in runs):
            mine = [r for r in runs if r["seed"] == seed]
            transfer_marks.append(_combine(mine, "transfer", done, len(scored)))
            scratch_marks.append(_combine(mine, "baseline", done, len(scored)))
    if not is_main_process():
        return {}
    assert baseline is not None  # at least one run
    source = read_meta(out)["backbone"]  # as trained, also when resumed (the loaded model's spec is bundle:OUT)
    described = describe(baseline, source["arch_spec"])
    context = {"strategy": cfg.strategy, "backbone": source["spec"], "data": cfg.data, "layer": source["layer"],
               "layers": source["layers"], "baseline": described["strategy"]}
    verdict = judge(transfer_marks, scratch_marks, seed=cfg.seed, context=context, baseline_name=described["name"],
                    protocol=protocol, folds=folds).to_dict()
    if described["strategy"] == "scratch" and protocol == "holdout":
        described["metrics_jsonl"] = str(out / "baseline" / "metrics.jsonl")
    verdict["baseline"] = described
    return verdict


def _runs(cfg: FitConfig, protocol: str, folds: int | None, data: Any, train: Any, val: Any) -> list[dict[str, Any]]:
    """Every (seed, fold) the verdict trains: its data and its models ``(name, role, run_dir)``.

    Holdout keeps the names and folders of earlier versions (``transfer-S``/``scratch-S``, ``baseline/``,
    ``seedS/``), so a bundle's pending verdict resumes across the upgrade. The bundle's own model is the transfer
    model of the first holdout seed (``run_dir`` None: already trained).
    """
    from ..data.split import fold_indices

    out = Path(cfg.out)
    runs = []
    for i in range(cfg.baseline_seeds):
        seed = cfg.seed + i
        if protocol == "holdout":
            here = out if i == 0 else out / f"seed{seed}"
            transfer_dir = None if i == 0 else str(here / "transfer")
            runs.append({"seed": seed, "train": train, "val": val, "index": np.arange(len(val)), "models": [
                (f"transfer-{seed}", "transfer", transfer_dir), (f"scratch-{seed}", "baseline", str(here / "baseline"))]})
            continue
        assert folds is not None
        for f, (train_idx, val_idx) in enumerate(fold_indices(np.asarray(data.labels), folds, seed)):
            here = out / "cross-fit" / f"seed{seed}-fold{f}"
            runs.append({"seed": seed, "train": data.subset(train_idx), "val": data.subset(val_idx),
                         "index": val_idx, "models": [
                             (f"transfer-{seed}-fold{f}", "transfer", str(here / "transfer")),
                             (f"scratch-{seed}-fold{f}", "baseline", str(here / "baseline"))]})
    return runs


def _model(cfg: FitConfig, estimator: Any, role: str, seed: int, model_dir: str | None, shared: dict[str, Any], *,
           progress: bool) -> Any:
    if role == "baseline":
        return make_baseline(cfg, estimator, seed, model_dir, progress=progress)
    from ..strategies.feature_extraction import resolve_backbone

    model = make_strategy(dataclasses.replace(cfg, seed=seed, out=model_dir or cfg.out, progress=progress))
    if isinstance(model.backbone, str):  # feature extraction leaves it as it is, fine-tuning trains a copy
        if "backbone" not in shared:
            frozen = model.strategy_name == estimator.strategy_name == "feature-extraction"
            # the bundle's own frozen backbone is the one every fold would load again (seconds saved)
            shared["backbone"] = (estimator.backbone_ if frozen else
                                  resolve_backbone(model.backbone, model.pretrained))
        model.set_params(backbone=shared["backbone"])
    if model.strategy_name == "feature-extraction" and model.cache is False:
        # no disk cache asked for: the folds still share one in-memory copy, so each item goes through the
        # frozen backbone once rather than once per fold (k folds: k times)
        model.set_params(cache=shared.setdefault("features", MemoryFeatureCache()))
    return model


class _MemoryFeatureStore:
    """:class:`~transferkit.features.cache.FeatureStore`'s reading and writing, in a dict (gone with the verdict)."""

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}

    def __contains__(self, content_key: str) -> bool:
        return content_key in self.rows

    def get_many(self, content_keys: list[str]) -> dict[str, np.ndarray]:
        return {k: self.rows[k] for k in content_keys if k in self.rows}

    def add(self, content_keys: list[str], features: np.ndarray) -> None:
        self.rows.update(zip(content_keys, np.array(features, dtype=np.float32), strict=True))


class MemoryFeatureCache(FeatureCache):
    """A feature cache that writes nothing to disk: the verdict's fold models share it when ``cache`` is off."""

    def __init__(self) -> None:
        super().__init__(root=".")  # never read or written: every store lives in memory
        self.stores: dict[str, _MemoryFeatureStore] = {}

    def store(self, key: dict[str, Any]) -> Any:
        return self.stores.setdefault(json.dumps(key, sort_keys=True, default=str), _MemoryFeatureStore())


def _parallel(model: Any) -> bool:
    """Whether ``model`` may train in a thread beside others: a one-thread small CNN on the CPU, in one process."""
    from .._utils import resolve_device

    return (model.strategy_name == "small-cnn" and model.threads == 1 and rank_and_world()[1] == 1
            and resolve_device(model.device).type == "cpu")


@contextlib.contextmanager
def _side_by_side(jobs: list[tuple[str, Any, dict[str, Any]]]) -> Iterator[Callable[[], Iterator[tuple[str, str]]]]:
    """Start fitting and scoring ``(name, model, run)`` small-CNN jobs, one thread per CPU core; the block gets a
    function that yields ``(name, marks)`` as the jobs end.

    Their convolutions are too small to use a second core (one torch thread each), so the jobs are dealt out to the
    cores, and each core's share trains as one stacked network (:mod:`~transferkit.strategies.small_cnn_folds`:
    the same fits for about a quarter less CPU than one by one). Each model draws its random numbers from a
    generator of its own, so a fold's result is the same whatever trains beside it.
    """
    import torch

    from ..strategies.small_cnn import cpu_threads
    from ..strategies.small_cnn_folds import fit_side_by_side
    from ..verdict import marks

    def fit_and_score(share: list[tuple[str, Any, dict[str, Any]]]) -> list[tuple[str, str]]:
        fit_side_by_side([model for _, model, _ in share], [run["train"] for _, _, run in share])
        return [(name, marks(model, run["val"])) for name, model, run in share]

    if not jobs:
        yield lambda: iter(())
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(jobs), cores)
    # one torch thread for the whole pool: a model restoring its own count would change the others' mid-run
    with cpu_threads(1, torch.device("cpu")), ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(fit_and_score, jobs[w::workers]) for w in range(workers)]

        def results() -> Iterator[tuple[str, str]]:
            for future in as_completed(futures):
                yield from future.result()

        try:
            yield results
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # what has not started never starts; what runs, ends
            raise


def fit_model(model: Any, train: Any, val: Any, *, resume: bool = False) -> None:
    """Fit any strategy of ``fit`` or the verdict: trainers get ``val`` to report on and ``resume``, others not."""
    if model.strategy_name in ("fine-tune", "scratch"):
        # With early stopping the strategy holds out part of train itself, so the reported metrics stay unbiased.
        early = getattr(model, "early_stopping", None) is not None
        model.fit(train, validation=None if early else val, resume=resume)
    else:
        model.fit(train)


def _resumable(cfg: FitConfig, run_dir: str | None) -> bool:
    """``resume`` asked for, and ``run_dir`` holds a checkpoint to resume from."""
    return cfg.resume and run_dir is not None and (Path(run_dir) / "checkpoints").is_dir()


def _combine(runs: list[dict[str, Any]], role: str, done: dict[str, str], n: int) -> str:
    """One seed's marks over the scored items: holdout's as they are, cross-fit's folds put back in place."""
    out = np.full(n, "-")
    for run in runs:
        name = next(name for name, r, _ in run["models"] if r == role)
        marks = done.get(name, "")
        if len(marks) == len(run["index"]):
            out[run["index"]] = list(marks)
    return "".join(out)


def _announce(cfg: FitConfig, estimator: Any, protocol: str, folds: int | None, n_val: int, n_scored: int) -> None:
    from .._progress import stderr_console

    kind = baseline_kind(cfg.baseline_model, estimator.backbone_.modality)
    what = {"small-cnn": "a small CNN from scratch at the images' own size", "tfidf": "TF-IDF + logistic regression",
            "arch": "the same architecture from scratch"}[kind]
    seeds = f", {cfg.baseline_seeds} seeds" if cfg.baseline_seeds > 1 else ""
    if protocol == "cross-fit":
        how = (f"{folds}-fold cross-fit of both models over all {n_scored} labelled items{seeds} (a {n_val}-item "
               f"validation split is too small to judge by)")
    else:
        how = f"scored on the {n_val} validation items{seeds}"
    stderr_console.print(f"transfer verdict: against {what}, {how}; --no-baseline skips it", highlight=False)


def _verdict_key(cfg: FitConfig, scored: Any, protocol: str, folds: int | None) -> str:
    """What the verdict's runs depend on: the settings that shape training, the protocol and the scored items."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("resume", "progress", "device", "num_workers", "baseline_seeds")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    if protocol != "holdout":
        digest.update(f"{protocol}:{folds}".encode())
    digest.update(item_digests(scored).tobytes())
    return digest.hexdigest()[:32]


def _finished_runs(out: Path, key: str) -> dict[str, str]:
    """The marks of the verdict's runs an interrupted run of the same settings finished (none otherwise)."""
    if not (out / "transferkit.json").is_file():
        return {}
    try:
        pending = read_meta(out).get("verdict")
    except TransferkitError:
        return {}
    if not isinstance(pending, dict) or pending.get("status") != "pending" or pending.get("key") != key:
        return {}
    return {k: v for k, v in pending.get("runs", {}).items() if isinstance(v, str)}
