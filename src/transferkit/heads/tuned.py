"""Heads that choose their own regularisation by cross-validation on the cached features.

A linear probe's accuracy depends on its L2 strength, and the right strength moves by orders of magnitude with the
number of labels, the feature layer and whether the features are standardised. Kornblith, Shlens & Le ("Do Better
ImageNet Models Transfer Better?", CVPR 2019) tune it on held-out data for every dataset; a fixed ``C`` loses up to
10 points at 5-30 labels per class (bench/heads.py). Here the strength ``C`` and the choice to standardise or not
are picked by stratified k-fold cross-validation on the training features, then the winner is refit on all of them.

Cheap because of the representer theorem: an L2-regularised linear model's weights lie in the span of its training
rows, so with ``n`` rows of ``d > n`` features the fit is exactly the same on the ``n`` coordinates of the rows in an
orthonormal basis of that span (``X = U S Vᵀ`` → fit on ``U S``, weights ``w = Vᵀ w_small``). A probe on 1,280-d
features of 50 images becomes a 50-d problem. The grid (2 scalings × 8 strengths × up to 5 folds × 2 repeats, ~160
fits) was then mostly scikit-learn's per-fit overhead. While its problems are small (at most
:data:`BATCHED_MAX_PARAMS` parameters: two classes up to ~150 items, three up to ~48, ten at 2 per class), one
split's 80 fits are solved at once by a batched damped Newton method (:mod:`._newton`): the same optimum (lower than
where lbfgs stops at ``tol=1e-4``), the same ``(standardize, C)`` chosen (bench/tuned_solver.py). The final refit
stays scikit-learn's.

The fitted heads are plain scikit-learn estimators (a ``LogisticRegression``, optionally after a
``StandardScaler``; a calibrated ``LinearSVC``), so bundles keep storing them as before; what was chosen is in
:func:`tuned_choice`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from ._newton import padded_path

#: the strengths tried (inverse L2), wide enough for raw and standardised features of any scale
CS = tuple(float(c) for c in np.logspace(-5, 2, 8))  # one per decade: finer moved no result of bench/heads.py
#: the SVM's: a hinge loss in the span of ``n`` rows separates them all, and large C then converges slowly for nothing
SVM_CS = tuple(float(c) for c in np.logspace(-5, -1, 5))
FOLDS = 5
#: the selection score is out-of-fold accuracy minus this times the log-loss: at 4 items per class accuracy moves in
#: steps of 1/n and ties across decades of C; the log-loss breaks them towards calibrated strengths
LOG_LOSS_WEIGHT = 0.2
#: (standardize, C) kept unless cross-validation finds a clearly better one (by more than one standard error of the
#: paired out-of-fold difference), and used when nothing can be held out: scikit-learn's own C on the raw features,
#: within 1.1 points of the best fixed head on every task of bench/heads.py
PRIOR = {"logistic": (False, 1.0), "svm": (False, 0.1)}
#: the logistic grid is solved by one batched Newton method while a problem has at most this many parameters
#: ((rank + 1) x (classes, or 1 for two)): its cost grows as their cube, scikit-learn's barely (bench/tuned_solver.py)
BATCHED_MAX_PARAMS = 120


def _row_basis(x: np.ndarray) -> np.ndarray:
    """``Vᵀ`` ``(r, d)``: an orthonormal basis of the span of the rows of ``x`` (all of ``R^d`` when ``d <= n``)."""
    if x.shape[1] <= x.shape[0]:
        return np.eye(x.shape[1])
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    return vt[s > s[0] * 1e-10] if s.size and s[0] > 0 else vt[:1]


def _folds(codes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A stratified fold index per item (each class dealt round-robin over the folds after a seeded shuffle)."""
    fold = np.empty(len(codes), dtype=np.intp)
    order = np.random.default_rng(seed).permutation(len(codes))
    seen: dict[int, int] = {}
    for i in order:
        fold[i] = seen.get(int(codes[i]), 0) % k
        seen[int(codes[i])] = seen.get(int(codes[i]), 0) + 1
    return fold


