"""The batched Newton solver of the tuned logistic head's CV grid: scikit-learn's optimum, and the same choices."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from transferkit.heads import tuned
from transferkit.heads._newton import fit_logistic_batch, padded_path


def _problem(seed: int, n: int, r: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    z = rng.normal(size=(n, r)) + rng.normal(size=(k, r))[y] * 0.7
    return z, y, rng.uniform(0.2, 3.0, size=n)


def _stack(problems: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pad: int) -> tuple[np.ndarray, ...]:
    """Zero-padded to ``pad`` more rows and features than the largest problem; padded rows weigh 0 and get label 1."""
    n = max(len(y) for _, y, _ in problems) + pad
    r = max(z.shape[1] for z, _, _ in problems) + pad
    z_all, y_all, w_all = np.zeros((len(problems), n, r)), np.ones((len(problems), n), int), np.zeros((len(problems), n))
    for j, (z, y, w) in enumerate(problems):
        z_all[j, :len(y), :z.shape[1]], y_all[j, :len(y)], w_all[j, :len(y)] = z, y, w
    return z_all, y_all, w_all


@pytest.mark.parametrize("k", [2, 4])
def test_the_batched_solver_reaches_scikit_learns_optimum_with_weights_and_padding(k):
    problems = [_problem(0, 24, 5, k), _problem(1, 15, 9, k), _problem(2, 30, 3, k)]
    cs = np.array([0.01, 1.0, 30.0])
    z_all, y_all, w_all = _stack(problems, pad=4)
    coef, intercept, converged = fit_logistic_batch(z_all, y_all, w_all, cs, k)
    assert converged.all()
    assert coef.shape == (3, z_all.shape[2], 1 if k == 2 else k)
    for j, ((z, y, w), c) in enumerate(zip(problems, cs, strict=True)):
        ref = LogisticRegression(C=c, tol=1e-12, max_iter=20000).fit(z, y, sample_weight=w)
        r = z.shape[1]
        np.testing.assert_allclose(coef[j, :r].T, ref.coef_, atol=2e-5)
        np.testing.assert_array_equal(coef[j, r:], 0.0)  # padded features stay out of the model
        probe = np.random.default_rng(9).normal(size=(40, r)) * 2
        scores = probe @ coef[j, :r] + intercept[j]
        if k == 2:
            proba = 1 / (1 + np.exp(-scores[:, 0]))
            np.testing.assert_allclose(proba, ref.predict_proba(probe)[:, 1], atol=1e-6)
        else:
            proba = np.exp(scores - scores.max(1, keepdims=True))
            np.testing.assert_allclose(proba / proba.sum(1, keepdims=True), ref.predict_proba(probe), atol=1e-6)


def test_a_problem_solved_in_a_stack_is_the_problem_solved_alone():
    problems = [(z, y) for z, y, _ in (_problem(3, 20, 6, 3), _problem(4, 12, 11, 3))]
    together = padded_path(problems, (0.1, 10.0), 3)
    alone = padded_path(problems[1:], (0.1, 10.0), 3)
    for (coef, b), (coef_alone, b_alone) in zip(together[1], alone[0], strict=True):
        np.testing.assert_allclose(coef, coef_alone, atol=1e-8)
        np.testing.assert_allclose(b - b.mean(), b_alone - b_alone.mean(), atol=1e-8)


def test_a_separable_multiclass_problem_at_a_weak_penalty_converges():
    # separable: the optimum's intercepts are free along the softmax's null direction and its weights are large
    z = np.repeat(np.eye(3) * 5, 4, axis=0)
    y = np.repeat(np.arange(3), 4)
    coef, intercept, converged = fit_logistic_batch(z[None], y[None], np.ones((1, 12)), np.array([100.0]), 3)
    assert converged.all() and np.isfinite(coef).all()
    assert abs(intercept.sum()) < 1e-6  # the step never moves along the null direction


def _features(seed: int, per_class: int, k: int, d: int = 100) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(per_class * k) % k
    return rng.normal(size=(len(y), d)) + rng.normal(size=(k, d))[y] * 0.4, y


@pytest.mark.parametrize(("seed", "per_class", "k"), [(0, 8, 2), (1, 4, 2), (2, 24, 2), (3, 4, 3), (4, 3, 5)])
def test_cross_validate_chooses_what_the_scikit_learn_path_chooses(monkeypatch, seed, per_class, k):
    x, y = _features(seed, per_class, k)
    monkeypatch.setattr(tuned, "BATCHED_MAX_PARAMS", 0)
    with threadpool_limits(1):  # as fit_tuned runs it: many small problems
        old = tuned.cross_validate("logistic", x, y, seed=seed)
    monkeypatch.setattr(tuned, "BATCHED_MAX_PARAMS", 120)

    def no_sklearn(*args, **kwargs):
        raise AssertionError("the scikit-learn path ran for a problem the batched solver takes")

    monkeypatch.setattr(tuned, "_path", no_sklearn)
    with threadpool_limits(1):
        new = tuned.cross_validate("logistic", x, y, seed=seed)
    assert (new["standardize"], new["C"], new["default_kept"]) == (old["standardize"], old["C"], old["default_kept"])
    # lbfgs stops at tol=1e-4: log-losses agree closely; an accuracy may flip where a weak strength leaves every score
    # near a tie, which is why the choice breaks ties by the log-loss
    np.testing.assert_allclose([g["log_loss"] for g in new["grid"]], [g["log_loss"] for g in old["grid"]], atol=0.05)
    assert np.mean([abs(a["accuracy"] - b["accuracy"]) for a, b in zip(old["grid"], new["grid"], strict=True)]) < 0.05


def test_problems_above_the_bound_take_the_scikit_learn_path(monkeypatch):
    x, y = _features(5, 4, 3)
    monkeypatch.setattr(tuned, "BATCHED_MAX_PARAMS", 10)  # 3 classes x (rank 8 + 1) = 27 parameters

    def no_newton(*args, **kwargs):
        raise AssertionError("batched solver ran above its bound")

    monkeypatch.setattr(tuned, "padded_path", no_newton)
    with threadpool_limits(1):
        assert tuned.cross_validate("logistic", x, y)["folds"] == 4
