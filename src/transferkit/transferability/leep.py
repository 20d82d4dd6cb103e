"""LEEP: Nguyen, Hassner, Seeger, Archambeau, "LEEP: A New Measure to Evaluate Transferability of Learned
Representations", ICML 2020.

The source model's classifier, run on the n target inputs, gives dummy-label distributions ``theta(x_i)`` over its
Z source classes. From them LEEP forms the empirical joint ``P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z``, the
conditional ``P(y | z) = P(y, z) / P(z)``, and the "expected empirical predictor" that maps an input to
``sum_z P(y | z) theta(x)_z``. The score is that predictor's average log-likelihood of the true target labels:

    LEEP = 1/n sum_i log( sum_z P(y_i | z) theta(x_i)_z )

It is at most 0; higher is better. It needs no training and no features, only the source head's probabilities.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import as_probabilities, class_sums, encode_labels


def leep(source_probabilities: ArrayLike, labels: ArrayLike) -> float:
    """LEEP: the log-likelihood of the target labels under the source head's expected empirical predictor.

    Args:
        source_probabilities: ``(n, Z)`` softmax output of the source model's classifier on the target inputs
            (rows are renormalised to sum to 1; logits are refused).
        labels: ``(n,)`` target labels of any hashable kind, at least 2 classes.

    Returns:
        The mean log-likelihood in nats, ``<= 0``; higher is better.

    Raises:
        DataError: probabilities not a finite non-negative 2-D array with rows summing to 1, labels not 1-D of
            the same length, or fewer than 2 classes.

    Example:
        >>> labels = np.array([0, 0, 1, 1])
        >>> informative = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
        >>> leep(informative, labels) > leep(np.full((4, 2), 0.5), labels)
        True
    """
    theta = as_probabilities(source_probabilities, "leep")
    codes, n_classes = encode_labels(labels, len(theta), "leep", against="source_probabilities")
    joint = class_sums(theta, codes, n_classes) / len(theta)  # P(y, z): (C, Z)
    marginal = joint.sum(axis=0)  # P(z)
    # A source class no input puts mass on has P(z) = 0 and theta(x)_z = 0 everywhere: it contributes nothing.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    # P(y_i | x_i) > 0: sample i's own mass puts P(y_i | z) > 0 wherever theta(x_i)_z > 0.
    predicted = theta @ conditional.T  # (n, C): the expected empirical predictor for every class
    return float(np.mean(np.log(predicted[np.arange(len(theta)), codes])))
