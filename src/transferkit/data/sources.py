"""Where labeled images come from: a class-per-folder tree, a ``path,label`` CSV, arrays, Fashion-MNIST."""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError
from ._dataset import ImageDataset
from .audio import from_audio_folder, is_audio_folder
from .text import is_text_table, read_text_table

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def from_folder(root: str | os.PathLike[str]) -> ImageDataset:
    """One subfolder per class (sorted names), every non-hidden file inside (recursively) is an image of it.

    Example:
        >>> ds = from_folder("pets/")   # pets/cat/1.jpg, pets/dog/2.png, ...
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"Data folder {str(root)!r} does not exist; pass a folder with one subfolder per class.")
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a folder; pass a folder of <class>/<image> files or a .csv file.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"Data folder {str(root)!r} has no class subfolders; arrange images as {root}/<class>/<image>."
        )
    items: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    empty: list[tuple[str, str]] = []
    for d in class_dirs:
        files = visible_files(d)
        if not files:  # not a class: a model would learn a class it never saw an image of
            empty.append((str(d), "empty class folder, left out"))
            continue
        items.extend(files)
        labels.extend([len(classes)] * len(files))
        classes.append(d.name)
    if not items:
        raise DataError(f"Data folder {str(root)!r} has class subfolders but no files in them.")
    return ImageDataset(items, np.array(labels), classes, name=str(root), skipped=empty)


def visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted, through symlinked folders too (each real folder once), leaving out
    hidden files and hidden folders (``.git``, ``.ipynb_checkpoints``)."""
    found: list[Path] = []
    visited: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in visited:  # a link back up the tree: walked already
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(top) / f for f in files if not f.startswith(".") and os.path.isfile(os.path.join(top, f)))
    return sorted(found)


