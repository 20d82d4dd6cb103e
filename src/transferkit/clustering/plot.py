"""A 2-D map of clustered items (PCA or t-SNE of the prepared features), coloured by cluster, with thumbnails.

t-SNE (van der Maaten & Hinton, JMLR 2008) keeps neighbourhoods and is the usual picture of a representation; PCA is
instant and keeps global distances. Either way the map is only for looking: the clusters come from the features, not
from the map.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import TransferkitError
from .._utils import atomic_path

#: items drawn as thumbnails (or texts) on the map, spread over the clusters
THUMBNAILS = 60


def map_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(n, 2)`` coordinates of prepared features: ``pca`` or ``tsne``."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, init="pca", perplexity=float(min(30, max(2, (len(x) - 1) // 3))),
                    random_state=seed).fit_transform(x)
    raise TransferkitError(f"map must be 'pca' or 'tsne'. Got {method!r} instead.")


def save_cluster_map(coords: np.ndarray, labels: np.ndarray, path: str | os.PathLike[str], *, dataset: Any = None,
                     title: str = "", seed: int = 0) -> Path:
    """Scatter ``coords`` coloured by ``labels`` and overlay up to :data:`THUMBNAILS` items of ``dataset`` (images
    as thumbnails, texts as their first words); written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    fig, ax = plt.subplots(figsize=(9, 8), dpi=110)
    ax.scatter(coords[:, 0], coords[:, 1], c=np.where(labels >= 0, labels, -1), cmap="tab20", s=8, alpha=0.6)
    if dataset is not None:
        rng = np.random.default_rng(seed)
        for i in rng.permutation(len(coords))[:THUMBNAILS]:
            if getattr(dataset, "modality", "image") == "text":
                words = " ".join(str(dataset.items[i]).split()[:4])
                ax.annotate(words, coords[i], fontsize=6, alpha=0.8)
                continue
            thumb = _thumbnail(dataset, int(i))
            if thumb is not None:
                box = OffsetImage(thumb, zoom=0.6, cmap="gray" if thumb.ndim == 2 else None)
                ax.add_artist(AnnotationBbox(box, coords[i], frameon=False))
    ax.set_title(title or "clusters")
    ax.set_xticks([])
    ax.set_yticks([])
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, bbox_inches="tight", format="png")
    plt.close(fig)
    return out


def _thumbnail(dataset: Any, i: int, side: int = 32) -> np.ndarray | None:
    from PIL import Image

    item = dataset.items[i]
    try:
        img = Image.fromarray(item) if isinstance(item, np.ndarray) else Image.open(item)
        img.thumbnail((side, side))
        return np.asarray(img.convert("L") if img.mode in ("L", "I", "F", "1") else img.convert("RGB"))
    except (OSError, ValueError):
        return None
