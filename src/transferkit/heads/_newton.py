"""Many small L2-regularised logistic regressions solved at once by a batched damped Newton method.

Newton's method with a backtracking (Armijo) line search (Boyd & Vandenberghe, *Convex Optimization*, 2004, §9.5),
run on a stack of problems in numpy: every step is a few batched matrix products and one batched linear solve, so
80 problems cost about what one costs, where scikit-learn pays its per-fit overhead 80 times. Each problem ``j``
minimises, over ``W`` ``(r, m)`` and an unpenalised intercept ``b`` ``(m,)``,

    0.5 ||W||² + C_j Σ_i s_ji CE(Z_j W + b, y_ji)

with ``m = 1`` and the logistic loss for two classes, ``m = K`` and the softmax cross-entropy otherwise: the objective
of scikit-learn's ``LogisticRegression`` (L2, lbfgs, multinomial beyond two classes), strictly convex in ``W``, so the
optimum is the same (the decisions and probabilities; lbfgs stops at ``tol=1e-4``, this at a gradient 10⁴ times
smaller). Zero-padded features and zero-weight rows change nothing, which lets problems of different sizes share one
stack.

The softmax is unchanged by adding one constant to every intercept, so its Hessian is singular along that direction;
the gradient never points along it, and adding ``u uᵀ`` (``u`` the unit vector of that direction) to the Hessian
makes the step the exact Newton step in the other directions (the optimum is not regularised). A tiny Levenberg
damping on the step guards the binary intercept when a problem is separable.
"""

from __future__ import annotations

import numpy as np

#: the stop: largest gradient entry relative to ``C Σ s`` (scikit-learn's lbfgs stops at 1e-4 on that scale)
TOL = 1e-8
MAX_ITER = 100


def _augment(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z, np.ones(z.shape[:2] + (1,))], axis=2)  # the intercept's column


