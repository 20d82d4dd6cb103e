"""What every transfer strategy shares: scikit-learn estimator behaviour over images or texts.

``X`` is an :class:`~transferkit.data.ImageDataset`, an array of images ``(N, H, W[, C])`` or a list of image
paths; with a text backbone, a :class:`~transferkit.data.TextDataset` or a list of texts; with an audio backbone,
an :class:`~transferkit.data.AudioDataset` or a list of audio files. ``y`` gives labels when ``X`` does not carry
them. ``classes_`` are class names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .._errors import DataError, NotFittedError
from ..data import AudioDataset, ImageDataset, TextDataset, from_arrays, from_audio_files, from_texts


def as_dataset(X: Any, y: Any = None, modality: str = "image") -> Any:
    """Accept the input forms every strategy takes and return an :class:`ImageDataset` or :class:`TextDataset`.

    Args:
        X, y: the inputs (see the module docstring) and optional labels.
        modality: what the backbone reads; a list of strings is texts for ``text``, image paths for ``image``.
    """
    if isinstance(X, (ImageDataset, TextDataset, AudioDataset)):
        if y is not None:
            raise DataError(f"Pass labels either inside the {type(X).__name__} or as y, not both.")
        if getattr(X, "modality", "image") != modality:
            raise DataError(
                f"The backbone reads {modality}s but the data holds {getattr(X, 'modality', 'image')}s; pick a "
                f"{_BACKBONE_HINT.get(getattr(X, 'modality', 'image'), 'image backbone')} or other data."
            )
        return X
    if modality == "audio":
        if isinstance(X, (str, os.PathLike)):
            X = [X]
        if isinstance(X, Sequence) and all(isinstance(p, (str, os.PathLike)) for p in X):
            ds = from_audio_files(X)
            if y is None:
                return ds
            labels = np.asarray(y)
            classes = sorted({str(v) for v in labels})
            index = {c: i for i, c in enumerate(classes)}
            return AudioDataset(ds.items, np.array([index[str(v)] for v in labels]), classes, "inputs")
        raise DataError(f"X must be an AudioDataset (from_audio_folder, from_waveforms) or a list of audio files for "
                        f"an audio backbone. Got {type(X).__name__}.")
    if modality == "text":
        if isinstance(X, str):
            X = [X]
        if isinstance(X, Sequence) and all(isinstance(t, str) for t in X):
            return from_texts(list(X), y, name="inputs")
        raise DataError(f"X must be a TextDataset or a list of texts for a text backbone. Got {type(X).__name__}.")
    if isinstance(X, np.ndarray):
        return from_arrays(X, y)
    if isinstance(X, (str, os.PathLike)):
        X = [X]
    if isinstance(X, Sequence) and all(isinstance(p, (str, os.PathLike)) for p in X):
        if y is None:
            return ImageDataset([Path(p) for p in X], None, [], name="inputs")
        labels = np.asarray(y)
        classes = sorted({str(v) for v in labels})
        index = {c: i for i, c in enumerate(classes)}
        return ImageDataset([Path(p) for p in X], np.array([index[str(v)] for v in labels]), classes, "inputs")
    raise DataError(
        f"X must be an ImageDataset, an image array (N, H, W[, C]) or a list of paths. Got {type(X).__name__}."
    )


_BACKBONE_HINT = {
    "text": "text backbone (hf:, packaged:all-minilm-l6-v2, vectors:)",
    "audio": "audio backbone (packaged:crepe-tiny, packaged:crepe-full, hf:<wav2vec2/HuBERT model>)",
    "image": "image backbone",
}


def class_values(ds: ImageDataset, y: Any) -> np.ndarray:
    """``classes_`` as scikit-learn expects: the integer labels themselves when ``y`` was integers, else names."""
    if y is not None and np.asarray(y).dtype.kind in "iu" and ds.classes == [str(i) for i in range(len(ds.classes))]:
        return np.arange(len(ds.classes))
    return np.asarray(ds.classes)


def full_proba(proba: np.ndarray, head_classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Place a head's probability columns (for the classes it saw) into all ``n_classes`` columns."""
    if proba.shape[1] == n_classes and np.array_equal(head_classes, np.arange(n_classes)):
        return proba
    out = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    out[:, np.asarray(head_classes, dtype=np.int64)] = proba
    return out


class TransferClassifier(ClassifierMixin, BaseEstimator):
    """Base of the strategies. Subclasses implement ``fit`` and ``_predict_proba_dataset``.

    Fitted attributes (all end in ``_``): ``backbone_``, ``layer_``, ``classes_``, ``fit_info_``.
    """

    strategy_name = "base"
    #: whether fitting trains the backbone's weights (then a bundle records its training items as the backbone's too)
    trains_backbone = True

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, y) or load a bundle with load_bundle()."
            )

    def predict_proba_details(self, X: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """``(proba (n_good, n_classes), index of usable inputs, skipped inputs with reasons)``."""
        self._check_fitted()
        ds = as_dataset(X, modality=self.modality_)
        return self._predict_proba_dataset(ds)

    @property
    def modality_(self) -> str:
        """What the fitted backbone reads: ``image`` or ``text``."""
        return getattr(getattr(self, "backbone_", None), "modality", "image")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``; raises :class:`DataError` if an input is unreadable."""
        proba, _, skipped = self.predict_proba_details(X)
        if skipped:
            raise DataError(f"Cannot predict {skipped[0][0]}: {skipped[0][1]}.")
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """Class names ``(N,)``."""
        proba = self.predict_proba(X)  # first: raises NotFittedError before classes_ is read
        return np.asarray(self.classes_)[proba.argmax(1)]

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Accuracy on labeled images."""
        self._check_fitted()
        ds = as_dataset(X, y, modality=self.modality_)
        if ds.labels is None:
            raise DataError("score needs labels.")
        proba, index, _ = self.predict_proba_details(ds)
        truth = np.asarray(ds.classes)[ds.labels[index]]
        # compared as names: integer classes_ (fitted on int labels) match the "0", "1", ... of a dataset
        return float(np.mean(np.asarray(self.classes_).astype(str)[proba.argmax(1)] == truth))

    def _predict_proba_dataset(self, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        raise NotImplementedError

    def save(self, directory: str | os.PathLike[str], **extra: Any) -> Path:
        """Write a bundle (``model.safetensors`` + ``transferkit.json``); see :func:`transferkit.save_bundle`."""
        from ..bundle import save_bundle

        return save_bundle(self, directory, **extra)
