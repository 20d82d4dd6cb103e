"""Heads for cached features: by name (``logistic``, ``linear``, ``mlp``, ``svm``, ``random-forest``,
``gradient-boosting``) or any scikit-learn classifier; and their conversion to torch modules for bundles.

``logistic`` (the default) and ``svm`` choose their L2 strength and whether to standardise by cross-validation on
the training features (:mod:`.tuned`); what they chose is their ``choice_`` after fitting.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from .._errors import TransferkitError, did_you_mean
from .modules import ModuleHead, Standardize, build_head_module
from .multitask import TASK_WEIGHTINGS, MultiTaskHead, MultiTaskLoss, multitask_config
from .torch_heads import TorchHeadClassifier
from .tuned import fit_tuned, tuned_choice


class TunedHead(ClassifierMixin, BaseEstimator):
    """A linear head whose strength ``C`` and standardisation are chosen by k-fold CV (:func:`.tuned.fit_tuned`).

    After ``fit``: ``estimator_`` (a plain scikit-learn classifier, what bundles store), ``choice_`` (what was
    chosen and its cross-validated accuracy), ``classes_``.
    """

    #: FeatureExtractionClassifier keeps ``estimator_`` (a plain scikit-learn classifier) in its bundle
    bundles_estimator = True

    def __init__(self, kind: str = "logistic", random_state: int = 0):
        self.kind = kind
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> TunedHead:
        self.estimator_, choice = fit_tuned(self.kind, X, y, seed=self.random_state)
        self.choice_ = tuned_choice(choice)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.estimator_.predict(X)


HEADS = {
    "logistic": lambda seed: TunedHead("logistic", random_state=seed),
    "linear": lambda seed: TorchHeadClassifier(hidden=(), random_state=seed),
    "mlp": lambda seed: TorchHeadClassifier(hidden=(512,), dropout=0.2, random_state=seed),
    # a linear SVM, its probabilities by temperature scaling of the margins (decisions unchanged)
    "svm": lambda seed: TunedHead("svm", random_state=seed),
    "random-forest": lambda seed: RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=seed),
    "gradient-boosting": lambda seed: HistGradientBoostingClassifier(random_state=seed),
}


def make_head(head: str | BaseEstimator, seed: int = 0) -> Any:
    """A fresh, unfitted head: a name from ``HEADS`` or a clone of any scikit-learn classifier."""
    if isinstance(head, str):
        if head not in HEADS:
            raise TransferkitError(
                f"Unknown head {head!r}; heads are: {', '.join(HEADS)} (or pass a scikit-learn classifier from Python)."
                f"{did_you_mean(head, HEADS)}"
            )
        return HEADS[head](seed)
    if not (hasattr(head, "fit") and hasattr(head, "predict_proba")):
        raise TransferkitError(
            f"A head must be a classifier with fit and predict_proba. Got {type(head).__name__} instead."
        )
    return clone(head)


def head_to_module(head: Any) -> tuple[nn.Module, dict[str, Any]] | None:
    """The exact torch equivalent of a fitted head (for bundles and ONNX), or None when there is none.

    Logistic regression (optionally after a StandardScaler) becomes ``Standardize → Linear``: the
    multinomial softmax is the same function; a binary model becomes two logits ``[0, w·x + b]``.
    """
    if isinstance(head, TorchHeadClassifier):
        return head.export()
    if isinstance(head, TunedHead):
        head = head.estimator_
    scaler, model = None, head
    if isinstance(head, Pipeline):
        steps = [s for _, s in head.steps]
        if len(steps) == 2 and isinstance(steps[0], StandardScaler):
            scaler, model = steps
        elif len(steps) == 1:
            model = steps[0]
    if not isinstance(model, LogisticRegression):
        return None
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # binary: p(class 1) = sigmoid(w·x + b) = softmax([0, w·x + b])[1]
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    config = {"type": "linear", "in_features": coef.shape[1], "out_features": coef.shape[0], "standardize": True}
    module: Any = build_head_module(config)
    std, linear = module[0], module[1]
    if not (isinstance(std, Standardize) and isinstance(linear, nn.Linear)):  # pragma: no cover - internal invariant
        raise TypeError("unexpected head layout")
    if scaler is not None:
        std.mean.copy_(torch.as_tensor(scaler.mean_ if scaler.with_mean else 0.0, dtype=torch.float32))
        std.scale.copy_(torch.as_tensor(scaler.scale_ if scaler.with_std else 1.0, dtype=torch.float32))
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
    return module.eval(), config


__all__ = ["HEADS", "TASK_WEIGHTINGS", "ModuleHead", "MultiTaskHead", "MultiTaskLoss", "TorchHeadClassifier",
           "TunedHead", "build_head_module", "head_to_module", "make_head", "multitask_config"]
