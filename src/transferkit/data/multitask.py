"""``MultiTaskDataset``: one set of inputs with several label columns (tasks), some cells possibly empty.

A table such as ``path,category,colour`` (or ``text,topic,urgency``) labels every item for several tasks at once;
a cell left empty means "not labelled for that task" and is stored as :data:`MISSING` (-1): the item still trains
the tasks it has labels for, and its empty cells are masked out of those tasks' losses. The inputs are an ordinary
:class:`~transferkit.data.ImageDataset` / :class:`~transferkit.data.TextDataset` / ``AudioDataset`` without labels,
so loaders, the feature cache and training-item digests read a ``MultiTaskDataset`` as they read those.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError, did_you_mean
from ._dataset import ImageDataset, check_bad_fraction, unreadable_images
from .text import TextDataset, _decode, _rows

#: the label of an item not labelled for a task (an empty cell)
MISSING = -1


@dataclass
class MultiTaskDataset:
    """Inputs labelled for several tasks.

    Attributes:
        inputs: the items, as a dataset of their modality without labels.
        tasks: task names (the label columns), in order.
        labels: ``(N, T)`` integer class indices per task; :data:`MISSING` where an item has no label for a task.
        classes: per task, its class names (``labels[:, t]`` index into ``classes[t]``).
        name: where the data came from, for summaries.
        skipped: ``(input, reason)`` for rows already known to be unusable.
        integer_classes: per task, whether the labels were given as integers (then ``classes_`` are integers too,
            as scikit-learn does).
    """

    inputs: Any
    tasks: list[str]
    labels: np.ndarray
    classes: list[list[str]]
    name: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    integer_classes: list[bool] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(len(self.inputs), -1)
        if self.labels.shape[1] != len(self.tasks) or len(self.classes) != len(self.tasks):
            raise DataError(f"Got {len(self.tasks)} tasks, {len(self.classes)} class lists and labels of shape "
                            f"{self.labels.shape}; they must match.")
        if len(set(self.tasks)) != len(self.tasks):
            raise DataError(f"Task names must be distinct. Got {self.tasks} instead.")
        for t, names in enumerate(self.classes):
            column = self.labels[:, t]
            if column.min(initial=0) < MISSING or column.max(initial=-1) >= len(names):
                raise DataError(f"Labels of task {self.tasks[t]!r} must index its {len(names)} classes or be "
                                f"{MISSING} (no label). Got {int(column.min())}..{int(column.max())}.")
        if self.integer_classes is None:
            self.integer_classes = [False] * len(self.tasks)

    @property
    def modality(self) -> str:
        return str(getattr(self.inputs, "modality", "image"))

    @property
    def is_array(self) -> bool:
        return bool(getattr(self.inputs, "is_array", False))

    @property
    def items(self) -> Any:
        return self.inputs.items

    def __len__(self) -> int:
        return len(self.inputs)

    def describe(self, i: int) -> str:
        return str(self.inputs.describe(i))

    def load(self, i: int) -> Any:
        return self.inputs.load(i)

    def content_key(self, i: int) -> str:
        return str(self.inputs.content_key(i))

    def subset(self, indices: Sequence[int] | np.ndarray) -> MultiTaskDataset:
        idx = np.asarray(indices, dtype=np.int64)
        return MultiTaskDataset(self.inputs.subset(idx), list(self.tasks), self.labels[idx],
                                [list(c) for c in self.classes], self.name, [], list(self.integer_classes or []))

    def labelled(self, task: int) -> np.ndarray:
        """Positions of the items labelled for task number ``task``."""
        return np.flatnonzero(self.labels[:, task] != MISSING)

    def task(self, task: int | str) -> Any:
        """The items labelled for one task, as an ordinary single-task dataset of the inputs' kind."""
        t = task if isinstance(task, int) else self.tasks.index(task)
        rows = self.labelled(t)
        return dataclasses.replace(self.inputs.subset(rows), labels=self.labels[rows, t],
                                   classes=list(self.classes[t]), name=f"{self.name}[{self.tasks[t]}]")

    def class_counts(self) -> dict[str, dict[str, int]]:
        """``{task: {class: labelled items}}``."""
        return {name: {c: int((self.labels[:, t] == k).sum()) for k, c in enumerate(self.classes[t])}
                for t, name in enumerate(self.tasks)}

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "items": len(self), "tasks": list(self.tasks),
                "labelled": {name: int(len(self.labelled(t))) for t, name in enumerate(self.tasks)},
                "per_class": self.class_counts(), "skipped": [list(s) for s in self.skipped]}


