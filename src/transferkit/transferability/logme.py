"""LogME: You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021.

Each class ``c`` gives a one-vs-rest target ``y = [label == c]`` that is modelled by Bayesian linear regression on
the features ``F`` (n x d): prior ``w ~ N(0, I / alpha)``, noise ``y | w ~ N(F w, I / beta)``. Its log evidence is

    L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log 2pi - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log|A|

with ``A = alpha I + beta F^T F`` and ``m = beta A^-1 F^T y``. The paper's fixed point (MacKay's) maximises it
(started here from a grid search rather than ``alpha = beta = 1``, see ``_starting_point``):
``gamma = sum_i beta s_i / (alpha + beta s_i)``, ``alpha <- gamma / |m|^2``, ``beta <- (n - gamma) / |F m - y|^2``,
where ``s_i`` are the eigenvalues of ``F^T F``. LogME is the mean over classes of ``max L / n``.

Every term is a sum over the spectrum of ``F``, so one eigendecomposition serves all classes and all iterations:
of ``F^T F`` (d x d) when n > d, otherwise of ``F F^T`` (n x n). Features are used as given (no centring, no bias
column), as in the paper.

A guard the paper does not need (its n is much larger than d) and few-shot ranking does. When a class's targets
lie exactly in the span of fewer feature directions than there are samples, the data admit a noise-free fit and the
evidence grows without bound as ``beta`` grows: the fixed point then ran to the float limit and LogME to nonsense.
It happened to a network that collapsed in a fine-tune at too high a learning rate (LogME 14.1 where the other runs
scored about -0.3; bench/README.md, ``warm_logme.py``); copies of an image do it too (ten duplicated rows among 100
samples of 500-d features: 18.8 instead of -0.61). So ``beta`` is capped at ``MAX_PRECISION``: no 0/1 target is
fit closer than a standard deviation of 1e-4, a cap no inexact fit comes near, so that an exact fit scores like a
fit to within 1e-4 (finite, continuous). Copies still inflate the score when d >= n (0.14 instead of -0.61 above):
:func:`~transferkit.rank_backbones` scores each distinct image once.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import as_features, class_sums, encode_labels

MAX_ITERATIONS = 1000
TOLERANCE = 1e-12  # change of the log evidence per sample between iterations
MAX_PRECISION = 1e8  # the largest noise precision beta: the 0/1 targets' noise has a standard deviation >= 1e-4


def _spectrum(features: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero eigenvalues ``s`` of ``F^T F``, squared projections ``z^2`` of each one-vs-rest target on the
    matching left singular vectors (k x C), and each target's squared residual off the column space of ``F`` (C,).

    ``M^T y_c`` for a 0/1 target is the sum of the rows of ``M`` in class ``c``: no n x C one-hot matrix is built.
    """
    n, d = features.shape
    if n > d:
        eigenvalues, v = np.linalg.eigh(features.T @ features)
        # = sqrt(s) * z, without forming the n x d left singular vectors
        projections = v.T @ class_sums(features, codes, n_classes).T
    else:
        eigenvalues, u = np.linalg.eigh(features @ features.T)
        projections = class_sums(u, codes, n_classes).T
    # Directions below round-off are the null space: F has no component there, so they carry no signal.
    keep = eigenvalues > max(eigenvalues.max(), 0.0) * max(n, d) * np.finfo(np.float64).eps
    s = eigenvalues[keep]
    z2 = projections[keep] ** 2
    if n > d:
        z2 = z2 / s[:, None]
    if len(s) == n:  # F spans R^n: nothing lies off its column space (exactly, not up to round-off)
        residual0 = np.zeros(n_classes)
    else:  # |y_c|^2 is the class size
        residual0 = np.maximum(np.bincount(codes, minlength=n_classes) - z2.sum(axis=0), 0.0)
    return s, z2, residual0


