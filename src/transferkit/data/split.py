"""Seeded, stratified splits, k-fold indices and few-shot subsampling."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from .._errors import DataError
from ._dataset import ImageDataset


def stratified_split(ds: ImageDataset, val_fraction: float = 0.2, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Split into train and validation keeping class proportions; every class keeps at least one of each."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"`val_fraction` must be in (0, 1). Got {val_fraction} instead.")
    if ds.labels is None:
        raise DataError("A stratified split needs labels.")
    counts = np.bincount(ds.labels, minlength=len(ds.classes))
    small = [ds.classes[i] for i, n in enumerate(counts) if 0 < n < 2]
    if small:
        raise DataError(
            f"Class {small[0]!r} has a single image; a train/validation split needs at least 2 per class "
            "(add images to it, or leave it out with `classes`)."
        )
    idx = np.arange(len(ds))
    n_classes = int((counts > 0).sum())
    n_val = max(n_classes, int(round(val_fraction * len(ds))))
    if len(ds) - n_val < n_classes:
        raise DataError(f"{len(ds)} images are too few to split {n_classes} classes into train and validation.")
    train_idx, val_idx = train_test_split(idx, test_size=n_val, stratify=ds.labels, random_state=seed)
    # sklearn rounds small classes away from one side (e.g. 100/2/2 images at 0.2): move one image back.
    rng = np.random.default_rng(seed)
    for c in np.flatnonzero(counts >= 2):
        in_train, in_val = train_idx[ds.labels[train_idx] == c], val_idx[ds.labels[val_idx] == c]
        if len(in_val) == 0:
            move = rng.choice(in_train)
            train_idx, val_idx = train_idx[train_idx != move], np.append(val_idx, move)
        elif len(in_train) == 0:
            move = rng.choice(in_val)
            val_idx, train_idx = val_idx[val_idx != move], np.append(train_idx, move)
    return ds.subset(np.sort(train_idx)), ds.subset(np.sort(val_idx))


def per_class(ds: ImageDataset, n: int, seed: int = 0) -> ImageDataset:
    """At most ``n`` images per class, drawn with ``seed`` (few-shot runs)."""
    if n < 1:
        raise DataError(f"`per_class` must be a positive integer. Got {n} instead.")
    if ds.labels is None:
        raise DataError("`per_class` needs labels.")
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(len(ds.classes)):
        members = np.flatnonzero(ds.labels == c)
        keep.extend(rng.permutation(members)[:n].tolist())
    return ds.subset(np.sort(np.array(keep, dtype=np.int64)))


def select_classes(ds: ImageDataset, classes: list[str] | str) -> ImageDataset:
    """Keep only ``classes`` (names, or indices into ``ds.classes``; ``"0-4"`` and ``"a,b"`` strings work).

    The kept classes are renumbered in the given order, e.g. to build a source task from Fashion-MNIST classes
    0-4 and a target task from 5-9.
    """
    if ds.labels is None:
        raise DataError("Selecting classes needs labels.")
    if isinstance(classes, str):
        wanted: list[str] = []
        for part in (p.strip() for p in classes.split(",") if p.strip()):
            lo, sep, hi = part.partition("-")
            if sep and lo.isdigit() and hi.isdigit():
                wanted.extend(str(i) for i in range(int(lo), int(hi) + 1))
            else:
                wanted.append(part)
        classes = wanted
    index = []
    numbered = any(str(name).isdigit() for name in ds.classes)  # then a number is a name, never an index
    for c in classes:
        if c in ds.classes:
            index.append(ds.classes.index(c))
        elif str(c).isdigit() and int(c) < len(ds.classes) and not numbered:
            index.append(int(c))
        elif numbered:
            raise DataError(f"`classes`: {c!r} is not a class name of {ds.classes} (class names here are numbers, "
                            f"so `classes` reads names, not indices).")
        else:
            raise DataError(f"`classes`: {c!r} is neither a class name nor an index of {ds.classes}.")
    if len(set(index)) < 2:
        raise DataError(f"`classes` must name at least two distinct classes. Got {classes!r} instead.")
    remap = {old: new for new, old in enumerate(dict.fromkeys(index))}
    keep = np.flatnonzero(np.isin(ds.labels, list(remap)))
    sub = ds.subset(keep)
    sub.labels = np.array([remap[int(v)] for v in ds.labels[keep]], dtype=np.int64)
    sub.classes = [ds.classes[old] for old in remap]
    return sub


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, validation) index pairs; every class needs at least ``folds`` labeled items.

    Shared by the fine-tuning race, auto's cross-check and the verdict's cross-fit.
    """
    counts = np.bincount(labels)
    present = counts[counts > 0]
    if folds < 2:
        raise DataError(f"The race needs at least 2 folds. Got {folds} instead.")
    if present.min() < folds:
        raise DataError(f"The race needs at least {folds} labeled items per class for {folds}-fold validation; the "
                        f"smallest class has {int(present.min())}. Pass fewer folds or label more.")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))