def _encode_column(values: Sequence[Any], task: str) -> tuple[np.ndarray, list[str], bool]:
    """One task's labels (names or integers; None, '' or NaN for none) → (indices with MISSING, names, integers?)."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        array = np.asarray(values, dtype=object)  # names, with None / NaN / "" where there is no label
    if array.dtype.kind in "iu":
        if array.min(initial=0) < MISSING:
            raise DataError(f"Integer labels of task {task!r} must be >= 0, or {MISSING} for no label. "
                            f"Got {int(array.min())}.")
        top = int(array.max(initial=-1))
        return array.astype(np.int64), [str(i) for i in range(top + 1)], True

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""

    names = sorted({str(v).strip() for v in array.tolist() if not missing(v)})
    index = {c: i for i, c in enumerate(names)}
    return np.array([MISSING if missing(v) else index[str(v).strip()] for v in array.tolist()], dtype=np.int64), \
        names, False


def from_task_labels(inputs: Any, labels: Mapping[str, Sequence[Any]] | np.ndarray, *,
                     name: str | None = None) -> MultiTaskDataset:
    """Inputs and one label sequence per task → a :class:`MultiTaskDataset`.

    Args:
        inputs: an ``ImageDataset``/``TextDataset``/``AudioDataset`` (its own labels, if any, are ignored).
        labels: ``{task name: labels}`` (class names or integers; ``None``, ``""`` or NaN where an item has no label
            for the task; for integers, -1), a pandas ``DataFrame`` (a task per column), or an ``(N, T)`` array whose
            tasks are named ``"0"``, ``"1"``, ...
        name: the dataset's name (default: the inputs').

    Example:
        >>> ds = from_task_labels(from_arrays(images), {"kind": kinds, "colour": colours})
    """
    columns: dict[str, Any]
    if hasattr(labels, "columns"):  # a pandas DataFrame: one task per column, by its name
        columns = {str(c): np.asarray(labels[c]) for c in labels.columns}
    elif isinstance(labels, Mapping):
        columns = {str(k): v for k, v in labels.items()}
    else:
        array = np.asarray(labels)
        if array.ndim != 2:
            raise DataError(f"Multi-task labels must be a {{task: labels}} mapping or an (N, tasks) array. Got shape "
                            f"{array.shape} instead.")
        columns = {str(t): array[:, t] for t in range(array.shape[1])}
    encoded = []
    for task, values in columns.items():
        if len(values) != len(inputs):
            raise DataError(f"Task {task!r} has {len(values)} labels for {len(inputs)} items; they must match.")
        encoded.append(_encode_column(values, task))
    bare = dataclasses.replace(inputs, labels=None, classes=[]) if getattr(inputs, "labels", None) is not None \
        else inputs
    matrix = np.stack([e[0] for e in encoded], axis=1) if encoded else np.zeros((len(inputs), 0), np.int64)
    return MultiTaskDataset(bare, list(columns), matrix, [e[1] for e in encoded],
                            name if name is not None else getattr(inputs, "name", ""), list(inputs.skipped),
                            [e[2] for e in encoded])


def parse_targets(targets: str | Sequence[str], minimum: int = 2) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` → ``["a", "b"]``; at least ``minimum`` distinct names."""
    names = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if str(t).strip()]
    if len(names) < minimum or len(set(names)) != len(names):
        raise DataError(f"`targets` names two or more distinct label columns, one per task (for a single one, use "
                        f"`label_column`). Got {targets!r} instead.")
    return names