def _log_evidence(alpha: np.ndarray, beta: np.ndarray, s: np.ndarray, z2: np.ndarray, residual0: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``L(alpha, beta)`` of each target column (C,), and the fixed point's ``gamma``, ``n - gamma``, ``|m|^2`` and
    ``|F m - y|^2``.

    Written with ``lambda = alpha / beta`` so that no term cancels another when the maximum lies at a boundary
    (alpha -> inf: the labels look like noise; beta -> inf when d >= n: exact interpolation):
    ``2L = (n - k) log beta + k log alpha - sum_i log(lambda + s_i) - n log 2pi - beta r0 - alpha sum_i z_i^2 /
    (lambda + s_i)``, with k non-zero eigenvalues and r0 the residual off the column space of F.
    """
    k = len(s)
    t = alpha / beta + s[:, None]  # lambda + s_i, one column per target
    evidence = ((n - k) * np.log(beta) + k * np.log(alpha) - np.log(t).sum(axis=0) - n * np.log(2 * np.pi)
                - beta * residual0 - alpha * (z2 / t).sum(axis=0)) / 2
    gamma = (s[:, None] / t).sum(axis=0)
    rest = (n - k) + (alpha / beta / t).sum(axis=0)  # n - gamma, summed directly: gamma -> n must not round to n
    m2 = (s[:, None] * z2 / t**2).sum(axis=0)
    residual = residual0 + ((alpha / beta) ** 2 * z2 / t**2).sum(axis=0)
    return evidence, gamma, rest, m2, residual


def _starting_point(s: np.ndarray, z2: np.ndarray, residual0: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``(alpha, beta)`` of each column on a log grid of ``lambda = alpha / beta``, ``beta`` profiled out.

    The paper starts at ``alpha = beta = 1``. When d >= n the evidence can have a second, lower maximum at
    ``beta -> inf`` (the labels interpolated exactly) that the iteration then finds; starting in the basin of
    the global maximum avoids it. With ``lambda`` fixed, the best ``beta`` is ``n / Q`` (at most ``MAX_PRECISION``)
    where ``Q(lambda) = |y|^2 - sum_i z_i^2 s_i / (lambda + s_i)``.
    """
    scale = s if len(s) else np.ones(1)
    grid = np.geomspace(scale.min() * 1e-3, scale.max() * 1e3, 61)
    q = residual0 + (grid[:, None] / (grid[:, None] + s)) @ z2  # (grid, C); > 0 because every |y|^2 > 0
    beta = np.minimum(n / q, MAX_PRECISION)
    evidence = np.stack([_log_evidence(lam * b, b, s, z2, residual0, n)[0] for lam, b in zip(grid, beta, strict=True)])
    best = np.argmax(evidence, axis=0)
    beta = beta[best, np.arange(z2.shape[1])]
    return grid[best] * beta, beta


def _max_log_evidence(s: np.ndarray, z2: np.ndarray, residual0: np.ndarray, n: int) -> np.ndarray:
    """The maximised log evidence of each target column (C,), all columns iterated together."""
    floor = 1e-300  # keeps alpha and beta positive and finite when gamma, |m|^2 or the residual vanish
    alpha, beta = _starting_point(s, z2, residual0, n)
    evidence, gamma, rest, m2, residual = _log_evidence(alpha, beta, s, z2, residual0, n)
    for _ in range(MAX_ITERATIONS):
        alpha = np.clip(gamma / np.maximum(m2, floor), floor, 1 / floor)
        beta = np.clip(rest / np.maximum(residual, floor), floor, MAX_PRECISION)
        previous = evidence
        evidence, gamma, rest, m2, residual = _log_evidence(alpha, beta, s, z2, residual0, n)
        # At a boundary maximum alpha or beta diverge while the evidence settles: stop on the evidence.
        if np.all(np.abs(evidence - previous) <= TOLERANCE * n):
            break
    return evidence


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME: the maximised Bayesian linear-regression evidence of the labels given the features.

    Higher is better. Compare backbones on the same labeled set only: the value depends on the number and the
    balance of the classes (features with no signal at all score ``(log(n / n_c) - log(2 pi) - 1) / 2``
    averaged over the class sizes ``n_c``). No class is fit closer than ``MAX_PRECISION`` allows, and copies of
    a sample inflate the score when d >= n: pass each sample once (see the module's docstring).

    Args:
        features: ``(n, d)`` features of the target samples from the candidate backbone (any float dtype).
        labels: ``(n,)`` class labels of any hashable kind, at least 2 classes.

    Returns:
        The mean over classes of the maximised log evidence divided by ``n``.

    Raises:
        DataError: features not a finite 2-D array, labels not 1-D of the same length, or fewer than 2 classes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 3, 300)
        >>> features = rng.normal(size=(300, 16)) + 2.0 * np.eye(3, 16)[labels]
        >>> logme(features, labels) > logme(rng.normal(size=(300, 16)), labels)
        True
    """
    x = as_features(features, "logme")
    codes, n_classes = encode_labels(labels, len(x), "logme")
    n = len(x)
    s, z2, residual0 = _spectrum(x, codes, n_classes)
    return float(np.mean(_max_log_evidence(s, z2, residual0, n)) / n)
