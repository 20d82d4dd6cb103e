"""Unsupervised transfer: cluster pretrained features, with no label at all, and judge it against the raw inputs.

The features of a network pretrained on a large source task group images (or texts) by what they show far better
than their pixels (or words) do; k-means on them is the standard first probe of a representation (Caron, Bojanowski,
Joulin & Douze, "Deep Clustering for Unsupervised Learning of Visual Features", ECCV 2018, evaluate every layer this
way). Here:

- features are L2-normalised and reduced by PCA to at most :data:`PCA_DIMS` dimensions (whitening off), which keeps
  k-means' Euclidean distances close to cosine distances and makes it fast;
- ``method``: ``kmeans`` (k-means++, 10 restarts), ``agglomerative`` (Ward linkage), ``hdbscan`` (density-based; it
  chooses its own number of clusters and may leave items as noise, label -1) or ``scan`` (clustering heads trained
  to agree with each item's nearest neighbours, :mod:`.scan`);
- ``k="auto"``: the k in ``k_range`` with the best silhouette (Rousseeuw 1987) on a sample of the items (for
  ``scan``: the k that k-means' silhouette chooses, then SCAN at that k — training SCAN for every k would be slow);
- with labels: NMI, ARI and cluster accuracy (the best one-to-one match of clusters to classes, by the Hungarian
  algorithm), computed the same way for the baseline: clustering the raw inputs (pixels at 32 px, or TF-IDF of
  the texts) with the same method and k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import TransferkitError, did_you_mean

METHODS = ("kmeans", "agglomerative", "hdbscan", "scan")
#: PCA dimensions the features are reduced to before clustering
PCA_DIMS = 64
#: items scored by the silhouette when choosing k (it is quadratic)
SILHOUETTE_SAMPLE = 2000


@dataclass
class Clustering:
    """What :func:`cluster_features` found: ``labels`` (``(n,)``, -1 for HDBSCAN noise), ``k``, how k was chosen
    (``silhouettes``: k → score when ``k="auto"``), and the silhouette of the result."""

    labels: np.ndarray
    k: int
    method: str
    silhouette: float | None
    silhouettes: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "method": self.method, "silhouette": self.silhouette,
                "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
                "sizes": np.bincount(self.labels[self.labels >= 0]).tolist() if (self.labels >= 0).any() else []}


def prepare(features: Any, seed: int = 0, dims: int = PCA_DIMS) -> np.ndarray:
    """L2-normalised rows reduced by PCA to ``min(dims, n - 1, d)`` dimensions."""
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise TransferkitError(f"Clustering needs a 2-D array of at least 3 items. Got shape {x.shape} instead.")
    x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    n_components = int(min(dims, len(x) - 1, x.shape[1]))
    return PCA(n_components, random_state=seed).fit_transform(x) if n_components < x.shape[1] else x


def _fit(x: np.ndarray, method: str, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans

    if method == "kmeans":
        return KMeans(k, n_init=10, random_state=seed).fit_predict(x)
    if method == "scan":
        from .scan import scan_cluster

        return scan_cluster(x, k, seed=seed).labels
    if method == "agglomerative":
        return AgglomerativeClustering(k, linkage="ward").fit_predict(x)
    return HDBSCAN(min_cluster_size=max(5, len(x) // 100), copy=True).fit_predict(x)


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float | None:
    from sklearn.metrics import silhouette_score

    keep = labels >= 0
    if len(np.unique(labels[keep])) < 2:
        return None
    sample = int(min(SILHOUETTE_SAMPLE, keep.sum()))
    return float(silhouette_score(x[keep], labels[keep], sample_size=sample, random_state=seed))


def cluster_features(features: Any, *, k: int | str = "auto", method: str = "kmeans", k_range: range = range(2, 21),
                     seed: int = 0, prepared: bool = False) -> Clustering:
    """Cluster ``features`` ``(n, d)`` (see the module docstring).

    Args:
        features: the items' features (pretrained, or raw inputs for the baseline).
        k: the number of clusters, or ``"auto"`` (best silhouette over ``k_range``; HDBSCAN chooses its own).
        method: one of :data:`METHODS`.
        k_range: the k tried by ``"auto"`` (capped at ``n - 1``).
        seed: seeds PCA, k-means and the silhouette sample.
        prepared: the features are already normalised and reduced (:func:`prepare`).

    Example:
        >>> result = cluster_features(tk.extract_features(bb, data).features, k="auto")
        >>> result.k, result.labels[:5]
    """
    if method not in METHODS:
        raise TransferkitError(f"method must be one of {', '.join(METHODS)}. Got {method!r} instead."
                               f"{did_you_mean(method, METHODS)}")
    x = np.asarray(features, dtype=np.float64) if prepared else prepare(features, seed)
    if method == "hdbscan":
        labels = _fit(x, method, 0, seed)
        return Clustering(labels, int(len(np.unique(labels[labels >= 0]))), method, _silhouette(x, labels, seed))
    if k == "auto":
        scores = {}
        search = "kmeans" if method == "scan" else method
        for candidate in (c for c in k_range if 2 <= c < len(x)):
            score = _silhouette(x, _fit(x, search, candidate, seed), seed)
            if score is not None:
                scores[candidate] = round(score, 4)
        if not scores:
            raise TransferkitError(f"No k in {k_range} fits {len(x)} items; pass a k between 2 and {len(x) - 1}.")
        best = max(scores, key=lambda c: scores[c])
        labels = _fit(x, method, best, seed)
        score = scores[best] if method == search else _silhouette(x, labels, seed)
        return Clustering(labels, best, method, score, scores)
    if not isinstance(k, (int, np.integer)) or not 2 <= k < len(x):
        raise TransferkitError(f"k must be 'auto' or an integer in [2, {len(x) - 1}]. Got {k!r} instead.")
    labels = _fit(x, method, int(k), seed)
    return Clustering(labels, int(k), method, _silhouette(x, labels, seed))


def cluster_accuracy(true: Any, pred: Any) -> float:
    """Accuracy of the best one-to-one map of clusters to classes (Hungarian algorithm); noise (-1) counts wrong."""
    from scipy.optimize import linear_sum_assignment

    t, p = np.asarray(true), np.asarray(pred)
    classes, t_codes = np.unique(t, return_inverse=True)
    keep = p >= 0
    clusters, p_codes = np.unique(p[keep], return_inverse=True)
    table = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(table, (p_codes, t_codes[keep]), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(t))


def cluster_scores(true: Any, pred: Any) -> dict[str, float]:
    """``{"nmi", "ari", "accuracy"}`` of cluster labels against the true labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"nmi": round(float(normalized_mutual_info_score(true, pred)), 4),
            "ari": round(float(adjusted_rand_score(true, pred)), 4),
            "accuracy": round(cluster_accuracy(true, pred), 4)}


def raw_inputs(dataset: Any, size: int = 32) -> np.ndarray:
    """The baseline's features: pixels of each image at ``size`` px (grey when every image is grey) for images,
    TF-IDF (word 1-2-grams, sublinear tf) for texts."""
    if getattr(dataset, "modality", "image") == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit_transform(
            list(dataset.items)).toarray()
    from ..data.native import decode, grey_if_grey, native_size

    images, _, _ = decode(dataset, native_size(dataset, size), 3)
    images = grey_if_grey(images)
    return images.reshape(len(images), -1).numpy().astype(np.float64) / 255.0
