"""``transferkit report``: one self-contained HTML page about a bundle on labelled data — scores, confusion matrix,
per-class precision and recall, calibration with temperature scaling, training curves and the transfer verdict,
the most confident mistakes, and the model card (:mod:`transferkit.report`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import TransferkitError
from .._utils import atomic_path
from ..bundle import load_bundle, read_meta
from ..data import open_dataset, per_class
from ..report import render_html, report_contents
from ._runtime import load_options


@dataclass
class ReportConfig:
    """Everything ``transferkit report`` needs.

    Attributes:
        bundle: bundle directory.
        data: labelled data of the bundle's classes (a class-per-folder directory, a CSV, a built-in name, a text
            file); best data the model was not trained on.
        out: the HTML file to write (written whole or not at all).
        mistakes: how many of the most confident mistakes to show.
        per_class: score at most this many items per class (drawn with ``seed``), for a quick report of a large set.
        seed: seeds that draw and the halves temperature scaling is cross-fitted on.
        text_column, label_column, encoding: how a text file (CSV/TSV/JSONL) is read.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: items per batch (default: the bundle's).
        num_workers: DataLoader worker processes for decoding.
        progress: show progress bars.
    """

    bundle: str
    data: str
    out: str
    mistakes: int = 12
    per_class: int | None = None
    seed: int = 0
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int = 0
    progress: bool = True


def report_bundle(cfg: ReportConfig) -> dict[str, Any]:
    """Score ``cfg.bundle`` on ``cfg.data`` once and write the HTML report to ``cfg.out``.

    Returns:
        ``out``, ``bundle``, ``data``, ``accuracy``, ``macro_f1``, ``items``, ``ece``, ``ece_after``,
        ``temperature``, ``mistakes`` (how many shown), ``verdict`` (its word, or None), ``training_curves``
        (whether shown), ``licence``, ``warnings``.

    Raises:
        TransferkitError: ``out`` does not end in ``.html``; DataError / BundleError as :func:`~transferkit.evaluate`
            and :func:`~transferkit.load_bundle` raise them.
    """
    if not str(cfg.out).lower().endswith((".html", ".htm")):
        raise TransferkitError(f"`out` is the HTML file to write; got {cfg.out!r}. Name it e.g. report.html.")
    if cfg.mistakes < 0:
        raise TransferkitError(f"`mistakes` must be 0 or more. Got {cfg.mistakes} instead.")
    meta = read_meta(cfg.bundle)
    model = load_bundle(cfg.bundle, **load_options(cfg))
    data = open_dataset(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding)
    if cfg.per_class is not None and data.labels is not None:
        data = per_class(data, cfg.per_class, seed=cfg.seed)
    contents = report_contents(model, data, meta, bundle=cfg.bundle, mistakes=cfg.mistakes, seed=cfg.seed)
    page = render_html(contents)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    cal, verdict = contents["calibration"], contents["verdict"]
    return {
        "out": str(out), "bundle": cfg.bundle, "data": data.name, "bytes": len(page.encode()),
        "accuracy": contents["metrics"]["accuracy"], "macro_f1": contents["metrics"]["macro_f1"],
        "items": contents["metrics"]["images"],
        "ece": cal["ece_before"] if cal else None, "ece_after": cal["ece_after"] if cal else None,
        "temperature": cal["temperature"] if cal else None, "mistakes": len(contents["mistakes"]),
        "verdict": (verdict.get("verdict") or verdict.get("status")) if verdict else None,
        "training_curves": contents["figures"]["training_curves"] is not None,
        "licence": contents["model_card"]["licence"], "warnings": contents["warnings"],
    }
