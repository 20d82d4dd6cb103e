"""Input checks shared by the transferability scores (every public score validates before any numerics), and
per-class sums."""

from __future__ import annotations

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike

from .._errors import DataError


def as_matrix(values: ArrayLike, name: str, function: str) -> np.ndarray:
    """``values`` as a finite float64 2-D array, or a :class:`DataError` naming ``name`` and the fix."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged lists
        raise DataError(f"{function}: {name} must be a 2-D numeric array. Got {type(values).__name__} that numpy "
                        f"cannot read as an array ({exc}); pass an array of shape (samples, columns).") from None
    if array.ndim != 2:
        hint = " (reshape a single column with .reshape(-1, 1))" if array.ndim == 1 else ""
        raise DataError(f"{function}: {name} must be a 2-D array (samples, columns). Got shape {array.shape} "
                        f"instead; pass one row per sample{hint}.")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise DataError(f"{function}: {name} must hold real numbers. Got dtype {array.dtype} instead; "
                        f"convert with np.asarray({name}, dtype=np.float32).")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(f"{function}: {name} contain {int(bad.sum())} non-finite values (NaN or inf) in "
                        f"{len(rows)} rows, the first at row {int(rows[0])}; drop those rows from {name} and "
                        f"labels (keep = np.isfinite({name}).all(axis=1)) or impute them before scoring.")
    return array


def as_features(features: ArrayLike, function: str) -> np.ndarray:
    """``features`` as a finite float64 ``(n, d)`` array with at least 2 rows, or a :class:`DataError`."""
    array = as_matrix(features, "features", function)
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise DataError(f"{function}: features need at least 2 samples and 1 dimension. Got shape {array.shape} "
                        f"instead; score a labeled set with samples from at least 2 classes.")
    return array


def as_probabilities(probabilities: ArrayLike, function: str) -> np.ndarray:
    """Rows of a softmax output as float64 ``(n, Z)``, renormalised to sum to exactly 1, or a :class:`DataError`."""
    array = as_matrix(probabilities, "source_probabilities", function)
    if array.shape[1] < 1:
        raise DataError(f"{function}: source_probabilities need at least one source class. Got shape "
                        f"{array.shape} instead; pass the (samples, source classes) softmax output.")
    sums = array.sum(axis=1)
    # float32 softmax rows sum to 1 within ~1e-6; anything far off is logits or unnormalised scores.
    if array.min() < 0 or not np.allclose(sums, 1.0, atol=1e-3):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise DataError(f"{function}: source_probabilities must be probabilities (non-negative rows summing to 1). "
                        f"Got min {array.min():.3g} and a row summing to {sums[worst]:.6g} (row {worst}) instead; "
                        f"apply a softmax to the source classifier's logits first (scipy.special.softmax(logits, "
                        f"axis=1)).")
    return array / sums[:, None]


def encode_labels(labels: ArrayLike, n_samples: int, function: str, name: str = "labels",
                  min_classes: int = 2, against: str = "features") -> tuple[np.ndarray, int]:
    """Labels of any hashable kind as ints ``0..C-1`` (sorted order of ``np.unique``) and ``C``.

    Raises:
        DataError: not 1-D, length differs from ``n_samples``, NaN labels, or fewer than ``min_classes`` classes.
    """
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{function}: {name} must be a 1-D array. Got {type(labels).__name__} that numpy cannot "
                        f"read ({exc}); pass one label per sample.") from None
    if array.ndim != 1:
        hint = "; for one-hot labels pass labels.argmax(axis=1)" if array.ndim == 2 else ""
        raise DataError(f"{function}: {name} must be a 1-D array with one label per sample. Got shape "
                        f"{array.shape} instead{hint}.")
    if len(array) != n_samples:
        raise DataError(f"{function}: {name} must have one entry per row of {against}. Got {len(array)} {name} "
                        f"for {n_samples} rows of {against}; pass the labels of exactly the scored samples "
                        f"(e.g. labels[extracted.index] after tk.extract_features skipped unreadable images).")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{function}: {name} contain {int((~np.isfinite(array)).sum())} NaN or inf values; "
                        f"drop the unlabeled samples before scoring.")
    try:
        classes, codes = np.unique(array, return_inverse=True)
    except TypeError:
        raise DataError(f"{function}: {name} mix types that cannot be sorted (e.g. str and int). Got "
                        f"{sorted({type(v).__name__ for v in array.tolist()})}; use one label type.") from None
    if len(classes) < min_classes:
        raise DataError(f"{function}: {name} must contain at least {min_classes} classes. Got "
                        f"{len(classes)} ({classes[:5].tolist()}); a score compares how well classes separate, "
                        f"so include samples from every class.")
    return codes.reshape(-1).astype(np.intp), len(classes)


def class_sums(values: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Row sums of ``values`` (n, k) per class code ``0..n_classes-1``: (n_classes, k).

    A sparse class-indicator product: one pass over ``values``, no sorted copy and no dense one-hot matrix.
    """
    n = len(codes)
    indicator = scipy.sparse.csr_array((np.ones(n), (codes, np.arange(n))), shape=(n_classes, n))
    return np.asarray(indicator @ values)
