"""``transferkit curve``: transfer vs scratch over label budgets, on DATA or a separate test set (the science is in
:mod:`transferkit.curve`; this job opens the data and checks what the command was given)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import DataError
from ..curve import CurveConfig, learning_curve


@dataclass
class CurveJob:
    """Everything ``transferkit curve`` needs.

    Attributes:
        data: labelled data (folder, CSV, text file or built-in name).
        out: directory for ``curve.json`` and ``curve.png`` (re-run to resume).
        config: the curve's own settings (:class:`~transferkit.CurveConfig`).
        test: a separate labelled test set (default: hold out ``config.test_fraction`` of ``data``).
        classes: keep only these classes (names or indices, ``"0-4"``).
        head: the feature-extraction head (None: ``config.head``); refused with ``strategy='fine-tune'``.
        text_column, label_column, encoding: how text files are read.
        log: where progress lines go (None: nowhere).
    """

    data: str
    out: str
    config: CurveConfig = field(default_factory=CurveConfig)
    test: str | None = None
    classes: str | None = None
    head: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    log: Callable[[str], None] | None = None


def curve(job: CurveJob) -> dict[str, Any]:
    """Open the data, check it, and run :func:`~transferkit.learning_curve`; returns its report."""
    from ..data import open_dataset, select_classes

    text = {"text_column": job.text_column, "label_column": job.label_column, "encoding": job.encoding}
    data = open_dataset(job.data, **text)
    test = open_dataset(job.test, **text) if job.test else None
    if job.classes:
        data = select_classes(data, job.classes)
        test = select_classes(test, job.classes) if test is not None else None
    if test is not None and list(test.classes) != list(data.classes):
        raise DataError(f"`test` has classes {list(test.classes)} but `data` has {list(data.classes)}; they must be "
                        f"the same.")
    config = job.config
    if job.head is not None:
        if config.strategy != "feature-extraction":
            raise DataError(f"`head` is the feature-extraction head; `strategy={config.strategy!r}` trains its own. "
                            f"Leave `head` out, or use `strategy='feature-extraction'`.")
        config = dataclasses.replace(config, head=job.head)
    return learning_curve(data, config, job.out, test=test, log=job.log)
