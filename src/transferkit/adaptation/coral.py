"""CORAL: align the second-order statistics of source features to the target's.

Sun, Feng & Saenko, "Return of Frustratingly Easy Domain Adaptation" (AAAI 2016): whiten the source features with
their own covariance and re-colour them with the target's, ``x_s (C_s + λI)^(-1/2) (C_t + λI)^(1/2)``, then train any
classifier on the re-coloured source and apply it to the target unchanged. No target label, no training of the
backbone, one eigendecomposition per domain. The paper regularises both covariances with the identity (λ = 1) on
standardised features; here the features are standardised with the source's scale first, so λ keeps that meaning.
Unlike the paper, the means are aligned too (source mean moved onto the target's): it costs nothing and a shifted
mean is the first thing a linear head trips over.

Deep CORAL (Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV 2016 workshops) is the
same idea as a loss while fine-tuning: :func:`coral_loss`, the squared Frobenius distance of the two batch
covariances over ``4 d²``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import TransferkitError


def _matrix_power(cov: np.ndarray, power: float) -> np.ndarray:
    """``cov ** power`` of a symmetric positive-definite matrix (by its eigendecomposition)."""
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 1e-12, None)
    return (vectors * values**power) @ vectors.T


class CORAL:
    """Correlation alignment of source features to target features (a scikit-learn-style transformer).

    Args:
        regularization: λ added to both covariances' diagonal (on features standardised by the source's scale).
        align_mean: also move the source mean onto the target's.

    Example:
        >>> coral = CORAL().fit(source_features, target_features)
        >>> head = LogisticRegression().fit(coral.transform(source_features), source_labels)
        >>> head.predict(target_features)  # the target stays as it is
    """

    def __init__(self, regularization: float = 1.0, align_mean: bool = True):
        self.regularization = regularization
        self.align_mean = align_mean

    def fit(self, source: Any, target: Any) -> CORAL:
        """Learn the map from ``source`` ``(n_s, d)`` to ``target`` ``(n_t, d)`` feature statistics."""
        xs, xt = _as_features(source, "source"), _as_features(target, "target")
        if xs.shape[1] != xt.shape[1]:
            raise TransferkitError(f"source and target features must have the same width. Got {xs.shape[1]} and "
                                   f"{xt.shape[1]} instead: extract both with the same backbone and layer.")
        if self.regularization <= 0:
            raise TransferkitError(f"regularization must be > 0. Got {self.regularization!r} instead.")
        self.scale_ = xs.std(0) + 1e-8
        zs, zt = xs / self.scale_, xt / self.scale_
        self.source_mean_, self.target_mean_ = zs.mean(0), zt.mean(0)
        eye = np.eye(zs.shape[1]) * self.regularization
        cs = np.cov(zs - self.source_mean_, rowvar=False) + eye
        ct = np.cov(zt - self.target_mean_, rowvar=False) + eye
        self.matrix_ = _matrix_power(cs, -0.5) @ _matrix_power(ct, 0.5)
        return self

    def transform(self, source: Any) -> np.ndarray:
        """Source features re-coloured with the target's covariance (and mean): ``(n, d)``."""
        if not hasattr(self, "matrix_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("This CORAL instance is not fitted yet. Call 'fit' with source and target features.")
        z = _as_features(source, "source") / self.scale_ - self.source_mean_
        z = z @ self.matrix_ + (self.target_mean_ if self.align_mean else self.source_mean_)
        return z * self.scale_

    def fit_transform(self, source: Any, target: Any) -> np.ndarray:
        return self.fit(source, target).transform(source)


def coral_loss(source: Any, target: Any) -> Any:
    """Deep CORAL's loss between a source and a target batch of features ``(B, d)`` (torch tensors, differentiable)."""
    d = source.shape[1]

    def cov(x: Any) -> Any:
        x = x - x.mean(0, keepdim=True)
        return x.T @ x / max(1, x.shape[0] - 1)

    return ((cov(source) - cov(target)) ** 2).sum() / (4 * d * d)


def _as_features(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise TransferkitError(f"{name} features must be a 2-D array of at least 2 rows. Got shape {a.shape} instead.")
    if not np.isfinite(a).all():
        raise TransferkitError(f"{name} features hold NaN or infinite values; re-extract them.")
    return a