def from_csv(path: str | os.PathLike[str], path_column: str = "path", label_column: str = "label") -> ImageDataset:
    """A CSV with ``path,label`` columns; paths are relative to the CSV's folder and may not escape it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file {str(path)!r} does not exist.")
    root = path.parent.resolve()
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if path_column not in columns or label_column not in columns:
                raise DataError(
                    f"CSV {str(path)!r} needs columns {path_column!r} and {label_column!r}; found {columns}."
                )
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise DataError(f"CSV {str(path)!r} is not UTF-8 text ({e.reason}); save it as UTF-8.") from None
    except csv.Error as e:
        raise DataError(f"CSV {str(path)!r} is malformed: {e}.") from None
    if not rows:
        raise DataError(f"CSV {str(path)!r} has a header but no rows.")
    items: list[Path] = []
    names: list[str] = []
    for line, row in enumerate(rows, start=2):
        rel, label = (row.get(path_column) or "").strip(), (row.get(label_column) or "").strip()
        if not rel or not label:
            raise DataError(f"CSV {str(path)!r} line {line}: empty {path_column!r} or {label_column!r}.")
        full = Path(os.path.normpath(root / rel))  # not resolve(): a symlinked folder inside the root is fine
        if not full.is_relative_to(root):
            raise DataError(
                f"CSV {str(path)!r} line {line}: path {rel!r} escapes the dataset root {str(root)!r}; "
                "keep images inside the CSV's folder."
            )
        items.append(full)
        names.append(label)
    if not any(p.exists() for p in items):
        raise DataError(f"None of the {len(items)} paths in CSV {str(path)!r} exists, e.g. {items[0]}; paths are read "
                        f"relative to the CSV's own folder ({root}): write them so, or move the CSV.")
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return ImageDataset(items, np.array([index[n] for n in names]), classes, name=str(path))


def from_arrays(
    images: np.ndarray, labels: Sequence[int] | Sequence[str] | np.ndarray | None = None,
    classes: Sequence[str] | None = None, name: str = "arrays",
) -> ImageDataset:
    """In-memory images ``(N, H, W[, C])`` with integer labels (or class-name labels) and optional class names."""
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.floating):
        # one scale for the whole dataset (not per image): [0, 1] floats become 0..255 bytes
        scale = 255.0 if images.size and np.nanmax(images) <= 1.0 else 1.0
        images = np.clip(np.nan_to_num(images) * scale, 0, 255).round().astype(np.uint8)
    if images.ndim not in (3, 4):
        raise DataError(f"images must have shape (N, H, W) or (N, H, W, C). Got shape {images.shape} instead.")
    if labels is None:
        return ImageDataset(images, None, list(classes or []), name)
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        n_classes = int(labels.max()) + 1 if len(labels) else 0
        names = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        if labels.min(initial=0) < 0 or n_classes > len(names):
            raise DataError(f"labels must index into classes (0..{len(names) - 1}). Got max label {n_classes - 1}.")
        return ImageDataset(images, labels, names, name)
    names = sorted({str(v) for v in labels}) if classes is None else list(classes)
    index = {c: i for i, c in enumerate(names)}
    unknown = [str(v) for v in labels if str(v) not in index]  # str: not numpy's repr np.str_('x')
    if unknown:
        raise DataError(f"label {unknown[0]!r} is not one of classes {names}.")
    return ImageDataset(images, np.array([index[str(v)] for v in labels]), names, name)


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
        if len(data) < 4 or data[:3] != b"\x00\x00\x08":  # IDX magic: two zero bytes, 0x08 = unsigned byte
            raise ValueError("not an IDX file of unsigned bytes")
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(
            f"{str(path)!r} is not a readable IDX file ({e}); reinstall: apt-get install --reinstall dataset-fashion-mnist"
        ) from None


def load_fashion_mnist(split: str = "train", root: str | os.PathLike[str] | None = None) -> ImageDataset:
    """Fashion-MNIST (MIT, Zalando Research) from Debian's ``dataset-fashion-mnist`` IDX files.

    Args:
        split: ``train`` (60,000 images) or ``test`` (10,000).
        root: folder holding the IDX files (default ``/usr/share/datasets/fashion-mnist``).
    """
    if split not in ("train", "test"):
        raise DataError(f"Fashion-MNIST split must be 'train' or 'test'. Got {split!r} instead.")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    prefix = "train" if split == "train" else "t10k"
    found = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [root / f"{prefix}-{kind}.gz", root / f"{prefix}-{kind}"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise DataError(
                f"Fashion-MNIST {split} files are not in {str(root)!r}; install them with "
                "`apt-get install dataset-fashion-mnist` (or use the embedded subset: DATA=embedded)."
            )
        found[kind] = _read_idx(hit)
    return ImageDataset(
        found["images-idx3-ubyte"], found["labels-idx1-ubyte"].astype(np.int64), list(FASHION_MNIST_CLASSES),
        name=f"fashion-mnist:{split}",
    )


def load_embedded() -> ImageDataset:
    """The small real Fashion-MNIST subset shipped inside the package (MIT; see ``assets/FASHION_MNIST_LICENSE``)."""
    asset = resources.files("transferkit") / "assets" / "fashion_mnist_subset.npz"
    with resources.as_file(asset) as p, np.load(p, allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    meta = json.loads((resources.files("transferkit") / "assets" / "fashion_mnist_subset.json").read_text())
    return ImageDataset(images, labels.astype(np.int64), list(meta["classes"]), name="embedded:fashion-mnist-subset")


#: the built-in names of the offline digit shift (:mod:`transferkit.data.digit_shift`)
DIGIT_SHIFT = ("printed-digits", "handwritten-digits", "handwritten-digits:adapt", "handwritten-digits:test")


def open_dataset(spec: str | os.PathLike[str], *, text_column: str = "text", label_column: str = "label",
                 encoding: str = "utf-8", targets: str | Sequence[str] | None = None) -> Any:
    """What the CLI's DATA argument means: ``embedded``, ``fashion-mnist[:train|test]``, the digit shift
    (``printed-digits``, ``handwritten-digits[:adapt|test]``: :mod:`transferkit.data.digit_shift`), a folder, a ``path,label``
    ``.csv`` of images, or texts: a ``.csv`` with a ``text_column``, a ``.tsv``, a ``.jsonl`` (→ ``TextDataset``);
    a folder whose files are mostly WAV/FLAC/OGG is sound (→ ``AudioDataset``).

    Args:
        spec: the DATA argument.
        text_column, label_column, encoding: how text files are read (see :func:`read_text_table`).
        targets: several label columns of a ``.csv``/``.tsv``/``.jsonl``, one per task (→ ``MultiTaskDataset``,
            :func:`~transferkit.data.multitask.read_multitask_table`); ``label_column`` is then not read.
    """
    text = os.fspath(spec)
    path = Path(text)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"`encoding={encoding!r}` is not an encoding Python knows; use e.g. utf-8, latin-1 or "
                        f"cp1252.") from None
    if targets is not None:
        from .multitask import read_multitask_table

        if path.suffix.lower() not in (".csv", ".tsv", ".jsonl") or not path.is_file():
            raise DataError(f"`targets` names label columns of a table; DATA must be a .csv (images: a path column; "
                            f"texts: a text column), .tsv or .jsonl file. Got {text!r} instead.")
        return read_multitask_table(path, targets, text_column=text_column, encoding=encoding)
    if is_text_table(path, text_column, encoding):
        return read_text_table(path, text_column=text_column, label_column=label_column, encoding=encoding)
    if text == "embedded":
        return load_embedded()
    if (text == "fashion-mnist" or text.startswith("fashion-mnist:")) and not path.exists():
        _, _, split = text.partition(":")
        return load_fashion_mnist(split or "train")
    if text in DIGIT_SHIFT and not path.exists():
        from .digit_shift import load_digit_shift

        return load_digit_shift(text)
    if path.suffix.lower() == ".csv":
        return from_csv(path, label_column=label_column)
    if path.is_file():
        raise DataError(f"{text!r} is a file; DATA must be a folder of <class>/<image>, a .csv, .tsv or .jsonl, "
                        "or 'embedded'.")
    if is_audio_folder(path):
        return from_audio_folder(path)
    return from_folder(path)
