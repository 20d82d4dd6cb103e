"""``transferkit quickstart``: the offline demo on the embedded Fashion-MNIST subset, transfer against the strong,
cheap baseline that ``fit``'s verdict uses (a small CNN at the images' own 28 px), and its comparison plot."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle import save_bundle, update_bundle_meta
from ..data import load_embedded, stratified_split
from ..evaluation import evaluate
from ..strategies import FeatureExtractionClassifier, ScratchClassifier, SmallCNNClassifier
from ..strategies.baselines import baseline_kind
from ._fit_config import DEFAULT_BACKBONE
from .baseline import describe


@dataclass
class QuickstartConfig:
    """Everything ``transferkit quickstart`` needs.

    Attributes:
        out: output directory (the bundle goes to ``out/bundle``).
        seed: seeds the split and both models.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: show progress bars.
        baseline: what transfer is judged against, as ``fit --baseline``: ``auto``/``small-cnn`` (a small CNN from
            scratch at 28 px, what a user would try without transfer) or ``arch`` (EfficientNet-Lite0 itself from
            random init at 64 px: did pretraining help this network?).
    """

    out: str = "transferkit-quickstart"
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    baseline: str = "auto"


def quickstart(cfg: QuickstartConfig | None = None) -> dict[str, Any]:
    """Offline demo on the embedded Fashion-MNIST subset: packaged EfficientNet-Lite0 features vs a from-scratch
    baseline (a small CNN at the images' own 28 px by default; ``baseline="arch"``: the same architecture from random
    weights at 64 px).

    Both use the same seeded split (300 train / 100 validation) and the verdict of ``fit``. Writes the
    feature-extraction bundle to ``out/bundle``, a comparison plot ``out/quickstart.png`` and a confusion matrix.
    """
    cfg = cfg or QuickstartConfig()
    out, seed, device, progress = cfg.out, cfg.seed, cfg.device, cfg.progress
    kind = baseline_kind(cfg.baseline, "image")
    out_dir = Path(out)
    data = load_embedded()
    train, val = stratified_split(data, 0.25, seed=seed)
    results = []
    fitted = []
    bundle_dir = out_dir / "bundle"
    baseline = (SmallCNNClassifier(seed=seed, device=device, progress=progress) if kind == "small-cnn" else
                ScratchClassifier(DEFAULT_BACKBONE, epochs=10, image_size=64, seed=seed, device=device,
                                  progress=progress))
    for label, estimator in (
        ("feature-extraction (packaged:efficientnet_lite0 + logistic)",
         FeatureExtractionClassifier(DEFAULT_BACKBONE, seed=seed, device=device, progress=progress)),
        ("small CNN from scratch (28 px)" if kind == "small-cnn" else
         "scratch (same architecture, random init, 64 px, 10 epochs)", baseline),
    ):
        start = time.perf_counter()
        estimator.fit(train)
        fitted.append(estimator)
        is_transfer = estimator.strategy_name == "feature-extraction"
        metrics = evaluate(estimator, val, confusion_png=(bundle_dir / "confusion_matrix.png") if is_transfer else None)
        seconds = time.perf_counter() - start
        results.append({"strategy": estimator.strategy_name, "label": label, "accuracy": metrics["accuracy"],
                        "macro_f1": metrics["macro_f1"], "seconds": round(seconds, 2)})
        if is_transfer:
            save_bundle(estimator, bundle_dir, metrics=metrics,
                        data={"name": data.name, "train_images": len(train), "val_images": len(val), "seed": seed})
    plot = save_comparison_plot(results, out_dir / "quickstart.png")
    transfer, scratch = results
    from ..verdict import judge, marks

    described = describe(fitted[1], DEFAULT_BACKBONE)
    verdict = judge([marks(fitted[0], val)], [marks(fitted[1], val)], seed=seed, baseline_name=described["name"],
                    context={"strategy": "feature-extraction", "backbone": DEFAULT_BACKBONE, "data": "embedded",
                             "baseline": described["strategy"]}).to_dict()
    verdict["baseline"] = described
    update_bundle_meta(bundle_dir, verdict=verdict)
    return {
        "verdict": verdict,
        "accuracy": transfer["accuracy"],
        "baseline": kind,
        "scratch_accuracy": scratch["accuracy"],
        "gain": round(transfer["accuracy"] - scratch["accuracy"], 4),
        "bundle": str(bundle_dir),
        "plot": str(plot),
        "confusion_png": str(bundle_dir / "confusion_matrix.png"),
        "results": results,
        "train_images": len(train),
        "val_images": len(val),
    }


def save_comparison_plot(results: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._utils import atomic_path

    names = [r["strategy"] for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    colors = ["#2a9d8f", "#e76f51", "#264653", "#e9c46a"][: len(results)]
    ax1.bar(names, [r["accuracy"] for r in results], color=colors)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("validation accuracy")
    for i, r in enumerate(results):
        ax1.text(i, r["accuracy"] + 0.02, f"{r['accuracy']:.2f}", ha="center")
    ax2.bar(names, [r["seconds"] for r in results], color=colors)
    ax2.set_ylabel("seconds (fit + evaluate)")
    fig.suptitle("Transfer vs training from scratch on the embedded Fashion-MNIST subset")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