def _scaled(train: np.ndarray, other: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    if not standardize:
        return train, other
    scaler = StandardScaler().fit(train)
    return scaler.transform(train), scaler.transform(other)


def _path(kind: str, z_train: np.ndarray, y_train: np.ndarray, z_val: np.ndarray, cs: tuple[float, ...],
          seed: int) -> list[np.ndarray]:
    """Decision scores ``(n_val, n_classes)`` of the model at every strength, warm-started along the path."""
    out = []
    if kind == "logistic":
        model: Any = LogisticRegression(max_iter=500, warm_start=True, random_state=seed)
    else:
        model = LinearSVC(max_iter=2000, random_state=seed)
    for c in cs:
        model.set_params(C=c)
        model.fit(z_train, y_train)
        scores = model.decision_function(z_val)
        out.append(np.column_stack([-scores, scores]) / 2 if scores.ndim == 1 else scores)
    return out


def _paths(kind: str, problems: list[tuple[np.ndarray, ...]], n_classes: int, cs: tuple[float, ...],
           seed: int) -> list[np.ndarray]:
    """:func:`_path` of each ``(held-out rows, z_train, codes, z_val)`` problem, stacked ``(strengths, n_val,
    classes)``: every logistic one in one batched Newton solve (:mod:`._newton`) while they are small, else one
    scikit-learn path each."""
    params = (max(z.shape[1] for _, z, _, _ in problems) + 1) * (1 if n_classes == 2 else n_classes)
    if kind == "logistic" and params <= BATCHED_MAX_PARAMS:
        fits = padded_path([(z, codes) for _, z, codes, _ in problems], cs, n_classes)
        out = [np.stack([z_val @ coef + b for coef, b in path]) for (*_, z_val), path in zip(problems, fits, strict=True)]
        return [np.concatenate([-s, s], axis=2) / 2 if n_classes == 2 else s for s in out]
    with warnings.catch_warnings():  # a strength on the path may stop early; it is only scored
        warnings.simplefilter("ignore", ConvergenceWarning)
        return [np.stack(_path(kind, z, codes, z_val, cs, seed)) for _, z, codes, z_val in problems]


def repeats_for(n: int) -> int:
    """Repetitions of the k-fold split (reshuffled): 2 up to 200 items, then 1 (noise vs cost)."""
    return 2 if n <= 200 else 1


def cross_validate(kind: str, features: np.ndarray, labels: np.ndarray, *, cs: tuple[float, ...] | None = None,
                   folds: int = FOLDS, repeats: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Out-of-fold accuracy and log-loss of ``kind`` (``logistic`` or ``svm``) for each scaling and strength.

    Args:
        kind: ``logistic`` or ``svm``.
        features, labels: ``(n, d)`` training features and their ``(n,)`` labels.
        cs: the strengths tried (default :data:`CS`, :data:`SVM_CS` for the SVM).
        folds: at most this many stratified folds (fewer when a class has fewer items).
        repeats: repetitions with reshuffled folds, averaged (default :func:`repeats_for`).
        seed: seeds the folds.

    Returns:
        The choice: ``{"standardize", "C", "folds", "repeats", "cv_accuracy", "default_kept", "grid":
        [{standardize, C, accuracy, log_loss}, ...]}``, or the :data:`PRIOR` with ``"folds": None`` when a class
        has one item. The best maximises accuracy − :data:`LOG_LOSS_WEIGHT` × log-loss (of softmax margins for the
        SVM); the prior stays unless the best's accuracy exceeds it by more than one standard error of the paired
        per-item difference (with a few items per class, CV picks noise otherwise: bench/heads.py).
    """
    repeats = repeats or repeats_for(len(features))
    cs = cs or (CS if kind == "logistic" else SVM_CS)
    prior = PRIOR[kind]
    first = _grid(kind, features, labels, cs, folds, seed)
    if first is None:
        return {"standardize": prior[0], "C": prior[1], "folds": None, "repeats": 0, "cv_accuracy": None, "grid": [],
                "reason": "a class has a single item, so nothing can be held out: the default"}
    runs = [first] + [g for r in range(1, repeats) if (g := _grid(kind, features, labels, cs, folds, seed + 1000 * r))]
    k, configs = first[0], first[1]
    correct = np.mean([r[2] for r in runs], axis=0)  # (configs, items): right in how many of the repeats
    log_loss = np.mean([r[3] for r in runs], axis=0)
    accuracy, loss = correct.mean(1), log_loss.mean(1)
    best = int(np.argmax(accuracy - LOG_LOSS_WEIGHT * loss))
    default = configs.index(prior)
    # one standard error of the paired difference: the default stays unless the best is clearly better
    diff = correct[best] - correct[default]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    kept_default = accuracy[best] - accuracy[default] <= se
    pick = default if kept_default else best
    grid = [{"standardize": st, "C": c, "accuracy": float(a), "log_loss": float(ll)}
            for (st, c), a, ll in zip(configs, accuracy, loss, strict=True)]
    return {"standardize": configs[pick][0], "C": configs[pick][1], "folds": k, "repeats": repeats,
            "cv_accuracy": float(accuracy[pick]), "default_kept": bool(kept_default), "grid": grid}


def _grid(kind: str, features: np.ndarray, labels: np.ndarray, cs: tuple[float, ...], folds: int,
          seed: int) -> tuple[int, list[tuple[bool, float]], np.ndarray, np.ndarray] | None:
    """One k-fold split: ``(folds, configs, correct (configs, n), log_loss (configs, n))``; None if a class has one
    item."""
    x = np.asarray(features, dtype=np.float64)
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    k = int(min(folds, np.bincount(codes).min()))
    if k < 2 or len(classes) < 2:
        return None
    fold = _folds(codes, k, seed)
    problems: list[tuple[np.ndarray, ...]] = []  # per scaling and fold: (held-out rows, z_train, codes, z_val)
    for standardize in (False, True):
        for f in range(k):
            train, val = fold != f, fold == f
            x_train, x_val = _scaled(x[train], x[val], standardize)
            basis = _row_basis(x_train)
            problems.append((val, x_train @ basis.T, codes[train], x_val @ basis.T))
    scores = np.zeros((2, len(cs), len(x), len(classes)))  # (scaling, strength, item, class), out of fold
    for j, path in enumerate(_paths(kind, problems, len(classes), cs, seed)):
        scores[j // k][:, problems[j][0]] = path
    configs, correct, losses = [], [], []
    for standardize, per_c in zip((False, True), scores, strict=True):
        for c, s in zip(cs, per_c, strict=True):
            s = s - s.max(1, keepdims=True)
            log_proba = s - np.log(np.exp(s).sum(1, keepdims=True))
            configs.append((standardize, c))
            correct.append(s.argmax(1) == codes)
            losses.append(-log_proba[np.arange(len(codes)), codes])
    return k, configs, np.asarray(correct, dtype=float), np.asarray(losses)


def fit_tuned(kind: str, features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Choose by :func:`cross_validate`, refit on every item; ``(fitted scikit-learn classifier, choice)``."""
    # one BLAS thread: these are many small problems, and idle BLAS workers spinning on a busy 2-core machine made
    # the same grid 3-4x slower
    with threadpool_limits(1):
        return _fit_tuned(kind, np.asarray(features, dtype=np.float64), np.asarray(labels), seed)


def _fit_tuned(kind: str, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[Any, dict[str, Any]]:
    choice = cross_validate(kind, x, y, seed=seed)
    standardize, c = choice["standardize"], choice["C"]
    if kind == "logistic":
        head: Any = _lifted_logistic(x, y, standardize, c, seed)
    else:
        # probabilities from the SVM's margins: temperature scaling keeps its decisions (argmax) as they are; with
        # too few items per class for calibration folds, a softmax of the raw margins does the same
        counts = np.unique(y, return_counts=True)[1]
        svm = LinearSVC(C=c, max_iter=2000, random_state=seed)
        model = (CalibratedClassifierCV(svm, method=_margin_calibration(), cv=int(min(3, counts.min())),
                                        ensemble=False) if counts.min() >= 2 else svm)
        head = make_pipeline(StandardScaler(), model) if standardize else make_pipeline(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            head.fit(x, y)
    return head, choice


def _margin_calibration() -> str:
    """``temperature`` (scikit-learn >= 1.8: one scale for all margins, decisions unchanged), else ``sigmoid``."""
    allowed = getattr(CalibratedClassifierCV, "_parameter_constraints", {}).get("method", [])
    return "temperature" if any("temperature" in getattr(a, "options", ()) for a in allowed) else "sigmoid"


def _lifted_logistic(x: np.ndarray, y: np.ndarray, standardize: bool, c: float, seed: int) -> Any:
    """A logistic regression fitted in the span of the rows and expressed in the original ``d`` features."""
    scaler = StandardScaler().fit(x) if standardize else None
    xs = scaler.transform(x) if scaler is not None else x
    basis = _row_basis(xs)
    model = LogisticRegression(C=c, max_iter=2000, tol=1e-6, random_state=seed)  # small problem: converge it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(xs @ basis.T, y)
    model.coef_ = model.coef_ @ basis  # w = Vᵀ w_small: the same decisions on every input
    model.n_features_in_ = x.shape[1]
    return make_pipeline(scaler, model) if scaler is not None else model


def tuned_choice(choice: dict[str, Any]) -> dict[str, Any]:
    """What a bundle and ``--json`` keep of a choice: the winner and how it was found, not the whole grid."""
    return {k: v for k, v in choice.items() if k != "grid"}
