"""Bundles: a directory with ``model.safetensors`` + ``transferkit.json`` (+ ``head.skops`` for sklearn heads).

No pickle anywhere. The JSON records everything needed to rebuild and to trust the model: backbone spec and
architecture, weights checksum and licence, layer, head, label names, preprocessing, metrics and versions.

This is the face: :func:`save_bundle` asks the fitted strategy to save itself, :func:`load_bundle` picks the
strategy class the bundle names and lets it restore itself. The files are :mod:`transferkit.bundle_format`'s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._errors import BundleError, TransferkitError
from .bundle_format import (
    ASSETS_DIR,
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    META_FILE,
    SKLEARN_HEAD_FILE,
    STAGING_DIR,
    TRAINING_ITEMS_FILE,
    WEIGHTS_FILE,
    library_versions,
    read_meta,
    read_training_items,
    read_weights,
    settle,
    update_bundle_meta,
)

__all__ = [
    "ASSETS_DIR", "BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "META_FILE", "SKLEARN_HEAD_FILE", "STAGING_DIR",
    "TRAINING_ITEMS_FILE", "WEIGHTS_FILE", "library_versions", "load_bundle", "output_folder", "read_meta",
    "read_training_items", "read_weights", "save_bundle", "update_bundle_meta",
]


def save_bundle(model: Any, directory: str | os.PathLike[str], *, metrics: dict[str, Any] | None = None,
                data: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                training_items: bool = True) -> Path:
    """Write a fitted strategy as a bundle.

    Args:
        model: a fitted :class:`~transferkit.strategies.TransferClassifier`.
        directory: created if needed. The new bundle is written in full into a staging folder first and then moved
            over the old one; a save killed midway leaves the old bundle, or (killed while moving) the new one.
        metrics: validation metrics to record (e.g. from :func:`transferkit.evaluate`).
        data: a description of the training data (name, sizes, skipped files).
        extra: any other JSON-ready facts to keep (e.g. the baseline comparison).
        training_items: keep 64-bit content digests of the training items (``training_items.safetensors``), so
            ranking, fitting or evaluating on images this model was trained on is flagged as optimistic
            (:mod:`transferkit.data.seen`). False leaves them out: nobody holding the bundle can then test whether
            an image was among them.

    Returns:
        The bundle directory.

    Example:
        >>> save_bundle(clf, "runs/pets", metrics={"accuracy": 0.93})
    """
    model._check_fitted()
    return Path(model.save(directory, metrics=metrics, data=data, extra=extra, training_items=training_items))


def load_bundle(directory: str | os.PathLike[str], **overrides: Any) -> Any:
    """Load a bundle as a fitted strategy ready for ``predict``/``predict_proba``/``score``.

    Args:
        directory: the bundle directory.
        **overrides: runtime settings such as ``device``, ``batch_size``, ``progress``, ``cache``.

    Raises:
        BundleError: the bundle is missing, damaged, newer than this library or names an unknown strategy.

    Example:
        >>> clf = load_bundle("runs/quickstart")
        >>> clf.predict(["shoe.png"])
    """
    from .strategies import STRATEGIES

    directory = Path(directory)
    meta = read_meta(directory)
    strategy = meta.get("strategy")
    if strategy not in STRATEGIES:
        raise BundleError(f"Bundle {str(directory)!r} has unknown strategy {strategy!r}; upgrade transferkit.")
    return STRATEGIES[strategy]._restore(directory, meta, overrides)


@contextlib.contextmanager
def output_folder(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """The folder a run writes its bundle (and its checkpoints) into, for the length of the run.

    On entry, what a run killed while writing left is settled: a complete staged save is moved in (as
    :func:`read_meta` would), an unfinished one and atomic-write temporaries are deleted. If the block then fails
    with a :class:`~transferkit.TransferkitError` and the folder did not exist before, the folder (and any parent
    the run made for it) is removed: a failed run leaves no partial bundle. A folder that existed is never removed,
    nor one an interruption left with checkpoints to resume from.

    Example:
        >>> with output_folder("runs/pets"):
        ...     save_bundle(model, "runs/pets")
    """
    from ._dist import is_main_process
    from .training import Interrupted

    directory = Path(directory)
    created = next((p for p in reversed([directory, *directory.parents]) if not os.path.lexists(p)), None)
    if created is None and directory.is_dir() and is_main_process():
        settle(directory)
    try:
        yield directory
    except TransferkitError as e:
        if created is not None and not isinstance(e, Interrupted) and is_main_process():
            shutil.rmtree(created, ignore_errors=True)
        raise
