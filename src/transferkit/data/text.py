"""``TextDataset``: labeled texts from CSV, TSV, JSONL or plain-text files, with content keys for caching.

The same surface the strategies use from :class:`~transferkit.data.ImageDataset` (``items``, ``labels``,
``classes``, ``name``, ``skipped``, ``content_key``, ``describe``, ``subset``, ``class_counts``, ``summary``),
so splits, few-shot sampling, the feature cache, training and bundles work on texts unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError
from ._dataset import count_per_class, encode_labels

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".txt")


@dataclass
class TextDataset:
    """Texts with integer labels into ``classes``.

    Attributes:
        items: the texts.
        labels: ``(N,)`` integer class indices, or None for unlabeled inputs.
        classes: class names; ``labels`` index into it.
        name: where the data came from, for summaries.
        skipped: ``(input, reason)`` for rows already known to be unusable (empty text, no label).
        sources: where each text came from (``file:line``), for messages; defaults to ``name[i]``.
    """

    items: list[str]
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    name: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sources: list[str] | None = None

    modality = "text"
    is_array = False

    def __post_init__(self) -> None:
        self.items = [str(t) for t in self.items]
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.items):
                raise DataError(f"Got {len(self.items)} texts but {len(self.labels)} labels; they must match.")

    def __len__(self) -> int:
        return len(self.items)

    def describe(self, i: int) -> str:
        return self.sources[i] if self.sources is not None else f"{self.name or 'texts'}[{i}]"

    def load(self, i: int) -> str:
        return self.items[i]

    def content_key(self, i: int) -> str:
        """sha256 of the UTF-8 text: what the feature cache is keyed on."""
        return hashlib.sha256(("text\0" + self.items[i]).encode("utf-8", "surrogatepass")).hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64)]
        labels = None if self.labels is None else self.labels[np.asarray(idx, dtype=np.int64)]
        sources = None if self.sources is None else [self.sources[i] for i in idx]
        return TextDataset([self.items[i] for i in idx], labels, list(self.classes), self.name, [], sources)

    def class_counts(self) -> dict[str, int]:
        return count_per_class(self.labels, self.classes)

    def duplicates(self) -> dict[str, int]:
        """``{"duplicates": texts repeating an earlier text, "conflicting": of those, with another label}``.

        Duplicates are kept (they may be real repeated inputs) but reported: across a train/validation split they
        inflate validation scores, and conflicting ones cap the reachable accuracy.
        """
        first: dict[str, int] = {}
        dup = conflict = 0
        for i, text in enumerate(self.items):
            if text in first:
                dup += 1
                if self.labels is not None and self.labels[first[text]] != self.labels[i]:
                    conflict += 1
            else:
                first[text] = i
        return {"duplicates": dup, "conflicting": conflict}

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "texts": len(self), "classes": len(self.classes),
                "per_class": self.class_counts(), "skipped": [list(s) for s in self.skipped], **self.duplicates()}


def _decode(path: Path, encoding: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{str(path)!r} is not valid {encoding} (byte 0x{data[e.start]:02x} at position {e.start}); "
            "pass its encoding, e.g. `encoding='latin-1'`, or save it as UTF-8."
        ) from None
    except LookupError:
        raise DataError(f"Unknown text encoding {encoding!r}; use e.g. utf-8, latin-1 or cp1252.") from None


def _lines(text: str) -> list[str]:
    """Lines ended by \\n, \\r\\n or \\r only: str.splitlines() would also split at U+2028, U+0085 and form feeds,
    which JSON strings and texts may hold."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and not lines[-1] else lines  # a final newline ends the last line, starts none


