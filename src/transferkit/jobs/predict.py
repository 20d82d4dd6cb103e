"""``transferkit predict``: label and class probabilities for each image (or text, or audio clip) with a bundle.

A text bundle reads its inputs from files: a ``.txt`` holds one text per line, a ``.csv``/``.tsv``/``.jsonl``
has a text column (a label column, if any, is ignored).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError
from ..data import ImageDataset, TextDataset, from_audio_files, read_text_table
from ..data.sources import visible_files
from ..export import load_model
from ..strategies._multitask import split_tasks, tasks_of
from ._runtime import load_options


@dataclass
class PredictConfig:
    """Everything ``transferkit predict`` needs.

    Attributes:
        bundle: bundle directory written by ``fit`` or ``pretrain``, or a ``.onnx`` file written by ``export``.
        inputs: image (audio) files or folders, searched recursively; for a text bundle ``.txt`` files (one text per
            line) or CSV/TSV/JSONL files with a text column.
        text_column: column (JSON key) of the texts in a CSV/TSV/JSONL input.
        encoding: encoding of text files.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: items per batch (default: the bundle's).
        num_workers: DataLoader worker processes for decoding.
        progress: show progress bars.
    """

    bundle: str
    inputs: list[str] = dataclasses.field(default_factory=list)
    text_column: str = "text"
    encoding: str = "utf-8"
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int = 0
    progress: bool = True


def predict_files(cfg: PredictConfig) -> dict[str, Any]:
    """Predictions for image (or text, or audio) files with a bundle or an exported ``.onnx`` file.

    Returns:
        ``{"bundle", "classes", "predictions", "skipped"}``: one prediction per readable input, each with ``input``,
        ``label`` and ``probabilities`` (text predictions also carry ``text``); ``skipped`` lists what could not be
        read and why. A multi-task bundle adds ``tasks``; its ``classes`` are ``{task: names}`` and each
        prediction has ``labels`` ``{task: label}`` and ``probabilities`` ``{task: {class: p}}``.

    Raises:
        DataError: no input found, or none of them readable.
    """
    model = load_model(cfg.bundle, **load_options(cfg))
    if model.modality_ == "text":
        ds: Any = read_texts(cfg.inputs, text_column=cfg.text_column, encoding=cfg.encoding)
    elif model.modality_ == "audio":
        ds = from_audio_files(expand_inputs(cfg.inputs))
    else:
        ds = ImageDataset(expand_inputs(cfg.inputs), None, [], name="inputs")
    proba, index, skipped = model.predict_proba_details(ds)
    skipped = list(dict.fromkeys(tuple(s) for s in [*ds.skipped, *skipped]))  # empty lines of text files too
    if tasks_of(model):
        return _task_predictions(cfg, model, ds, proba, index, skipped)
    classes = [str(c) for c in model.classes_]
    predictions = [
        {"input": ds.describe(i), **({"text": ds.items[i]} if model.modality_ == "text" else {}),
         "label": classes[int(np.argmax(p))],
         "probabilities": {c: float(v) for c, v in zip(classes, p, strict=True)}}
        for i, p in zip(index.tolist(), proba, strict=True)
    ]
    if not predictions:
        raise nothing_readable(skipped, model.modality_)
    return {"bundle": cfg.bundle, "classes": classes, "predictions": predictions,
            "skipped": [{"input": s[0], "reason": s[1]} for s in skipped]}


def _task_predictions(cfg: PredictConfig, model: Any, ds: Any, proba: np.ndarray, index: np.ndarray,
                      skipped: list[tuple[str, str]]) -> dict[str, Any]:
    """Every task's label and probabilities for each readable input of a multi-task bundle."""
    if not len(index):
        raise nothing_readable(skipped, model.modality_)
    classes = {task: [str(c) for c in names] for task, names in zip(model.tasks_, model.classes_, strict=True)}
    parts = split_tasks(model, proba)
    predictions = []
    for row, i in enumerate(index.tolist()):
        per_task = {task: parts[t][row] for t, task in enumerate(model.tasks_)}
        predictions.append({
            "input": ds.describe(i), **({"text": ds.items[i]} if model.modality_ == "text" else {}),
            "labels": {task: classes[task][int(np.argmax(p))] for task, p in per_task.items()},
            "probabilities": {task: {c: float(v) for c, v in zip(classes[task], p, strict=True)}
                              for task, p in per_task.items()}})
    return {"bundle": cfg.bundle, "tasks": list(model.tasks_), "classes": classes, "predictions": predictions,
            "skipped": [{"input": s[0], "reason": s[1]} for s in skipped]}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """The files of ``inputs``: files as they are, folders searched recursively (hidden files left out)."""
    paths: list[Path] = []
    for text in inputs:
        p = Path(text)
        if p.is_dir():
            paths.extend(visible_files(p))
        else:
            paths.append(p)
    if not paths:
        raise DataError(f"No images found in {', '.join(inputs)}.")
    return paths


def read_texts(inputs: list[str], *, text_column: str = "text", encoding: str = "utf-8") -> TextDataset:
    """The texts of every input file, in order: ``.txt`` one per line, CSV/TSV/JSONL from ``text_column``."""
    texts: list[str] = []
    sources: list[str] = []
    skipped: list[tuple[str, str]] = []
    for text in inputs:
        ds = read_text_table(text, text_column=text_column, encoding=encoding, require_labels=False)
        texts.extend(ds.items)
        sources.extend(ds.describe(i) for i in range(len(ds)))
        skipped.extend(ds.skipped)
    return TextDataset(texts, None, [], "inputs", skipped, sources)


def nothing_readable(skipped: list[tuple[str, str]], modality: str) -> DataError:
    """One line naming the inputs (the first three) and why each could not be read."""
    named = "; ".join(f"{item} ({reason})" for item, reason in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    expected = (".txt files (one text per line) or CSV/TSV/JSONL with a text column" if modality == "text"
                else f"{modality} files or folders of them")
    return DataError(f"None of the {len(skipped)} inputs could be read: {named}{more}. Pass {expected}.")
