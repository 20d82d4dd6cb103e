"""How far apart two domains are in feature space: the proxy A-distance and the maximum mean discrepancy.

- Proxy A-distance (Ben-David, Blitzer, Crammer & Pereira, "Analysis of Representations for Domain Adaptation",
  NIPS 2006; used by Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016): train a classifier to
  tell source from target features; with its held-out error ε, ``PAD = 2 (1 - 2 ε)``. 0: indistinguishable, 2:
  perfectly separable. Here ε is the stratified k-fold error of a logistic regression on standardised features, the
  two domains subsampled to equal size so that chance is 0.5.
- MMD (Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A Kernel Two-Sample Test", JMLR 2012): the unbiased estimate of
  the squared MMD with a Gaussian kernel whose width is the median pairwise distance (the "median heuristic").

Adaptation should lower both on the features it changes; a domain gap that does not move says the method left the
representation alone (CORAL on cached features moves only the source, so measure the re-coloured source against
the target).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import TransferkitError

#: at most this many items per domain enter a gap measure (both are quadratic or cross-validated)
MAX_ITEMS = 2000


def _pair(source: Any, target: Any, seed: int, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    xs, xt = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if xs.ndim != 2 or xt.ndim != 2 or xs.shape[1] != xt.shape[1]:
        raise TransferkitError(f"source and target features must be 2-D of the same width. Got shapes {xs.shape} and "
                               f"{xt.shape} instead.")
    n = min(len(xs), len(xt), max_items)
    if n < 4:
        raise TransferkitError(f"A domain gap needs at least 4 items per domain. Got {len(xs)} source and {len(xt)} "
                               f"target items.")
    rng = np.random.default_rng(seed)
    return xs[rng.permutation(len(xs))[:n]], xt[rng.permutation(len(xt))[:n]]


def proxy_a_distance(source: Any, target: Any, *, folds: int = 5, seed: int = 0, max_items: int = MAX_ITEMS) -> float:
    """``2 (1 - 2 ε)`` with ε the cross-validated error of a source-vs-target logistic regression, in [0, 2]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs, xt = _pair(source, target, seed, max_items)
    x = np.concatenate([xs, xt])
    y = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    k = int(min(folds, len(xs)))
    accuracy = cross_val_score(clf, x, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed)).mean()
    return float(np.clip(2 * (1 - 2 * (1 - accuracy)), 0.0, 2.0))


def mmd(source: Any, target: Any, *, bandwidth: float | None = None, seed: int = 0,
        max_items: int = MAX_ITEMS) -> float:
    """Unbiased squared MMD with a Gaussian kernel (``bandwidth`` None: the median pairwise distance)."""
    xs, xt = _pair(source, target, seed, max_items)
    x = np.concatenate([xs, xt])
    squares = (x * x).sum(1)
    dist2 = np.clip(squares[:, None] + squares[None, :] - 2 * x @ x.T, 0, None)
    if bandwidth is None:
        upper = dist2[np.triu_indices(len(x), 1)]
        bandwidth = float(np.sqrt(np.median(upper))) or 1.0
    kernel = np.exp(-dist2 / (2 * bandwidth**2))
    n = len(xs)
    kss, ktt, kst = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    off = n * (n - 1)
    return float((kss.sum() - np.trace(kss)) / off + (ktt.sum() - np.trace(ktt)) / off - 2 * kst.mean())


def domain_gap(source: Any, target: Any, *, seed: int = 0) -> dict[str, float]:
    """Both measures: ``{"proxy_a_distance", "mmd"}``."""
    return {"proxy_a_distance": round(proxy_a_distance(source, target, seed=seed), 4),
            "mmd": round(mmd(source, target, seed=seed), 6)}
