"""Feature-level adaptation as a head: what :class:`~transferkit.FeatureExtractionClassifier` fits on the source's
cached features, knowing the target's.

``AdaptedHead(method, target_features)`` fits like any scikit-learn classifier on the source features and labels:

- ``coral``: the source features re-coloured to the target's statistics (:class:`~transferkit.adaptation.CORAL`),
  then the base head on them; the target is read as it is;
- ``self-training``: class-balanced pseudo-labels of the target in rounds
  (:class:`~transferkit.adaptation.SelfTrainingClassifier`).

After fitting, ``estimator_`` is a plain scikit-learn classifier over the original features (what a bundle stores,
so an adapted bundle predicts like any other) and ``adaptation_`` says what happened. The target features are not
kept once fitted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from .._errors import TransferkitError, did_you_mean

FEATURE_METHODS = ("coral", "self-training")


class AdaptedHead(ClassifierMixin, BaseEstimator):
    """A head fitted on source features and adapted to ``target`` features (see the module docstring).

    Args:
        method: ``coral`` or ``self-training``.
        target: unlabelled target features ``(m, d)`` at the same layer as the source's.
        estimator: the base head (default: the tuned logistic head).
        seed: seeds the default head.
    """

    #: FeatureExtractionClassifier keeps ``estimator_`` (a plain scikit-learn classifier) in its bundle
    bundles_estimator = True

    def __init__(self, method: str = "coral", target: Any = None, estimator: Any = None, seed: int = 0):
        self.method = method
        self.target = target
        self.estimator = estimator
        self.seed = seed

    def _base(self) -> Any:
        if self.estimator is not None:
            return clone(self.estimator)
        from ..heads import TunedHead

        return TunedHead("logistic", random_state=self.seed)

    def fit(self, X: Any, y: Any) -> AdaptedHead:
        from .coral import CORAL
        from .self_training import SelfTrainingClassifier

        if self.method not in FEATURE_METHODS:
            raise TransferkitError(f"`method` must be one of {', '.join(FEATURE_METHODS)} on cached features. Got "
                                   f"{self.method!r} instead.{did_you_mean(self.method, FEATURE_METHODS)}")
        if self.target is None:
            raise TransferkitError("AdaptedHead needs the target features (`target`).")
        x = np.asarray(X, dtype=np.float64)
        if self.method == "coral":
            coral = CORAL().fit(x, self.target)
            model = self._base().fit(coral.transform(x), y)
            self.adaptation_: dict[str, Any] = {"method": "coral", "regularization": coral.regularization}
            self.coral_ = coral
        else:
            st = SelfTrainingClassifier(self._base(), seed=self.seed).fit(x, y, self.target)
            model = st.estimator_
            self.adaptation_ = {"method": "self-training", "rounds": st.history_}
        self.choice_ = getattr(model, "choice_", None)
        self.estimator_ = getattr(model, "estimator_", model)  # a tuned head: its plain scikit-learn classifier
        self.classes_ = self.estimator_.classes_
        self.target = None  # not kept: a fitted head holds no target data
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.estimator_.predict(X)
