"""The report's pictures, as ``data:`` URIs of PNGs, so the HTML needs no other file and no network."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

THUMBNAIL = 96  # px, the longer side of a mistake's thumbnail


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(fig)
    return buffer.getvalue()


def reliability_png(calibration: dict[str, Any]) -> bytes:
    """Reliability diagrams before and after temperature scaling (Guo et al.'s figure 1): accuracy per confidence
    bin against the diagonal of perfect calibration, the gap to the bin's mean confidence outlined in red, and
    below, how many predictions fall in each bin."""
    plt = _pyplot()
    panels = [("as predicted", calibration["before"], calibration["ece_before"]),
              (f"temperature T = {calibration['temperature']:.2f} (cross-fitted)", calibration["after"],
               calibration["ece_after"])]
    fig, axes = plt.subplots(2, 2, figsize=(9, 4.8), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for column, (title, bins, ece) in enumerate(panels):
        top, bottom = axes[0, column], axes[1, column]
        edges = bins["edges"]
        width = edges[1] - edges[0]
        filled = [(e, a, c) for e, a, c in zip(edges[:-1], bins["accuracy"], bins["confidence"], strict=True)
                  if a is not None]
        lefts = [e for e, _, _ in filled]
        top.bar(lefts, [a for _, a, _ in filled], width=width, align="edge", color="#4c78a8", edgecolor="white",
                label="accuracy")
        top.bar(lefts, [c - a for _, a, c in filled], bottom=[a for _, a, _ in filled], width=width, align="edge",
                fill=False, edgecolor="#d62728", hatch="//", lw=0.8, label="gap to confidence")
        top.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_title(f"{title}: ECE {ece:.3f}", fontsize=10)
        bottom.bar(edges[:-1], bins["count"], width=width, align="edge", color="#9aa5b1", edgecolor="white")
        bottom.set_xlabel("confidence (top probability)")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("predictions")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def training_curves_png(history: list[dict[str, Any]]) -> bytes | None:
    """The training curves a run directory gets (:func:`transferkit.training.plots.save_training_curves`), from
    the history its bundle keeps; None when there is none (feature extraction trains no epochs)."""
    rows = [r for r in history if isinstance(r, dict) and {"epoch", "loss", "train_accuracy", "stage"} <= set(r)]
    if not rows:
        return None
    from ..training.plots import save_training_curves

    with tempfile.TemporaryDirectory() as tmp:
        path = save_training_curves(rows, Path(tmp) / "curves.png")
        return path.read_bytes()


def thumbnail_png(image: Image.Image, size: int = THUMBNAIL) -> bytes:
    """A small RGB PNG of ``image``, scaled up with nearest neighbours when tiny (a 28-px digit stays sharp)."""
    image = image.convert("RGB")
    scale = size / max(image.size)
    new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(new, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
