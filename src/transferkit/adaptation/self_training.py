"""Class-balanced self-training on features: pseudo-label the unlabelled target in rounds, confident items first.

Zou, Yu, Kumar & Wang, "Unsupervised Domain Adaptation for Semantic Segmentation via Class-Balanced Self-Training"
(ECCV 2018): a classifier trained on the source labels the target; the most confident target predictions *of each
class* join the training set, a growing share per round (20 %, 40 %, ... of the items predicted as that class), and
the classifier is retrained on source + pseudo-labelled target. Balancing per class matters: a global confidence
threshold fills the pseudo-labels with the classes the source model already favours, and the bias feeds itself.
``threshold`` additionally drops pseudo-labels below a confidence (FixMatch-style, Sohn et al. 2020), off by default.

This works on any features (cached image, text or audio features) with any scikit-learn classifier; the default is
the tuned logistic head of :mod:`transferkit.heads`. What happened in each round is in ``history_``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from .._errors import TransferkitError


class SelfTrainingClassifier(ClassifierMixin, BaseEstimator):
    """Source-trained classifier adapted to unlabelled target features by class-balanced pseudo-labels.

    Args:
        estimator: any scikit-learn classifier with ``predict_proba`` (default: the tuned logistic head).
        rounds: pseudo-labelling rounds after the source-only fit.
        start_fraction: share of each predicted class's target items pseudo-labelled in the first round.
        step_fraction: how much that share grows each round (capped at 1).
        threshold: also drop pseudo-labels whose confidence is below this (None: no floor).
        seed: seeds the default estimator.

    After ``fit(source_x, source_y, target_x)``: ``estimator_`` (the last round's classifier), ``source_only_``
    (the classifier before adaptation), ``history_`` (per round: share, pseudo-labels, their class counts and the
    share of them that changed since the previous round), ``classes_``.

    Example:
        >>> clf = SelfTrainingClassifier().fit(source_features, source_labels, target_features)
        >>> clf.predict(target_features)
    """

    def __init__(self, estimator: Any = None, rounds: int = 5, start_fraction: float = 0.2,
                 step_fraction: float = 0.2, threshold: float | None = None, seed: int = 0):
        self.estimator = estimator
        self.rounds = rounds
        self.start_fraction = start_fraction
        self.step_fraction = step_fraction
        self.threshold = threshold
        self.seed = seed

    def _base(self) -> Any:
        if self.estimator is not None:
            return clone(self.estimator)
        from ..heads import TunedHead

        return TunedHead("logistic", random_state=self.seed)

    def fit(self, X: Any, y: Any, target: Any) -> SelfTrainingClassifier:
        """Fit on labelled source features ``X`` ``(n, d)`` and labels ``y``, adapted to ``target`` ``(m, d)``."""
        xs, xt = np.asarray(X, dtype=np.float64), np.asarray(target, dtype=np.float64)
        ys = np.asarray(y)
        if xs.ndim != 2 or xt.ndim != 2 or xs.shape[1] != xt.shape[1]:
            raise TransferkitError(f"source and target features must be 2-D of the same width. Got shapes {xs.shape} "
                                   f"and {xt.shape} instead.")
        if len(xt) == 0:
            raise TransferkitError("target holds no items: self-training needs unlabelled target features.")
        if not 0 < self.start_fraction <= 1 or self.step_fraction < 0 or self.rounds < 0:
            raise TransferkitError(f"start_fraction must be in (0, 1], step_fraction >= 0 and rounds >= 0. Got "
                                   f"{self.start_fraction!r}, {self.step_fraction!r}, {self.rounds!r} instead.")
        model = self._base().fit(xs, ys)
        self.source_only_ = model
        self.classes_ = model.classes_
        history: list[dict[str, Any]] = []
        previous: np.ndarray | None = None
        for r in range(self.rounds):
            proba = model.predict_proba(xt)
            pred, confidence = proba.argmax(1), proba.max(1)
            share = min(1.0, self.start_fraction + self.step_fraction * r)
            chosen = _balanced_selection(pred, confidence, share, self.threshold)
            labels = self.classes_[pred]
            changed = None if previous is None else float(np.mean(previous != labels))
            previous = labels
            history.append({"round": r + 1, "share": round(share, 4), "pseudo_labels": int(chosen.sum()),
                            "per_class": np.bincount(pred[chosen], minlength=len(self.classes_)).tolist(),
                            "changed": None if changed is None else round(changed, 4)})
            if not chosen.any():
                break
            model = self._base().fit(np.concatenate([xs, xt[chosen]]), np.concatenate([ys, labels[chosen]]))
        self.estimator_ = model
        self.history_ = history
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.estimator_.predict(X)


def _balanced_selection(pred: np.ndarray, confidence: np.ndarray, share: float,
                        threshold: float | None) -> np.ndarray:
    """The ``share`` most confident items of each predicted class (at least one each), above ``threshold``."""
    chosen = np.zeros(len(pred), dtype=bool)
    for c in np.unique(pred):
        members = np.flatnonzero(pred == c)
        keep = max(1, int(round(share * len(members))))
        chosen[members[np.argsort(-confidence[members], kind="stable")[:keep]]] = True
    if threshold is not None:
        chosen &= confidence >= threshold
    return chosen
