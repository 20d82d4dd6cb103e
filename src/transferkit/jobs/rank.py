"""``transferkit rank``: which backbone and layer to reuse, scored in seconds; with ``race`` the best-scored
candidates are then fine-tuned briefly and ranked by that instead (:mod:`transferkit.selection.race`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..data import open_dataset, select_classes
from ..data.seen import seen_warnings
from ..features.cache import default_cache_dir
from ..selection.race import DEFAULT_LRS, race
from ..selection.rank import rank_backbones, sample_balanced


@dataclass
class RankConfig:
    """Everything ``transferkit rank`` needs.

    Attributes:
        data: labelled target data (a class-per-folder directory, a ``path,label`` CSV, a built-in name, texts).
        candidates: backbone specs, comma-separated; ``random:<spec>`` (an untrained floor) and ``bundle:<dir>`` too.
        layers: ``last`` (pooled pre-logits), ``all`` feature layers, or comma-separated layer names.
        sample: score on about this many images: ceil(sample / classes) of each (default: all).
        metric: transferability score (:data:`~transferkit.transferability.METRICS`).
        classes: keep only these classes (names or indices, ``"0-4"``).
        seed: seeds the sample and the race.
        cache: use the on-disk feature cache.
        image_size: score images at this square size, the one you will fine-tune at (default: each candidate's own).
        race: race the top this many scored candidates, ``"all"`` of them, or none (None).
        race_lrs: backbone learning rates each raced candidate is tried with.
        race_epochs: ``(min, max)``: fine-tuning epochs of the first rung and the cap.
        race_folds: cross-validation folds of the race.
        race_state: JSON file keeping every finished fine-tune, so that a stopped race resumes (default: in the
            cache directory; none without ``cache``).
        text_column, label_column, encoding: how a text file (CSV/TSV/JSONL) is read.
        backbone_options: options of the backbones' source (text: ``pooling``, ``max_length``).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: images per batch of feature extraction (default 64).
        progress: show progress bars.
    """

    data: str
    candidates: str
    layers: str = "last"
    sample: int | None = None
    metric: str = "logme"
    classes: str | None = None
    seed: int = 0
    cache: bool = True
    image_size: int | None = None
    race: int | Literal["all"] | None = None
    race_lrs: list[float] = dataclasses.field(default_factory=lambda: list(DEFAULT_LRS))
    race_epochs: tuple[int, int] = (1, 9)
    race_folds: int = 3
    race_state: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    backbone_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    device: str = "auto"
    batch_size: int | None = None
    progress: bool = True


def rank(cfg: RankConfig) -> dict[str, Any]:
    """Score the candidates (and race the best, with ``cfg.race``) on ``cfg.data``.

    Returns:
        ``{"data", "metric", "images", "copies", "ranking", "warnings"}`` (and ``race`` when raced): ``ranking`` holds
        one row per (candidate, layer), best first; ``warnings`` names candidates trained on some of the images.
    """
    data = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding)
    if cfg.classes:
        data = select_classes(data, cfg.classes)
    rows = rank_backbones(data, cfg.candidates, layers=cfg.layers, sample=cfg.sample, metric=cfg.metric,
                          seed=cfg.seed, device=cfg.device, cache=cfg.cache, batch_size=cfg.batch_size or 64,
                          progress=cfg.progress, backbone_options=cfg.backbone_options, image_size=cfg.image_size)
    result: dict[str, Any] = {"data": data.name, "metric": rows[0]["metric"],
                              "images": max(r.get("images", 0) for r in rows),
                              "copies": max(r.get("copies", 0) for r in rows), "ranking": rows}
    if cfg.race is not None:
        result.update(race_rows(cfg, data, rows))
    result["warnings"] = candidate_warnings(result)
    return result


def race_rows(cfg: RankConfig, data: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Race the top ``cfg.race`` scored rows; they come first, in race order, the others after them by score."""
    scored = [r for r in rows if r["score"] is not None]
    top = scored if cfg.race == "all" else scored[:cfg.race]
    state: str | Path | None = cfg.race_state
    if state is None and cfg.cache:
        state = default_cache_dir() / "race"
        state.mkdir(parents=True, exist_ok=True)
    min_epochs, max_epochs = cfg.race_epochs
    subset = sample_balanced(data, cfg.sample, cfg.seed)  # the images that were scored
    raced = race(subset, [{**r, "image_size": cfg.image_size} for r in top], lrs=cfg.race_lrs,
                 folds=cfg.race_folds, min_epochs=min_epochs, max_epochs=max_epochs, seed=cfg.seed,
                 device=cfg.device, state=state, progress=cfg.progress, backbone_options=cfg.backbone_options)
    rest = rows[len(top):]  # rows come best first with the unscored last, so the raced ones are a prefix
    ranking = []
    for i, row in enumerate(raced + rest, 1):
        row = {k: v for k, v in row.items() if k != "image_size"}
        ranking.append({**row, "score_rank": row["rank"], "rank": i})
    return {"ranking": ranking,
            "race": {"candidates": len(top), "lrs": cfg.race_lrs, "folds": cfg.race_folds,
                     "epochs": [min_epochs, max_epochs], "seconds": raced[0]["race_seconds"]}}


def candidate_warnings(result: dict[str, Any]) -> list[str]:
    """One line per candidate whose weights were trained on some of the ranked images."""
    seen = {row["backbone"]: row.get("source_seen") for row in result["ranking"]}
    what = "its score and race accuracy are" if result.get("race") else "its score is"
    return [line for spec, k in seen.items()
            for line in seen_warnings(spec, k, result["images"], "ranked images", f"{what} optimistic",
                                      "rank on images it was not trained on")]