def _losses(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-row loss ``(B, n)``: logistic for ``m = 1`` (target 0/1), softmax cross-entropy otherwise (one-hot)."""
    if scores.shape[2] == 1:
        s = scores[..., 0]
        return np.logaddexp(0.0, s) - target[..., 0] * s
    top = scores.max(2, keepdims=True)
    lse = (top + np.log(np.exp(scores - top).sum(2, keepdims=True)))[..., 0]
    return lse - (scores * target).sum(2)


def _objective(theta: np.ndarray, za: np.ndarray, target: np.ndarray, cw: np.ndarray) -> np.ndarray:
    return 0.5 * (theta[:, :-1] ** 2).sum((1, 2)) + (cw * _losses(za @ theta, target)).sum(1)


def fit_logistic_batch(z: np.ndarray, y: np.ndarray, weight: np.ndarray, c: np.ndarray, n_classes: int, *,
                       tol: float = TOL, max_iter: int = MAX_ITER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve a stack of L2-regularised logistic regressions exactly.

    Args:
        z: ``(B, n, r)`` features of each problem (zero-padded to a common ``n`` and ``r``).
        y: ``(B, n)`` class codes in ``[0, n_classes)`` (anything on padded rows).
        weight: ``(B, n)`` non-negative row weights; 0 on padded rows.
        c: ``(B,)`` inverse L2 strengths.
        n_classes: ``K >= 2``; two classes fit one vector (``m = 1``), more fit ``K``.
        tol: stop when every problem's largest gradient entry is below ``tol × C Σ s``.
        max_iter: at most this many Newton steps.

    Returns:
        ``(coef (B, r, m), intercept (B, m), converged (B,))``; decision scores are ``z @ coef + intercept``.

    Example:
        >>> z = np.array([[[0.0], [1.0], [2.0], [3.0]]]); y = np.array([[0, 0, 1, 1]])
        >>> coef, b, ok = fit_logistic_batch(z, y, np.ones((1, 4)), np.array([1.0]), 2)
        >>> bool(ok[0]) and coef.shape == (1, 1, 1)
        True
    """
    z = np.asarray(z, dtype=np.float64)
    batch, n, r = z.shape
    m = 1 if n_classes == 2 else n_classes
    za = _augment(z)
    target = (y[..., None] == 1).astype(float) if m == 1 else np.eye(m)[y]
    cw = np.asarray(c, dtype=np.float64)[:, None] * np.asarray(weight, dtype=np.float64)
    scale = np.maximum(cw.sum(1), 1e-300)
    theta = np.zeros((batch, r + 1, m))
    penalised = np.ones((r + 1, m))
    penalised[-1] = 0.0
    # the Hessian's fixed part, in the (feature, class) flattening of theta: the penalty, the null direction of the
    # softmax's intercepts, and a tiny damping that only shapes steps
    fixed = np.diag(penalised.ravel() + 1e-12)
    if m > 1:
        fixed[r * m:, r * m:] += 1.0 / m
    converged = np.zeros(batch, dtype=bool)
    f = _objective(theta, za, target, cw)
    for _ in range(max_iter):
        live = np.flatnonzero(~converged)  # converged problems leave the stack: the weak strengths need 3-5 steps
        step, grad, done = _newton_step(theta[live], za[live], target[live], cw[live], fixed, penalised,
                                        tol * scale[live])
        converged[live[done]] = True
        if converged.all():
            break
        live, step, grad = live[~done], step[~done], grad[~done]
        theta[live], f[live] = _line_search(theta[live], step, grad, f[live], za[live], target[live], cw[live])
    return theta[:, :-1], theta[:, -1], converged


def _newton_step(theta: np.ndarray, za: np.ndarray, target: np.ndarray, cw: np.ndarray, fixed: np.ndarray,
                 penalised: np.ndarray, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Newton step, gradient, converged)`` of each problem of the stack."""
    batch, n, r1 = za.shape
    m = theta.shape[2]
    scores = za @ theta
    if m == 1:
        prob = 1.0 / (1.0 + np.exp(-scores))
    else:
        prob = np.exp(scores - scores.max(2, keepdims=True))
        prob /= prob.sum(2, keepdims=True)
    grad = penalised * theta + np.swapaxes(za, 1, 2) @ (cw[..., None] * (prob - target))
    done = np.abs(grad).max((1, 2)) <= tol
    if m == 1:
        hess = np.swapaxes(za, 1, 2) @ ((prob * (1 - prob)) * cw[..., None] * za)
    else:
        # Σ_i s_i (diag(p_i) − p_i p_iᵀ) ⊗ z_i z_iᵀ, as the diagonal part minus one Gram matrix
        outer = (za[..., :, None] * prob[..., None, :]).reshape(batch, n, r1 * m)
        diag = np.einsum("bni,bnj,bnk->kbij", za * cw[..., None], za, prob)  # (m, B, r+1, r+1)
        hess = -np.swapaxes(outer, 1, 2) @ (cw[..., None] * outer)
        hess.reshape(batch, r1, m, r1, m)[:, :, np.arange(m), :, np.arange(m)] += diag  # a view: adds in place
    step = np.linalg.solve(hess + fixed, grad.reshape(batch, r1 * m, 1)).reshape(theta.shape)
    return step, grad, done


def _line_search(theta: np.ndarray, step: np.ndarray, grad: np.ndarray, f: np.ndarray, za: np.ndarray,
                 target: np.ndarray, cw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each problem's step halved until it decreases the objective enough (Armijo); ``(theta, objective)``."""
    slope = (grad * step).sum((1, 2))  # the decrease a unit step promises (> 0: the Hessian is positive definite)
    t = np.ones(len(theta))
    for _ in range(60):
        trial = theta - t[:, None, None] * step
        f_trial = _objective(trial, za, target, cw)
        # a decrease below the objective's rounding cannot be checked: near the optimum the full step is taken
        ok = (f_trial <= f - 1e-4 * t * slope) | (slope <= 1e-13 * np.abs(f))
        if ok.all():
            break
        t = np.where(ok, t, t / 2)
    return np.where(ok[:, None, None], trial, theta), np.where(ok, f_trial, f)


def padded_path(problems: list[tuple[np.ndarray, np.ndarray]], cs: tuple[float, ...],
                n_classes: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Every problem ``(z (n_j, r_j), codes (n_j,))`` at every strength in one stack; ``[problem][strength] → (coef
    (r_j, m), intercept (m,))``. Problems are zero-padded to the largest ``n`` and ``r``, padded rows weigh 0."""
    n = max(len(codes) for _, codes in problems)
    r = max(z.shape[1] for z, _ in problems)
    stack = len(problems) * len(cs)
    z_all, y_all, w_all = np.zeros((stack, n, r)), np.zeros((stack, n), dtype=np.intp), np.zeros((stack, n))
    for j, (z, codes) in enumerate(problems):
        rows = slice(j * len(cs), (j + 1) * len(cs))
        z_all[rows, :len(codes), :z.shape[1]] = z
        y_all[rows, :len(codes)] = codes
        w_all[rows, :len(codes)] = 1.0
    coef, intercept, _ = fit_logistic_batch(z_all, y_all, w_all, np.tile(np.asarray(cs, dtype=float), len(problems)),
                                            n_classes)
    return [[(coef[j * len(cs) + i, :z.shape[1]], intercept[j * len(cs) + i]) for i in range(len(cs))]
            for j, (z, _) in enumerate(problems)]