def table_columns(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[str]:
    """The column names of a ``.csv``/``.tsv``/``.jsonl`` table (JSONL: every key of any row)."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv", ".jsonl") or not path.is_file():
        raise DataError(f"{str(path)!r} is not a .csv, .tsv or .jsonl file; several tasks' labels are read from "
                        "the columns of one.")
    return _rows(path, _decode(path, encoding))[0]


def read_multitask_table(path: str | os.PathLike[str], targets: str | Sequence[str], *, path_column: str = "path",
                         text_column: str = "text", encoding: str = "utf-8", minimum: int = 2) -> MultiTaskDataset:
    """A ``.csv`` of images (``path_column``) or a ``.csv``/``.tsv``/``.jsonl`` of texts (``text_column``), with one
    label column per task in ``targets``.

    Image paths are relative to the file's folder and may not escape it (as :func:`~transferkit.from_csv`). A row
    with an empty item, or with no label for any task, is skipped and listed; an empty label cell is kept as
    "no label for this task" (:data:`MISSING`).

    ``minimum``: the fewest targets accepted (1 to read a multi-task model's evaluation data).

    Raises:
        DataError: a missing file, a target column that is not in the file (naming the columns it has), fewer than
            ``minimum`` targets, no usable row.

    Example:
        >>> ds = read_multitask_table("products.csv", targets=["category", "colour"])
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"File {str(path)!r} does not exist.")
    tasks = parse_targets(targets, minimum)
    columns, rows = _rows(path, _decode(path, encoding))
    images = path.suffix.lower() == ".csv" and path_column in columns
    item_column = path_column if images else text_column
    if item_column not in columns:
        raise DataError(f"{str(path)!r} has neither an image column {path_column!r} nor a text column "
                        f"{text_column!r}; its columns are: {', '.join(columns)}. Pass `text_column='NAME'`.")
    for task in tasks:
        if task not in columns or task == item_column:
            raise DataError(f"{str(path)!r} has no label column {task!r} for `targets`; its columns are: "
                            f"{', '.join(c for c in columns if c != item_column)}.{did_you_mean(task, columns)}")
    root = path.parent.resolve()
    items: list[Any] = []
    sources: list[str] = []
    cells: list[list[str]] = []
    skipped: list[tuple[str, str]] = []
    for line, row in rows:
        where = f"{path}:{line}"
        value = "" if row.get(item_column) is None else str(row.get(item_column)).strip()
        labels = ["" if row.get(t) is None else str(row.get(t)).strip() for t in tasks]
        if not value:
            skipped.append((where, f"empty {item_column}"))
        elif not any(labels):
            skipped.append((where, "no label for any task"))
        else:
            items.append(_image_path(root, value, path, line) if images else value)
            sources.append(where)
            cells.append(labels)
    if not items:
        raise DataError(f"{str(path)!r} has no usable rows ({len(skipped)} skipped: empty {item_column} or no label "
                        f"for any task).")
    if images and not any(p.exists() for p in items):
        raise DataError(f"None of the {len(items)} paths in {str(path)!r} exists, e.g. {items[0]}; paths are read "
                        f"relative to the file's own folder ({root}).")
    inputs: Any = ImageDataset(items, None, [], str(path)) if images else \
        TextDataset(items, None, [], str(path), [], sources)
    by_task = {t: [c[k] for c in cells] for k, t in enumerate(tasks)}
    ds = from_task_labels(inputs, by_task, name=str(path))
    ds.skipped = skipped
    return ds


def _image_path(root: Path, rel: str, table: Path, line: int) -> Path:
    full = Path(os.path.normpath(root / rel))  # not resolve(): a symlinked folder inside the root is fine
    if not full.is_relative_to(root):
        raise DataError(f"{str(table)!r} line {line}: path {rel!r} escapes the dataset root {str(root)!r}; keep "
                        "images inside the file's folder.")
    return full


def check_tasks_trainable(ds: MultiTaskDataset) -> None:
    """Refuse a multi-task dataset with a task that has fewer than two labelled classes."""
    if len(ds) == 0:
        raise DataError(f"Dataset {ds.name or ''} has no items.")
    for t, task in enumerate(ds.tasks):
        present = [ds.classes[t][k] for k in np.unique(ds.labels[ds.labelled(t), t])]
        if len(present) < 2:
            raise DataError(f"Task {task!r} of {ds.name or 'the data'} has labelled items of "
                            f"{len(present)} class(es) ({', '.join(present) or 'none'}); each task needs two or "
                            "more. Label more items for it, or leave it out of `targets`.")


def drop_unreadable_tasks(ds: MultiTaskDataset, *, max_bad_fraction: float = 1.0,
                          num_workers: int = 0) -> MultiTaskDataset:
    """``ds`` without the image files that cannot be decoded (each listed in ``skipped``), as
    :func:`~transferkit.drop_unreadable`; a task's class left with no labelled item is dropped from that task."""
    if not isinstance(ds.inputs, ImageDataset) or ds.inputs.is_array or len(ds) == 0:
        return ds
    bad = unreadable_images(ds.inputs, num_workers)
    if not bad:
        return ds
    dropped = [(ds.describe(i), reason) for i, reason in bad]
    check_bad_fraction(len(bad), len(ds), max_bad_fraction, ds.name or "the dataset", dropped)
    kept = ds.subset(np.setdiff1d(np.arange(len(ds)), [i for i, _ in bad]))
    kept.name, kept.skipped = ds.name, [*ds.skipped, *dropped]
    for t, task in enumerate(kept.tasks):
        used = np.unique(kept.labels[kept.labelled(t), t])
        if len(used) == len(kept.classes[t]):
            continue
        remap = np.full(len(kept.classes[t]) + 1, MISSING, dtype=np.int64)  # the last entry maps MISSING itself
        remap[used] = np.arange(len(used))
        kept.skipped += [(f"{task}: {c}", "class left out: none of its images could be read")
                         for k, c in enumerate(kept.classes[t]) if k not in set(used.tolist())]
        kept.labels[:, t] = remap[kept.labels[:, t]]
        kept.classes[t] = [kept.classes[t][k] for k in used]
    return kept


def multitask_split(ds: MultiTaskDataset, val_fraction: float = 0.2, seed: int = 0
                    ) -> tuple[MultiTaskDataset, MultiTaskDataset]:
    """Split into train and validation, stratified on the first task (its unlabelled items as a stratum of their
    own) when every stratum has two items, else at random; then every class of every task with two or more
    labelled items is given one training item if the split left it none.

    Raises:
        DataError: a task with no labelled item on one side (too few labels to split).
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"`val_fraction` must be in (0, 1). Got {val_fraction} instead.")
    from sklearn.model_selection import train_test_split

    n = len(ds)
    n_val = min(n - 1, max(1, int(round(val_fraction * n))))
    strata = ds.labels[:, 0] if len(ds.tasks) else np.zeros(n, np.int64)
    _, counts = np.unique(strata, return_counts=True)
    stratify = strata if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts) else None
    train_idx, val_idx = train_test_split(np.arange(n), test_size=n_val, stratify=stratify, random_state=seed)
    rng = np.random.default_rng(seed)
    for t in range(len(ds.tasks)):
        column = ds.labels[:, t]
        for k in range(len(ds.classes[t])):
            in_train, in_val = train_idx[column[train_idx] == k], val_idx[column[val_idx] == k]
            if len(in_train) == 0 and len(in_val) >= 2:  # a class the model never sees cannot be learnt
                move = rng.choice(in_val)
                val_idx, train_idx = val_idx[val_idx != move], np.append(train_idx, move)
    for t, task in enumerate(ds.tasks):
        for side, idx in (("training", train_idx), ("validation", val_idx)):
            if not (ds.labels[idx, t] != MISSING).any():
                raise DataError(f"Task {task!r} has {len(ds.labelled(t))} labelled items, none left for the "
                                f"{side} split; label more items for it, or change `val_fraction`.")
    return ds.subset(np.sort(train_idx)), ds.subset(np.sort(val_idx))
