"""``transferkit evaluate``: accuracy, macro-F1, per-class scores and a confusion matrix PNG of a bundle on labelled
data; a warning when the bundle was trained on some of it (:mod:`transferkit.data.seen`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import DataError
from ..data import open_dataset, read_multitask_table
from ..data.multitask import table_columns
from ..data.seen import count_seen, seen_warnings
from ..evaluation import evaluate
from ..export import load_model
from ..strategies._multitask import tasks_of
from ._runtime import load_options


@dataclass
class EvaluateConfig:
    """Everything ``transferkit evaluate`` needs.

    Attributes:
        bundle: bundle directory, or a ``.onnx`` file written by ``export``.
        data: labelled data: a class-per-folder directory, a ``path,label`` CSV, a built-in name, or a text file.
        plot: where the confusion matrix PNG goes (default: ``BUNDLE/evaluation_confusion.png``; for ``model.onnx``,
            ``model.evaluation_confusion.png`` beside it).
        text_column, label_column, encoding: how a text file (CSV/TSV/JSONL) is read.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: items per batch (default: the bundle's).
        num_workers: DataLoader worker processes for decoding.
        progress: show progress bars.
    """

    bundle: str
    data: str
    plot: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int = 0
    progress: bool = True


def evaluate_bundle(cfg: EvaluateConfig) -> dict[str, Any]:
    """Load ``cfg.bundle`` (a bundle or an exported ``.onnx`` file) and score it on ``cfg.data``; the confusion
    matrix is saved as a PNG.

    Returns:
        :func:`~transferkit.evaluate`'s scores plus ``bundle``, ``data`` (its name), ``seen`` (how many of the
        items the bundle was trained on, None when unknown) and ``warnings``. A multi-task bundle reads DATA's
        columns of its tasks (those present; an empty cell is no label) and scores each task (``tasks``).
    """
    model = load_model(cfg.bundle, **load_options(cfg))
    if tasks_of(model):
        ds = _task_table(cfg, model.tasks_)
    else:
        ds = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column,
                          encoding=cfg.encoding)
    png = Path(cfg.plot) if cfg.plot else default_plot(Path(cfg.bundle))
    seen = count_seen(getattr(model, "train_items_", None), ds)
    return {"bundle": cfg.bundle, "data": ds.name, **evaluate(model, ds, confusion_png=png), "seen": seen,
            "warnings": seen_warnings(cfg.bundle, seen, len(ds), "evaluated images", "the scores are optimistic",
                                      "evaluate on images it was not trained on")}


def _task_table(cfg: EvaluateConfig, tasks: list[str]) -> Any:
    """DATA read with the label columns of the bundle's ``tasks`` that it has."""
    columns = table_columns(cfg.data, cfg.encoding)
    present = [t for t in tasks if t in columns]
    if not present:
        raise DataError(f"{cfg.data!r} has no label column of the bundle's tasks ({', '.join(tasks)}); its columns "
                        f"are: {', '.join(columns)}. Evaluate a multi-task bundle on a table with them.")
    return read_multitask_table(cfg.data, present, text_column=cfg.text_column, encoding=cfg.encoding, minimum=1)
def default_plot(bundle: Path) -> Path:
    """Where the confusion matrix goes by default: into a bundle, or beside an ``.onnx`` file."""
    return bundle.with_name(f"{bundle.stem}.evaluation_confusion.png") if bundle.is_file() else \
        bundle / "evaluation_confusion.png"
