"""What every transfer strategy shares: scikit-learn estimator behaviour over images or texts.

``X`` is an :class:`~transferkit.data.ImageDataset`, an array of images ``(N, H, W[, C])`` or a list of image
paths; with a text backbone, a :class:`~transferkit.data.TextDataset` or a list of texts; with an audio backbone,
an :class:`~transferkit.data.AudioDataset` or a list of audio files. ``y`` gives labels when ``X`` does not carry
them. ``classes_`` are class names.

A fitted strategy saves itself as a bundle and is restored from one (:meth:`TransferClassifier.save`,
:meth:`TransferClassifier._restore`): what every strategy has (backbone, layer, classes, training items) is kept
here, what one has of its own (its head, its trained model) by its ``_bundle_state``/``_restore_state`` pair; the
files are :mod:`transferkit.bundle_format`'s.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from .. import bundle_format
from .._errors import DataError, NotFittedError
from ..backbones.bundle import backbone_from_bundle
from ..backbones.licences import licence_record
from ..data import (
    AudioDataset,
    ImageDataset,
    MultiTaskDataset,
    TextDataset,
    from_arrays,
    from_audio_files,
    from_texts,
)
from ..data.seen import DIGEST
from . import _multitask


def as_dataset(X: Any, y: Any = None, modality: str = "image") -> Any:
    """Accept the input forms every strategy takes and return an :class:`ImageDataset` or :class:`TextDataset`.

    Args:
        X, y: the inputs (see the module docstring) and optional labels; labels of several tasks (``{task:
            labels}`` or an ``(N, T)`` array), or ``X`` a :class:`~transferkit.data.MultiTaskDataset`, give a
            ``MultiTaskDataset``.
        modality: what the backbone reads; a list of strings is texts for ``text``, image paths for ``image``.
    """
    if _multitask.is_multitask_target(y):
        return _multitask.multitask_dataset(as_dataset(X, None, modality), y)
    if isinstance(X, (ImageDataset, TextDataset, AudioDataset, MultiTaskDataset)):
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
    """Base of the strategies. Subclasses implement ``fit`` and ``_predict_proba_dataset`` (and, to be saved as
    bundles, ``_bundle_state`` and ``_restore_state``).

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

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities ``(N, n_classes)`` (fitted on several tasks: a list, ``(N, K_t)`` per task); raises
        :class:`DataError` if an input is unreadable."""
        proba, _, skipped = self.predict_proba_details(X)
        if skipped:
            raise DataError(f"Cannot predict {skipped[0][0]}: {skipped[0][1]}.")
        return _multitask.split_tasks(self, proba) if _multitask.tasks_of(self) else proba

    def predict(self, X: Any) -> np.ndarray:
        """Class names ``(N,)`` (fitted on several tasks: ``(N, T)``, one column per task of ``tasks_``)."""
        proba = self.predict_proba(X)  # first: raises NotFittedError before classes_ is read
        if _multitask.tasks_of(self):
            return _multitask.predict_tasks(self, np.concatenate(proba, axis=1))
        return np.asarray(self.classes_)[proba.argmax(1)]

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Accuracy on labeled images (several tasks: the mean over tasks of each one's accuracy on the items
        labelled for it)."""
        self._check_fitted()
        ds = as_dataset(X, y, modality=self.modality_)
        if _multitask.tasks_of(self):
            return _multitask.score_tasks(self, ds)
        if ds.labels is None:
            raise DataError("score needs labels.")
        proba, index, _ = self.predict_proba_details(ds)
        truth = np.asarray(ds.classes)[ds.labels[index]]
        # compared as names: integer classes_ (fitted on int labels) match the "0", "1", ... of a dataset
        return float(np.mean(np.asarray(self.classes_).astype(str)[proba.argmax(1)] == truth))

    def _predict_proba_dataset(self, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        raise NotImplementedError

    # -- bundles: each strategy saves and restores its own fitted state ------------------------------------------

    def save(self, directory: str | os.PathLike[str], *, metrics: dict[str, Any] | None = None,
             data: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
             training_items: bool = True) -> Path:
        """Write this fitted strategy as a bundle (``model.safetensors`` + ``transferkit.json``).

        Args:
            directory: created if needed. The new bundle is written in full into a staging folder first and then
                moved over the old one; a save killed midway leaves the old bundle, or (killed while moving) the new
                one.
            metrics: validation metrics to record (e.g. from :func:`transferkit.evaluate`).
            data: a description of the training data (name, sizes, skipped files).
            extra: any other JSON-ready facts to keep (e.g. the baseline comparison).
            training_items: keep 64-bit content digests of the training items (``training_items.safetensors``), so
                ranking, fitting or evaluating on images this model was trained on is flagged as optimistic
                (:mod:`transferkit.data.seen`). False leaves them out: nobody holding the bundle can then test
                whether an image was among them.

        Returns:
            The bundle directory.

        Example:
            >>> clf.save("runs/pets", metrics={"accuracy": 0.93})
        """
        self._check_fitted()
        with bundle_format.staged(directory) as stage:
            self._write_bundle(stage, metrics=metrics, data=data, extra=extra, training_items=training_items)
        return Path(directory)

    def _write_bundle(self, directory: Path, *, metrics: dict[str, Any] | None, data: dict[str, Any] | None,
                      extra: dict[str, Any] | None, training_items: bool) -> None:
        """Every file of the bundle into ``directory`` (an empty staging folder), the JSON last."""
        backbone = self.backbone_
        head, head_tensors = self._bundle_state(directory)
        bundle_format.write_weights(directory, {**bundle_format.prefixed("backbone", backbone.trunk_state_dict()),
                                                **head_tensors})
        assets = bundle_format.write_assets(directory, backbone.export_assets)
        items = self._write_training_items(directory) if training_items else None
        bundle_format.write_meta(directory, {
            "strategy": self.strategy_name,
            "params": json_params(self),
            "backbone": {**backbone.describe(), "layer": self.layer_, "modality": backbone.modality,
                         **({"assets": assets} if assets else {})},
            "head": head,
            **(_multitask.tasks_meta(self) if _multitask.tasks_of(self) else {
                "classes": [str(c) for c in self.classes_],
                "classes_are_integers": bool(np.asarray(self.classes_).dtype.kind in "iu"),
                "head_classes": [int(c) for c in self.head_classes_]}),
            "preprocessing": backbone.preprocessing.to_dict(),
            **licence_record(backbone.licence_chain),  # "licence" and "licence_chain" (backbones.licences)
            "metrics": metrics or {},
            "data": data or {},
            "fit": getattr(self, "fit_info_", {}),
            "training_items": items,
        }, extra)

    def _write_training_items(self, directory: Path) -> dict[str, Any] | None:
        """Write the model's and its backbone's training-item digests; None when the model knows none."""
        own = getattr(self, "train_items_", None)
        upstream = getattr(self.backbone_, "source_items", None)  # what a bundle: backbone had seen before this fit
        if own is None and upstream is None:
            return None
        union = np.unique(np.concatenate([a for a in (own, upstream) if a is not None])).astype(np.int64)
        backbone_items = union if self.trains_backbone else np.array(upstream if upstream is not None else [], np.int64)
        return bundle_format.write_training_items(directory, union, backbone_items, DIGEST)

    def _head_name(self) -> str:
        """The ``head`` parameter as the bundle's ``head`` record names it (``linear`` for strategies without one)."""
        head = self.get_params(deep=False).get("head", "linear")
        return head if isinstance(head, str) else type(head).__name__

    def _bundle_state(self, directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """This strategy's own fitted state in a bundle: the JSON's ``head`` record and the tensors to keep with
        it (named ``head.*``); a head kept in a file of its own is written into the (staging) ``directory``.
        Undone by :meth:`_restore_state`."""
        raise NotImplementedError

    def _restore_state(self, directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Set the fitted attributes :meth:`_bundle_state` kept, from the bundle in ``directory`` (its JSON
        ``meta``, its weights ``tensors``); those every strategy has are set already."""
        raise NotImplementedError

    @classmethod
    def _restore(cls, directory: Path, meta: dict[str, Any], overrides: dict[str, Any]) -> TransferClassifier:
        """A fitted estimator from the bundle in ``directory`` (``meta``: its JSON, read by
        :func:`~transferkit.bundle_format.read_meta`); ``overrides`` are runtime parameters (``device``, ...)."""
        tensors = bundle_format.read_weights(directory, meta)
        accepted = set(inspect.signature(cls).parameters)
        params = {k: v for k, v in meta.get("params", {}).items() if k in accepted}
        params["backbone"] = f"bundle:{directory}"
        if "head" in accepted:
            params["head"] = meta.get("head", {}).get("name", "logistic")
        params.update({k: v for k, v in overrides.items() if k in accepted})
        est = cls(**params)
        est.backbone_ = backbone_from_bundle(directory, meta, tensors)
        est.layer_ = est.backbone_._check_layer(meta["backbone"].get("layer"))
        est.classes_ = np.asarray(meta["classes"])
        if meta.get("classes_are_integers"):
            est.classes_ = est.classes_.astype(np.int64)
        est.head_classes_ = np.asarray(meta.get("head_classes", list(range(len(meta["classes"])))), dtype=np.int64)
        _multitask.restore_tasks(est, meta)  # a multi-task bundle: classes_ and head_classes_ per task
        est.fit_info_ = meta.get("fit", {})
        est.train_items_ = bundle_format.read_training_items(directory, meta, "model")
        est._restore_state(directory, meta, tensors)
        return est


def json_params(model: Any) -> dict[str, Any]:
    """``get_params`` as a bundle's JSON keeps them: plain values as they are, a backbone by its spec."""
    out: dict[str, Any] = {}
    for k, v in model.get_params(deep=False).items():
        if isinstance(v, (str, int, float, bool, type(None))):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)  # e.g. zero-shot labels: restored as given
        elif hasattr(v, "spec"):
            out[k] = v.spec
        else:
            out[k] = repr(v)
    return out
