"""``ImageDataset``: labeled images as file paths or an in-memory array, with content keys for caching."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._errors import DataError
from ._images import BadImage, array_to_image, open_image


@dataclass
class ImageDataset:
    """Images (paths or an ``(N, H, W[, C])`` array) with integer labels into ``classes``.

    Attributes:
        items: file paths, or one array holding every image.
        labels: ``(N,)`` integer class indices, or None for unlabeled inputs.
        classes: class names; ``labels`` index into it.
        name: where the data came from, for summaries.
        skipped: ``(item, reason)`` for inputs already known to be unusable (e.g. missing files in a CSV).
    """

    items: Sequence[Path] | np.ndarray
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    name: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.items):
                raise DataError(f"Got {len(self.items)} images but {len(self.labels)} labels; they must match.")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def is_array(self) -> bool:
        return isinstance(self.items, np.ndarray)

    def describe(self, i: int) -> str:
        return f"{self.name or 'array'}[{i}]" if self.is_array else str(self.items[i])

    def load(self, i: int) -> Image.Image:
        """The i-th image decoded (mode not yet normalised). Raises ``BadImage`` for unusable inputs."""
        if isinstance(self.items, np.ndarray):
            return array_to_image(self.items[i])
        return open_image(self.items[i])

    def content_key(self, i: int) -> str:
        """sha256 of the image content (file bytes or array bytes): what the feature cache is keyed on."""
        h = hashlib.sha256()
        if self.is_array:
            a = np.ascontiguousarray(self.items[i])
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            try:
                with open(self.items[i], "rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
            except OSError:
                return "unreadable:" + str(self.items[i])
        return h.hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        idx = np.asarray(indices, dtype=np.int64)
        items = self.items[idx] if isinstance(self.items, np.ndarray) else [self.items[int(i)] for i in idx]
        labels = None if self.labels is None else self.labels[idx]
        return ImageDataset(items, labels, list(self.classes), self.name, [])

    def class_counts(self) -> dict[str, int]:
        return count_per_class(self.labels, self.classes)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "images": len(self), "classes": len(self.classes),
                "per_class": self.class_counts(), "skipped": [list(s) for s in self.skipped]}


def count_per_class(labels: np.ndarray | None, classes: Sequence[str]) -> dict[str, int]:
    """``{class name: number of items}`` in class order (every modality's ``class_counts``)."""
    if labels is None:
        return {}
    counts = Counter(int(v) for v in labels)
    return {c: counts.get(i, 0) for i, c in enumerate(classes)}


def check_trainable(ds: Any) -> None:
    """Refuse datasets a classifier cannot learn from: no images (texts), no labels, or a single class."""
    if len(ds) == 0:
        if getattr(ds, "modality", "image") == "text":
            raise DataError(f"Dataset {ds.name or ''} has no texts; point to a CSV, TSV or JSONL with text,label.")
        if getattr(ds, "modality", "image") == "audio":
            raise DataError(f"Dataset {ds.name or ''} has no clips; point to a folder with <class>/<clip>.wav files.")
        raise DataError(f"Dataset {ds.name or ''} has no images; point to a folder with <class>/<image> files.")
    if ds.labels is None:
        raise DataError("Training needs labels; give a folder with one subfolder per class or a CSV with path,label.")
    if getattr(ds, "tasks", None) is not None:
        raise DataError(f"Dataset {ds.name} has {len(ds.tasks)} label columns (tasks {', '.join(ds.tasks)}); this "
                        "strategy learns one task. Use feature-extraction or fine-tune for several, or pick one "
                        "column with `label_column`.")
    present = [c for c, n in ds.class_counts().items() if n > 0]
    if len(present) < 2:
        raise DataError(
            f"Dataset {ds.name} has only one class ({present[0] if present else 'none'}); "
            "a classifier needs at least two classes with images."
        )


def check_bad_fraction(skipped: int, total: int, max_bad_fraction: float, what: str,
                       examples: Sequence[tuple[str, str]] = ()) -> None:
    """Refuse a dataset of which more than ``max_bad_fraction`` is unreadable, naming the first ``examples``.

    Raises:
        DataError: ``skipped / total > max_bad_fraction``.
    """
    if total and skipped / total > max_bad_fraction:
        named = ", ".join(f"{item} ({reason})" for item, reason in examples[:2])
        more = f" and {len(examples) - 2} more" if len(examples) > 2 else ""
        raise DataError(
            f"{skipped} of {total} images in {what} could not be read ({skipped / total:.0%} > "
            f"`max_bad_fraction` {max_bad_fraction:.0%}){f': {named}{more}' if named else ''}; fix or remove them, or "
            "raise `max_bad_fraction`."
        )


def drop_unreadable(ds: Any, *, max_bad_fraction: float = 1.0, num_workers: int = 0,
                    decoded: Collection[str] = ()) -> Any:
    """``ds`` without the image files that cannot be decoded, each listed in ``skipped`` with the reason.

    Every file is decoded once, as training and extraction decode it, so that a bad file is found before a split
    puts it on either side (one unreadable image among two validation images left one to judge by). A class whose
    images are all unreadable is left out, as an empty class folder is. Arrays, texts and clips pass through as they
    are: they were checked when they were read.

    Args:
        ds: an :class:`ImageDataset` of files, or a ``MultiTaskDataset`` of them (any other dataset is returned
            unchanged).
        max_bad_fraction: raise when more than this fraction of the files is unreadable.
        num_workers: decoding processes (DataLoader workers).
        decoded: content keys (:meth:`ImageDataset.content_key`) of images known to decode, e.g. those whose
            features the cache holds: those files are not decoded again.

    Returns:
        The readable images; ``skipped`` is ``ds.skipped`` followed by ``(file, reason)`` for each one dropped.

    Raises:
        DataError: more than ``max_bad_fraction`` of the files are unreadable.

    Example:
        >>> ds = drop_unreadable(from_folder("pets/"))   # pets/cat/cut.jpg: now in ds.skipped, not in ds.items
    """
    if getattr(ds, "tasks", None) is not None:  # several label columns: each task keeps its own classes
        from .multitask import drop_unreadable_tasks

        return drop_unreadable_tasks(ds, max_bad_fraction=max_bad_fraction, num_workers=num_workers)
    if not isinstance(ds, ImageDataset) or ds.is_array or len(ds) == 0:
        return ds
    bad = unreadable_images(ds, num_workers, decoded)
    if not bad:
        return ds
    dropped = [(ds.describe(i), reason) for i, reason in bad]
    check_bad_fraction(len(bad), len(ds), max_bad_fraction, ds.name or "the dataset", dropped)
    kept = ds.subset(np.setdiff1d(np.arange(len(ds)), [i for i, _ in bad]))
    kept.skipped = [*ds.skipped, *dropped]
    if ds.labels is None:
        return kept
    assert kept.labels is not None
    had = set(np.unique(ds.labels).tolist())
    lost = sorted(had - set(np.unique(kept.labels).tolist()))
    if lost:  # a class with no readable image is not a class the model can learn
        remap = np.full(len(ds.classes), -1, dtype=np.int64)
        left = [c for c in range(len(ds.classes)) if c not in lost]
        remap[left] = np.arange(len(left))
        kept.labels = remap[kept.labels]
        kept.classes = [ds.classes[c] for c in left]
        kept.skipped += [(ds.classes[c], "class left out: none of its images could be read") for c in lost]
    return kept


def unreadable_images(ds: ImageDataset, num_workers: int = 0, decoded: Collection[str] = ()) -> list[tuple[int, str]]:
    """``[(index, reason), ...]`` of the files of ``ds`` no decoder reads, in order (each decoded once, except those
    whose content key is in ``decoded``)."""
    import torch

    from .loader import image_loader  # the loader reads through this module

    known = set(decoded)
    indices = np.array([i for i in range(len(ds)) if not known or ds.content_key(i) not in known], dtype=np.int64)
    bad: list[tuple[int, str]] = []
    if not len(indices):
        return bad
    for batch in image_loader(ds, lambda img: torch.zeros(0), indices=indices, batch_size=64,
                              num_workers=num_workers):
        bad.extend(batch["bad"])
    return sorted(bad)


__all__ = ["BadImage", "ImageDataset", "check_bad_fraction", "check_trainable", "drop_unreadable",
           "unreadable_images"]


def encode_labels(labels: Any, classes: Sequence[str] | None, count: int, items: str) -> tuple[np.ndarray, list[str]]:
    """``labels`` (class indices or names) for ``count`` ``items`` → (indices, class names).

    Integer labels index ``classes`` (default ``"0".."max"``); other labels are names, looked up in ``classes``
    (default: the sorted distinct names).

    Raises:
        DataError: a count mismatch, an index outside ``classes``, or a name not in ``classes``.
    """
    values = np.asarray(labels)
    if len(values) != count:
        raise DataError(f"Got {count} {items} but {len(values)} labels; they must match.")
    if values.dtype.kind in "iu":
        n_classes = int(values.max()) + 1 if len(values) else 0
        names = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        if values.min(initial=0) < 0 or n_classes > len(names):
            raise DataError(f"labels must index into classes (0..{len(names) - 1}). Got max label {n_classes - 1}.")
        return values, names
    names = sorted({str(v) for v in values}) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(names)}
    unknown = [str(v) for v in values if str(v) not in index]
    if unknown:
        raise DataError(f"label {unknown[0]!r} is not one of classes {names}.")
    return np.array([index[str(v)] for v in values]), names
