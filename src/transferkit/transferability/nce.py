"""NCE: Tran, Nguyen, Hassner, "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.

Negative Conditional Entropy of the target labels Y given the source labels Z of the same n inputs, from their
empirical joint distribution ``P(y, z) = #{i: y_i = y, z_i = z} / n``:

    NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) )

It is at most 0 (in nats) and equals 0 when Z determines Y; higher is better. The paper uses the source task's
labels of the target inputs. Without source annotations, the usual stand-in (and what this module does for a 2-D
input) is the source classifier's prediction: the argmax of its probabilities.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._errors import DataError
from ._checks import as_matrix, encode_labels


def nce(source_labels: ArrayLike, labels: ArrayLike) -> float:
    """NCE: minus the conditional entropy of the target labels given the source labels.

    Args:
        source_labels: ``(n,)`` hard source labels of any hashable kind, or ``(n, Z)`` source-classifier
            probabilities (or logits), reduced to hard labels with ``argmax(axis=1)``.
        labels: ``(n,)`` target labels of any hashable kind, at least 2 classes.

    Returns:
        ``-H(Y | Z)`` in nats, ``<= 0``; higher is better.

    Raises:
        DataError: source labels neither 1-D nor a finite 2-D array, lengths differ, or fewer than 2 target classes.

    Example:
        >>> labels = np.array([0, 0, 1, 1])
        >>> nce(["cat", "cat", "dog", "dog"], labels)  # the source labels determine the target labels
        0.0
    """
    try:
        array = np.asarray(source_labels)
    except ValueError:  # ragged nested lists
        raise DataError("nce: source_labels must be 1-D hard labels or a 2-D (samples, source classes) array. "
                        "Got ragged nested sequences; pass one label, or one row of equal length, per sample.") from None
    if array.ndim == 2:
        source = as_matrix(array, "source_labels", "nce").argmax(axis=1)
    elif array.ndim == 1:
        source = array
    else:
        raise DataError(f"nce: source_labels must be 1-D hard labels or a 2-D (samples, source classes) array of "
                        f"probabilities. Got shape {array.shape} instead; pass the source classifier's "
                        f"predictions or probabilities for the scored samples.")
    source_codes, n_source = encode_labels(source, len(source), "nce", name="source_labels", min_classes=1)
    codes, n_classes = encode_labels(labels, len(source_codes), "nce", against="source_labels")
    counts = np.bincount(source_codes * n_classes + codes, minlength=n_source * n_classes)
    joint = counts.reshape(n_source, n_classes) / len(codes)  # P(z, y)
    marginal = joint.sum(axis=1, keepdims=True)  # P(z) > 0: every code occurs
    ratio = np.divide(joint, marginal, out=np.ones_like(joint), where=joint > 0)  # log 1 = 0 where P(z, y) = 0
    return float(np.sum(joint * np.log(ratio)))
