"""Calibration: the reliability diagram, the expected calibration error, and temperature scaling.

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017: the confidence of a
prediction (its top probability) should match how often such predictions are right. The reliability diagram and the
ECE bin predictions by confidence into ``M = 15`` equal-width bins; ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|``.
Temperature scaling divides the logits by one scalar ``T > 0`` fitted by minimising the negative log-likelihood on
held-out data; the arg-max, so the accuracy, does not change.

Heads here are of every kind (scikit-learn's too), so the logits are the log-probabilities: ``softmax(log p / T)``
equals ``softmax(z / T)`` for ``p = softmax(z)``, whatever constant ``log p`` is shifted by.

Protocol (the report's data is the only held-out data there is): ``T`` is **cross-fitted** over two stratified
halves — fitted on one half, applied to the other, and the other way round — so the "after" ECE is measured on
predictions ``T`` never saw. The ``T`` to apply from then on is fitted on all of the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 15
_EPS = 1e-12


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)``, row by row: probabilities as the temperature-scaled model gives them.

    Example:
        >>> apply_temperature(clf.predict_proba(X), report["calibration"]["temperature"])
    """
    logits = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, None)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def reliability(proba: np.ndarray, truth: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Per confidence bin: ``edges``, mean ``confidence``, ``accuracy`` and ``count`` (None where empty); ``ece``."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    conf, acc, count = [], [], []
    ece = 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        count.append(n)
        conf.append(float(confidence[inside].mean()) if n else None)
        acc.append(float(correct[inside].mean()) if n else None)
        if n:
            ece += n / len(truth) * abs(float(correct[inside].mean()) - float(confidence[inside].mean()))
    return {"edges": edges.tolist(), "confidence": conf, "accuracy": acc, "count": count, "ece": float(ece)}


def expected_calibration_error(proba: np.ndarray, truth: np.ndarray, bins: int = BINS) -> float:
    return float(reliability(proba, truth, bins)["ece"])


def negative_log_likelihood(proba: np.ndarray, truth: np.ndarray) -> float:
    return float(-np.log(np.clip(proba[np.arange(len(truth)), truth], _EPS, None)).mean())


def fit_temperature(proba: np.ndarray, truth: np.ndarray) -> float:
    """The ``T`` in [0.05, 20] that minimises the NLL of ``apply_temperature(proba, T)`` (bounded 1-d search on
    ``log T``; the NLL is convex in ``1 / T``)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: negative_log_likelihood(apply_temperature(proba, np.exp(log_t)), truth),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def temperature_scaling(proba: np.ndarray, truth: np.ndarray, *, seed: int = 0) -> dict[str, Any] | None:
    """Cross-fitted temperature scaling of held-out predictions (see the module's protocol).

    Args:
        proba: ``(n, classes)`` predicted probabilities.
        truth: ``(n,)`` true class indices into ``proba``'s columns.
        seed: seeds the split into halves.

    Returns:
        ``temperature`` (fitted on all), ``halves`` (the two cross-fitted ``T``), ``ece_before``, ``ece_after``,
        ``nll_before``, ``nll_after``, ``before``/``after`` (:func:`reliability`), ``protocol``; None with fewer
        than 4 items (no half to fit on).
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    proba = np.asarray(proba, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    if len(truth) < 4:
        return None
    counts = np.bincount(truth)
    stratify = counts[counts > 0].min() >= 2
    folds = (StratifiedKFold(2, shuffle=True, random_state=seed).split(proba, truth) if stratify
             else KFold(2, shuffle=True, random_state=seed).split(proba))
    after = np.empty_like(proba)
    halves = []
    for fit_part, score_part in folds:
        t = fit_temperature(proba[fit_part], truth[fit_part])
        halves.append(t)
        after[score_part] = apply_temperature(proba[score_part], t)
    before_bins, after_bins = reliability(proba, truth), reliability(after, truth)
    return {
        "temperature": fit_temperature(proba, truth), "halves": halves,
        "ece_before": before_bins["ece"], "ece_after": after_bins["ece"],
        "nll_before": negative_log_likelihood(proba, truth), "nll_after": negative_log_likelihood(after, truth),
        "before": before_bins, "after": after_bins, "bins": BINS,
        "protocol": "2-fold cross-fit (T fitted on one half, scored on the other)"
                    + ("" if stratify else ", unstratified: a class has a single item"),
    }
