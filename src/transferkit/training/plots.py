"""The training-curve plot a run directory gets next to its ``metrics.jsonl``: loss and accuracy per epoch, with a
dotted line where the next stage (an unfreezing) begins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._utils import atomic_path


def save_training_curves(history: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["loss"] for r in history], "o-", label="train loss")
    if any("val_loss" in r for r in history):
        ax1.plot(epochs, [r.get("val_loss", np.nan) for r in history], "o-", label="val loss")
    ax2.plot(epochs, [r["train_accuracy"] for r in history], "o-", label="train accuracy")
    if any("val_accuracy" in r for r in history):
        ax2.plot(epochs, [r.get("val_accuracy", np.nan) for r in history], "o-", label="val accuracy")
    for ax in (ax1, ax2):
        previous = None
        for r in history:
            if r["stage"] != previous and previous is not None:
                ax.axvline(r["epoch"] - 0.5, color="grey", ls=":", lw=1)
            previous = r["stage"]
        ax.set_xlabel("epoch")
        ax.legend()
    ax1.set_title("loss")
    ax2.set_title("accuracy (dotted lines: next stage)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