def _rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """``(columns, [(line number, row), ...])`` of a CSV, TSV or JSONL file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows: list[tuple[int, dict[str, Any]]] = []
        columns: dict[str, None] = {}
        for line_no, line in enumerate(_lines(text), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{str(path)!r} line {line_no} is not JSON ({e.msg}); write one object per line.") from None
            if not isinstance(row, dict):
                raise DataError(f"{str(path)!r} line {line_no} is not a JSON object; write one object per line.")
            columns.update(dict.fromkeys(row))
            rows.append((line_no, row))
        return list(columns), rows
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        columns_list = list(reader.fieldnames or [])
        # reader.line_num counts physical lines, so quoted texts with newlines still report the right line
        out = [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise DataError(f"{str(path)!r} is malformed: {e}.") from None
    return columns_list, out


def read_text_table(
    path: str | os.PathLike[str], *, text_column: str = "text", label_column: str = "label", encoding: str = "utf-8",
    require_labels: bool = True,
) -> TextDataset:
    """Texts and labels from a ``.csv``, ``.tsv`` or ``.jsonl`` file (``text,label`` columns by default).

    Rows with an empty text (or, when labels are read, an empty label) are skipped and listed in ``skipped``;
    duplicate texts are kept and counted in :meth:`TextDataset.summary`. A ``.txt`` file holds one text per line
    (no labels).

    Args:
        path: the file.
        text_column, label_column: column (or JSON key) names.
        encoding: the file's text encoding (default UTF-8, a BOM is ignored).
        require_labels: False reads files without a label column as unlabeled texts (for prediction).

    Raises:
        DataError: missing file or column, undecodable bytes (naming ``encoding``), malformed rows, no texts.

    Example:
        >>> ds = read_text_table("reviews.csv", text_column="review", label_column="stars")
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Text file {str(path)!r} does not exist.")
    content = _decode(path, encoding)
    if path.suffix.lower() == ".txt":
        numbered = [(n, t.strip()) for n, t in enumerate(_lines(content), start=1)]
        kept = [(n, t) for n, t in numbered if t]
        return TextDataset([t for _, t in kept], None, [], str(path),
                           [(f"{path}:{n}", "empty text") for n, t in numbered if not t],
                           [f"{path}:{n}" for n, _ in kept])
    columns, rows = _rows(path, content)
    if text_column not in columns:
        raise DataError(
            f"{str(path)!r} has no text column {text_column!r}; found {columns}. Pass `text_column='NAME'`."
        )
    with_labels = label_column in columns
    if require_labels and not with_labels:
        raise DataError(
            f"{str(path)!r} has no label column {label_column!r}; found {columns}. Pass `label_column='NAME'`."
        )
    texts: list[str] = []
    names: list[str] = []
    sources: list[str] = []
    skipped: list[tuple[str, str]] = []
    for line, row in rows:
        where = f"{path}:{line}"
        value = row.get(text_column)
        text = "" if value is None else str(value).strip()
        label = row.get(label_column) if with_labels else None
        label = "" if label is None else str(label).strip()
        if not text:
            skipped.append((where, "empty text"))
        elif with_labels and not label:
            skipped.append((where, "empty label"))
        else:
            texts.append(text)
            names.append(label)
            sources.append(where)
    if not texts:
        raise DataError(f"{str(path)!r} has no usable texts ({len(skipped)} rows skipped: empty text or label).")
    if not with_labels:
        return TextDataset(texts, None, [], str(path), skipped, sources)
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return TextDataset(texts, np.array([index[n] for n in names]), classes, str(path), skipped, sources)


def from_texts(texts: Sequence[str], labels: Sequence[Any] | np.ndarray | None = None,
               classes: Sequence[str] | None = None, name: str = "texts") -> TextDataset:
    """In-memory texts with labels (names or integers) — the text counterpart of ``from_arrays``.

    Example:
        >>> ds = from_texts(["great film", "dull plot"], ["pos", "neg"])
    """
    texts = [str(t) for t in texts]
    if labels is None:
        return TextDataset(texts, None, list(classes or []), name)
    values, names = encode_labels(labels, classes, len(texts), "texts")
    return TextDataset(texts, values, names, name)


def is_text_table(path: Path, text_column: str = "text", encoding: str = "utf-8") -> bool:
    """Whether a data file holds texts: ``.tsv``/``.jsonl``/``.txt``, or a ``.csv`` with a text column."""
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".jsonl", ".txt"):
        return True
    if suffix != ".csv" or not path.is_file():
        return False
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        header = next(csv.reader(f), [])
    header = [h.lstrip("\ufeff").strip() for h in header]
    return text_column in header and "path" not in header
