"""``transferkit cluster``: group unlabelled items by their pretrained features (see :mod:`transferkit.clustering`).

Writes into ``out``: ``assignments.csv`` (input, cluster, and the label when the data has one), ``clusters.json``
(what this returns), ``cluster_map.png`` (a 2-D map with thumbnails or texts). With labels it also clusters the raw
inputs (pixels or TF-IDF) the same way, so the report says what the pretrained features bought.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import TransferkitError
from .._utils import atomic_path, write_json_atomic

#: the default backbone per modality: the packaged, offline ones
DEFAULT_BACKBONES = {"image": "packaged:efficientnet_lite0", "text": "packaged:all-minilm-l6-v2",
                     "audio": "packaged:crepe-tiny"}


@dataclass
class ClusterConfig:
    """Everything ``transferkit cluster`` needs.

    Attributes:
        data: the items: a folder, a CSV, a text file or a built-in name (labels optional, used only to score).
        out: output directory.
        backbone: backbone spec (default: the packaged one for the data's modality).
        layer: feature layer (default: pooled pre-logits).
        random_init: the backbone's architecture without its pretrained weights (a floor to compare with).
        k: ``"auto"`` (by silhouette) or the number of clusters.
        method: ``kmeans``, ``agglomerative``, ``hdbscan`` or ``scan`` (SCAN heads on the kNN of the features).
        map: the 2-D map: ``pca``, ``tsne`` or ``none``.
        baseline: with labels, also cluster the raw inputs and score both.
        text_column, label_column, encoding: how a text file is read.
        device, batch_size, num_workers, cache, progress: extraction settings.
        seed: seeds PCA, k-means and the map.
    """

    data: str
    out: str
    backbone: str | None = None
    layer: str | None = None
    random_init: bool = False
    k: int | str = "auto"
    method: str = "kmeans"
    map: str = "pca"
    baseline: bool = True
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    device: str = "auto"
    batch_size: int = 64
    num_workers: int = 0
    cache: bool = True
    progress: bool = True
    seed: int = 0


def cluster_data(cfg: ClusterConfig) -> dict[str, Any]:
    """Extract, cluster, score and plot (see the module docstring); returns what ``clusters.json`` holds."""
    from ..backbones import create_backbone
    from ..clustering import cluster_features, cluster_scores, map_2d, prepare, raw_inputs, save_cluster_map
    from ..data import open_dataset
    from ..features import extract_features

    if cfg.map not in ("pca", "tsne", "none"):
        raise TransferkitError(f"`map` must be 'pca', 'tsne' or 'none'. Got {cfg.map!r} instead.")
    start = time.perf_counter()
    ds = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding)
    modality = getattr(ds, "modality", "image")
    spec = cfg.backbone or DEFAULT_BACKBONES.get(modality, DEFAULT_BACKBONES["image"])
    backbone = create_backbone(spec, pretrained=not cfg.random_init)
    extracted = extract_features(backbone, ds, layer=cfg.layer, cache=cfg.cache, batch_size=cfg.batch_size,
                                 num_workers=cfg.num_workers, device=cfg.device, progress=cfg.progress)
    assert extracted.features is not None
    x = prepare(extracted.features, seed=cfg.seed)
    result = cluster_features(x, k=cfg.k, method=cfg.method, seed=cfg.seed, prepared=True)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = None if ds.labels is None else np.asarray(ds.labels)[extracted.index]
    scores: dict[str, Any] | None = None
    if labels is not None:
        scores = {"pretrained": cluster_scores(labels, result.labels)}
        if cfg.baseline:
            raw = prepare(raw_inputs(ds.subset(extracted.index)), seed=cfg.seed)
            k = result.k if cfg.method != "hdbscan" else "auto"
            base = cluster_features(raw, k=k, method=cfg.method, seed=cfg.seed, prepared=True)
            scores["raw"] = cluster_scores(labels, base.labels)
            scores["raw_inputs"] = "TF-IDF" if modality == "text" else "pixels"
            scores["nmi_gain"] = round(scores["pretrained"]["nmi"] - scores["raw"]["nmi"], 4)
    csv_path = _write_assignments(out / "assignments.csv", ds, extracted.index, result.labels, labels)
    map_png = None
    if cfg.map != "none":
        coords = map_2d(x, cfg.map, seed=cfg.seed)
        map_png = str(save_cluster_map(coords, result.labels, out / "cluster_map.png", dataset=ds.subset(extracted.index),
                                       title=f"{result.k} clusters of {ds.name} ({spec}, {cfg.map})", seed=cfg.seed))
    report = {"data": ds.name, "backbone": spec, "layer": cfg.layer or "pre_logits", "items": len(extracted.index),
              **result.to_dict(), "scores": scores, "assignments_csv": str(csv_path), "map_png": map_png,
              "skipped": [list(s) for s in extracted.skipped], "seconds": round(time.perf_counter() - start, 2)}
    write_json_atomic(out / "clusters.json", report)
    return report


def _write_assignments(path: Path, ds: Any, index: np.ndarray, clusters: np.ndarray,
                       labels: np.ndarray | None) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["input", "cluster"] + (["label"] if labels is not None else []))
    for row, (i, c) in enumerate(zip(index, clusters, strict=True)):
        writer.writerow([ds.describe(int(i)), int(c)] + ([ds.classes[int(labels[row])]] if labels is not None else []))
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path

