"""Transferability scores: agreement with independent computations, properties every score must have, and errors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.covariance import LedoitWolf

from transferkit import DataError, TransferkitError
from transferkit.transferability import METRICS, hscore, leep, logme, nce, probe, score


def blobs(n: int, d: int, classes: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: class means drawn once and scaled by ``separation``, unit noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes  # every class present
    means = np.random.default_rng(1000).normal(size=(classes, d))
    return rng.normal(size=(n, d)) + separation * means[labels], labels


def noisy_source(labels: np.ndarray, flip: float, source_classes: int = 6, seed: int = 0) -> np.ndarray:
    """Hard source labels: target class c maps to source class c, except a ``flip`` fraction drawn at random."""
    rng = np.random.default_rng(seed)
    source = labels.copy()
    flipped = rng.random(len(labels)) < flip
    source[flipped] = rng.integers(0, source_classes, flipped.sum())
    return source


def soft(source: np.ndarray, source_classes: int = 6, confidence: float = 0.7) -> np.ndarray:
    """Source-classifier probabilities peaked on ``source``."""
    probabilities = np.full((len(source), source_classes), (1 - confidence) / (source_classes - 1))
    probabilities[np.arange(len(source)), source] = confidence
    return probabilities


# --- agreement with independent computations ---------------------------------------------------------------


def direct_log_evidence(features: np.ndarray, y: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """Bayesian linear-regression log evidence with the full d x d matrices (no eigendecomposition)."""
    alpha, beta = math.exp(log_alpha), math.exp(log_beta)
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.inv(a) @ features.T @ y
    _, log_det = np.linalg.slogdet(a)
    return (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
            - beta / 2 * np.sum((features @ m - y) ** 2) - alpha / 2 * m @ m - log_det / 2)


def direct_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """max over (alpha, beta) by Nelder-Mead on the log-parameters, from several starts, per one-vs-rest class."""
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        runs = [minimize(lambda p, y=y: -direct_log_evidence(features, y, *p), start, method="Nelder-Mead",
                         options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20_000})
                for start in [(0.0, 0.0), (-3.0, 3.0), (3.0, -3.0), (10.0, 1.0)]]
        evidences.append(max(-r.fun for r in runs))
    return float(np.mean(evidences) / len(features))


@pytest.mark.parametrize("n, d", [(60, 8), (20, 50)], ids=["n>d", "d>n"])
def test_logme_matches_direct_evidence_maximisation(n: int, d: int) -> None:
    # In the d > n case one class has a lower second maximum (beta -> inf, exact interpolation) that the paper's
    # start alpha = beta = 1 converges to; this checks the global maximum is found.
    rng = np.random.default_rng(7)
    labels = np.arange(n) % 3
    features = rng.normal(size=(n, d))
    features[:, :3] += 0.8 * np.eye(3)[labels]
    assert logme(features, labels) == pytest.approx(direct_logme(features, labels), rel=1e-4)


def test_leep_matches_explicit_loops() -> None:
    rng = np.random.default_rng(3)
    n, z = 40, 5
    labels = rng.integers(0, 3, n)
    theta = rng.dirichlet(np.ones(z), n)
    theta[:, 4] = 0.0  # a source class no input uses: P(z) = 0
    theta /= theta.sum(axis=1, keepdims=True)
    joint = [[0.0] * z for _ in range(3)]
    for i in range(n):
        for k in range(z):
            joint[labels[i]][k] += theta[i][k] / n
    total = 0.0
    for i in range(n):
        eep = 0.0
        for k in range(z):
            marginal = sum(joint[y][k] for y in range(3))
            if marginal > 0:
                eep += joint[labels[i]][k] / marginal * theta[i][k]
        total += math.log(eep)
    assert leep(theta, labels) == pytest.approx(total / n, rel=1e-12)


def test_nce_matches_counting() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, 200)
    source = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 7, 200))
    pairs, sources = Counter(zip(source.tolist(), labels.tolist(), strict=True)), Counter(source.tolist())
    conditional_entropy = -sum(c / 200 * math.log(c / sources[z]) for (z, _), c in pairs.items())
    assert nce(source, labels) == pytest.approx(-conditional_entropy, rel=1e-12)
    assert nce(soft(source, 7), labels) == pytest.approx(-conditional_entropy, rel=1e-12)  # argmax of probabilities


def test_hscore_unregularised_matches_formula() -> None:
    features, labels = blobs(120, 6, 3, 0.7)
    class_mean_features = np.stack([features[labels == y].mean(axis=0) for y in labels])
    expected = np.trace(np.linalg.pinv(np.cov(features, rowvar=False)) @ np.cov(class_mean_features, rowvar=False))
    assert hscore(features, labels, shrinkage=None) == pytest.approx(expected, rel=1e-9)


def test_hscore_shrinkage_matches_formula() -> None:
    features, labels = blobs(50, 12, 4, 0.7)
    n, d = features.shape
    covariance = np.cov(features, rowvar=False, bias=True)
    between = np.cov(np.stack([features[labels == y].mean(axis=0) for y in labels]), rowvar=False, bias=True)
    a = 0.3
    shrunk = (1 - a) * covariance + a * np.trace(covariance) / d * np.eye(d)
    assert hscore(features, labels, shrinkage=a) == pytest.approx(
        np.trace(np.linalg.inv(shrunk) @ ((1 - a) * between)), rel=1e-9)
    # "auto" is the same formula with scikit-learn's Ledoit-Wolf amount.
    amount = LedoitWolf().fit(features).shrinkage_
    assert 0 < amount < 1
    assert hscore(features, labels) == pytest.approx(hscore(features, labels, shrinkage=amount), rel=1e-9)


# --- properties ------------------------------------------------------------------------------------------------


def _score_all(features: np.ndarray, labels: np.ndarray, source: np.ndarray) -> dict[str, float]:
    return {"logme": logme(features, labels), "hscore": hscore(features, labels), "probe": probe(features, labels),
            "hscore-unregularised": hscore(features, labels, shrinkage=None),
            "leep": leep(soft(source), labels), "nce": nce(source, labels)}


def test_every_score_ignores_how_classes_are_named() -> None:
    features, labels = blobs(90, 10, 3, 0.8)
    source = noisy_source(labels, 0.3)
    renamed = np.array(["zebra", "ant", "moth"])[labels]  # a permutation of the sorted order, and strings
    permuted = np.array([2, 0, 1])[labels]
    reference = _score_all(features, labels, source)
    for relabelled in (renamed, permuted):
        scores = _score_all(features, relabelled, source)
        assert scores == pytest.approx(reference, rel=1e-10)
    assert nce(np.array(list("abcdef"))[source], labels) == pytest.approx(reference["nce"], rel=1e-12)


@pytest.mark.parametrize("metric", ["logme", "hscore", "probe"])
def test_better_separated_features_score_higher(metric: str) -> None:
    scores = [METRICS[metric].function(*blobs(150, 16, 4, separation)) for separation in (0.0, 0.3, 0.6, 1.2)]
    assert all(np.diff(scores) > 0), scores


def test_more_informative_source_scores_higher() -> None:
    labels = np.arange(300) % 4
    sources = [noisy_source(labels, flip) for flip in (0.0, 0.3, 0.6, 1.0)]
    leeps = [leep(soft(s), labels) for s in sources]
    nces = [nce(s, labels) for s in sources]
    assert all(np.diff(leeps) < 0) and all(np.diff(nces) < 0), (leeps, nces)
    assert nces[0] == 0.0  # Z determines Y
    assert all(v <= 0 for v in leeps + nces)
    # LEEP of a source head that knows nothing is the log-likelihood of the class frequencies.
    assert leep(np.full((300, 6), 1 / 6), labels) == pytest.approx(math.log(1 / 4), rel=1e-12)


def test_hscore_with_shrinkage_stays_meaningful_when_features_outnumber_samples() -> None:
    # 30 samples in 200 dimensions: the sample covariance has rank 29.
    scores = [hscore(*blobs(30, 200, 3, separation)) for separation in (0.0, 0.2, 0.4, 0.8)]
    assert all(np.isfinite(scores)) and all(0 <= s <= 2 for s in scores)
    assert all(np.diff(scores) > 0), scores
    # The unregularised H-score is the documented failure: with d >= n - 1 the within-class scatter cannot span
    # the data, and every feature set, informative or pure noise, scores C - 1.
    unregularised = [hscore(*blobs(30, 200, 3, separation), shrinkage=None) for separation in (0.0, 0.8)]
    assert unregularised == pytest.approx([2.0, 2.0], rel=1e-6)


def test_logme_casts_float32_and_handles_more_dimensions_than_samples() -> None:
    features, labels = blobs(40, 100, 4, 1.0)
    assert logme(features.astype(np.float32), labels) == pytest.approx(
        logme(features.astype(np.float32).astype(np.float64), labels), rel=1e-12)
    assert logme(*blobs(40, 100, 4, 1.0)) > logme(*blobs(40, 100, 4, 0.0))
    # No signal at all (the alpha -> inf boundary): w = 0 and beta = n / |y|^2, in closed form.
    no_signal = (math.log(10 / 5) - math.log(2 * math.pi) - 1) / 2
    assert logme(np.zeros((10, 3)), np.arange(10) % 2) == pytest.approx(no_signal, rel=1e-9)
    assert hscore(np.ones((10, 3)), np.arange(10) % 2) == 0.0


def test_logme_stays_finite_and_continuous_when_a_class_is_fit_exactly() -> None:
    # Every class lies in the span of 3 directions of 60 samples: a noise-free fit, unbounded evidence (the fixed
    # point ran beta to the float limit: 336). Capped, it scores like a fit to within 1e-6, and still above noise.
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    exact = np.eye(3)[labels]
    near = exact + 1e-6 * rng.normal(size=exact.shape)
    assert math.isfinite(logme(exact, labels)) and logme(exact, labels) == pytest.approx(logme(near, labels), rel=0.05)
    assert logme(exact, labels) > logme(exact + 0.1 * rng.normal(size=exact.shape), labels)


def test_probe_is_the_held_out_accuracy_of_a_logistic_regression() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = blobs(120, 6, 3, 0.7)
    # Independently: the same folds (read back from probe's assignment) through a scikit-learn pipeline.
    from transferkit.transferability.probe import _fold_of

    folds = _fold_of(labels, 3, 5, 0)
    assert [np.bincount(labels[folds == f]).tolist() for f in range(5)] == [[8, 8, 8]] * 5  # stratified
    correct = 0
    for f in range(5):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        model.fit(features[folds != f], labels[folds != f])
        correct += int((model.predict(features[folds == f]) == labels[folds == f]).sum())
    assert probe(features, labels) == pytest.approx(correct / 120, abs=1e-12)
    assert 0.4 < probe(features, labels) < 1.0  # better than chance (1/3), not trivially perfect
    # Classes smaller than `folds` lower the number of folds instead of failing.
    assert 0 <= probe(features[:9], labels[:9], folds=5) <= 1


def test_score_dispatches_by_name() -> None:
    features, labels = blobs(60, 5, 3, 1.0)
    probabilities = soft(noisy_source(labels, 0.2))
    assert set(METRICS) == {"logme", "hscore", "leep", "nce", "probe"}
    assert all(info.higher_is_better for info in METRICS.values())
    assert {name: info.needs for name, info in METRICS.items()} == {
        "logme": "features", "hscore": "features", "leep": "source_probabilities", "nce": "source_probabilities",
        "probe": "features"}
    for name in ("logme", "LogME", "H-score", "leep", "nce", "Probe"):
        key = name.lower().replace("-", "")
        inputs = probabilities if METRICS[key].needs == "source_probabilities" else features
        assert score(name, features=features, labels=labels, source_probabilities=probabilities) == \
            METRICS[key].function(inputs, labels)


# --- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda f, y: logme(np.where(f > 1.5, np.nan, f), y), r"non-finite values .* drop those rows"),
    (lambda f, y: hscore(np.where(f > 1.5, np.inf, f), y), r"non-finite"),
    (lambda f, y: logme(f, y[:-1]), r"Got 29 labels for 30 rows of features"),
    (lambda f, y: leep(soft(y), y[:-2]), r"Got 28 labels for 30 rows of source_probabilities"),
    (lambda f, y: logme(f, np.zeros(30)), r"at least 2 classes. Got 1"),
    (lambda f, y: nce(y, np.ones(30)), r"at least 2 classes"),
    (lambda f, y: logme(f[:, 0], y), r"2-D array .* Got shape \(30,\)"),
    (lambda f, y: hscore(f, y.reshape(-1, 1)), r"1-D array .* Got shape \(30, 1\)"),
    (lambda f, y: leep(np.log(soft(y)), y), r"apply a softmax"),
    (lambda f, y: hscore(f, y, shrinkage="lw"), r"shrinkage must be 'auto'.* Got 'lw'"),
    (lambda f, y: hscore(f, y, shrinkage=1.5), r"Got 1.5"),
    (lambda f, y: probe(f, np.r_[y[:-1], 7]), r"at least 2 samples .* 1 class\(es\) with 1 sample.*metric='logme'"),
    (lambda f, y: probe(f, y, folds=1), r"folds must be an integer >= 2. Got 1"),
    (lambda f, y: probe(f[:, 0], y), r"2-D array"),
    (lambda f, y: score("logmee", features=f, labels=y), r"Unknown transferability metric 'logmee'.*Did you mean: logme"),
    (lambda f, y: score("leep", features=f, labels=y), r"source model's classifier.*use metric='logme'"),
    (lambda f, y: score("hscore", source_probabilities=soft(y), labels=y), r"Got features=None"),
])
def test_bad_input_is_refused_with_the_fix(call, match: str) -> None:
    features, labels = blobs(30, 4, 3, 1.0)
    with pytest.raises(DataError, match=match) as caught:
        call(features, labels)
    assert isinstance(caught.value, TransferkitError)
    assert "\n" not in str(caught.value)  # one line for the CLI
