"""H-score: Bao, Li, Huang, Wang, Wang, Zheng, "An Information-Theoretic Approach to Transferability in Task
Transfer Learning", ICIP 2019; with the shrinkage estimator of Ibrahim, Ponomareva, Mazumder, "Newer is not always
better: Rethinking transferability metrics, their peculiarities, stability and performance", ECML-PKDD 2022.

H-score measures how well the class-conditional means of the features stand out against the features' spread:

    H(f) = tr( cov(f)^-1 cov(E[f | y]) )

where ``cov(E[f | y])`` is the covariance of the features after replacing each sample by its class mean, i.e. the
between-class covariance ``sum_c p_c (mu_c - mu)(mu_c - mu)^T``. It lies in ``[0, C - 1]``; higher is better.

With as many dimensions as samples the sample covariance is singular and the original H-score (a pseudo-inverse)
becomes meaningless: when d >= n - 1 it equals C - 1 for *every* feature set, because the within-class scatter no
longer spans the space. Ibrahim et al. therefore shrink the covariance towards a scaled identity,
``cov_a = (1 - a) cov(f) + a tr(cov(f)) / d I``, with the Ledoit-Wolf choice of ``a``, and shrink the between-class
covariance by the same ``1 - a`` (the shrunk total covariance is ``(1 - a)`` within + ``(1 - a)`` between + ``a``
isotropic):

    H_a(f) = tr( cov_a(f)^-1 (1 - a) cov(E[f | y]) )

A peculiarity of that estimator to know when reading scores: Ledoit-Wolf shrinks *more* the closer the features are
to isotropic (its target), so nearly whitened features get ``a`` close to 1 and their score is scaled down by
``1 - a``. Compare H-scores with the same ``shrinkage`` setting only.

All covariances here use the 1/n normalisation (scikit-learn's ``empirical_covariance`` and ``ledoit_wolf``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike
from sklearn.covariance import empirical_covariance, ledoit_wolf, shrunk_covariance

from .._errors import DataError
from ._checks import as_features, class_sums, encode_labels


def _check_shrinkage(shrinkage: float | str | None) -> None:
    if shrinkage is None or (isinstance(shrinkage, str) and shrinkage == "auto"):
        return
    if isinstance(shrinkage, int | float) and not isinstance(shrinkage, bool) and 0.0 <= shrinkage <= 1.0:
        return
    raise DataError(f"hscore: shrinkage must be 'auto' (Ledoit-Wolf), None (the original H-score) or a number in "
                    f"[0, 1]. Got {shrinkage!r} instead.")


def _solve(covariance: np.ndarray, rhs: np.ndarray, positive_definite: bool) -> np.ndarray:
    if positive_definite:  # shrunk towards a positive multiple of I
        try:
            return scipy.linalg.solve(covariance, rhs, assume_a="pos")
        except np.linalg.LinAlgError:  # a tiny shrinkage can leave it singular up to round-off
            pass
    # The original H-score's pseudo-inverse, with its cutoff (pinned: numpy's default may change).
    return np.linalg.pinv(covariance, rcond=1e-15, hermitian=True) @ rhs


def hscore(features: ArrayLike, labels: ArrayLike, shrinkage: float | str | None = "auto") -> float:
    """H-score of the features for the labels: between-class covariance measured against the feature covariance.

    Args:
        features: ``(n, d)`` features of the target samples from the candidate backbone.
        labels: ``(n,)`` class labels of any hashable kind, at least 2 classes.
        shrinkage: ``"auto"`` (default): the Ledoit-Wolf shrinkage of Ibrahim et al., stable when d is close
            to or above n; ``None``: the original H-score of Bao et al. with a pseudo-inverse (unstable when
            d >= n: it then scores every feature set C - 1); a float ``a`` in [0, 1]: a fixed shrinkage.

    Returns:
        The H-score, in ``[0, C - 1]``; higher is better.

    Raises:
        DataError: features not a finite 2-D array, labels not 1-D of the same length, fewer than 2 classes, or
            an invalid ``shrinkage``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 3, 30)
        >>> features = rng.normal(size=(30, 200)) + np.eye(3, 200)[labels] * 3.0
        >>> hscore(features, labels) > hscore(rng.normal(size=(30, 200)), labels)
        True
    """
    _check_shrinkage(shrinkage)
    x = as_features(features, "hscore")
    codes, n_classes = encode_labels(labels, len(x), "hscore")
    n = len(x)
    counts = np.bincount(codes, minlength=n_classes)
    centred_means = class_sums(x, codes, n_classes) / counts[:, None] - x.mean(axis=0)  # (C, d)
    weights = counts / n
    if isinstance(shrinkage, str):
        covariance, amount = ledoit_wolf(x)
    else:
        amount = 0.0 if shrinkage is None else float(shrinkage)
        covariance = shrunk_covariance(empirical_covariance(x), amount) if amount > 0 else empirical_covariance(x)
    if not np.trace(covariance) > 0:  # constant features: no spread, and no class means apart from it
        return 0.0
    solved = _solve(covariance, centred_means.T, positive_definite=amount > 0)  # cov^-1 (mu_c - mu): (d, C)
    # tr(P sum_c p_c m_c m_c^T) = sum_c p_c m_c^T P m_c
    return float((1.0 - amount) * np.sum(weights * np.einsum("cd,dc->c", centred_means, solved)))
