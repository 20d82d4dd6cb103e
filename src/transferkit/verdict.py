"""The transfer verdict: did the pretrained backbone help, compared with the same architecture trained from scratch?

Transfer can hurt ("negative transfer": Rosenstein, Marx, Kaelbling, Dietterich, "To Transfer or Not To Transfer",
NIPS 2005 Workshop on Inductive Transfer; Wang, Dai, Póczos, Carbonell, "Characterizing and Avoiding Negative
Transfer", CVPR 2019). The verdict compares the transfer model with the from-scratch baseline on the *same* validation
images:

- ``gain`` = accuracy(transfer) − accuracy(scratch);
- ``ci``: a paired percentile bootstrap over the validation images (Efron & Tibshirani, "An Introduction to the
  Bootstrap", 1993; ``scipy.stats.bootstrap(paired=True)``), or, when both were trained with several seeds, a
  Student-t interval over the per-seed gains (which also covers training noise, not only the choice of images);
- ``positive`` when the whole interval is above zero, ``negative`` when it is below, ``neutral`` when it holds zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._errors import DataError
from .data import ImageDataset

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass
class Verdict:
    """Outcome of the transfer-vs-scratch comparison (``to_dict`` is what bundles and ``--json`` store)."""

    verdict: str
    gain: float
    ci: tuple[float, float]
    transfer_accuracy: float
    scratch_accuracy: float
    images: int
    seeds: int
    method: str
    confidence: float = CONFIDENCE
    advice: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = [float(self.ci[0]), float(self.ci[1])]
        return d

    def summary(self) -> str:
        """One line for people: ``positive transfer: +12.0 points (95% CI +8.5 to +15.5) over scratch``."""
        lo, hi = self.ci
        return (f"{self.verdict} transfer: {100 * self.gain:+.1f} points ({100 * self.confidence:.0f}% CI "
                f"{100 * lo:+.1f} to {100 * hi:+.1f}) over the same architecture trained from scratch "
                f"({100 * self.transfer_accuracy:.1f}% vs {100 * self.scratch_accuracy:.1f}%, {self.images} "
                f"validation images{f', {self.seeds} seeds' if self.seeds > 1 else ''})")


def classify(lo: float, hi: float) -> str:
    """``positive`` if the interval is above 0, ``negative`` if below, else ``neutral``."""
    if lo > 0:
        return "positive"
    if hi < 0:
        return "negative"
    return "neutral"


def paired_bootstrap(correct_transfer: np.ndarray, correct_scratch: np.ndarray, *, confidence: float = CONFIDENCE,
                     n_resamples: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """``(gain, lo, hi)`` of mean(correct_transfer) − mean(correct_scratch), resampling images in pairs."""
    from scipy.stats import bootstrap

    a = np.asarray(correct_transfer, dtype=float)
    b = np.asarray(correct_scratch, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise DataError(f"The verdict needs the same >= 2 validation images for both models. Got {a.shape} and "
                        f"{b.shape} instead.")
    gain = float(a.mean() - b.mean())
    if np.all(a == b):  # every resample gives exactly 0; scipy would warn about degenerate data
        return gain, gain, gain
    res = bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True, vectorized=True,
                    confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    rng=np.random.default_rng(seed))
    return gain, float(res.confidence_interval.low), float(res.confidence_interval.high)


def seeds_interval(gains: list[float], *, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: Student-t interval of per-seed gains (needs >= 2 seeds)."""
    from scipy.stats import t

    g = np.asarray(gains, dtype=float)
    if len(g) < 2:
        raise DataError(f"A seed interval needs at least 2 seeds. Got {len(g)} instead.")
    mean, sem = float(g.mean()), float(g.std(ddof=1) / np.sqrt(len(g)))
    half = float(t.ppf(0.5 + confidence / 2, df=len(g) - 1)) * sem
    return mean, mean - half, mean + half


def correctness(model: Any, data: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """``(index, correct)``: which images of ``data`` the model read, and whether it classified each correctly."""
    if data.labels is None:
        raise DataError("The transfer verdict needs labeled validation images.")
    proba, index, _ = model.predict_proba_details(data)
    predicted = np.asarray([str(c) for c in model.classes_])[proba.argmax(1)]
    truth = np.asarray(data.classes)[data.labels[index]]
    return np.asarray(index), predicted == truth


def transfer_verdict(transfer: list[Any] | Any, scratch: list[Any] | Any, validation: ImageDataset, *,
                     confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0,
                     context: dict[str, Any] | None = None) -> Verdict:
    """Compare fitted transfer model(s) with fitted scratch baseline(s) on ``validation``.

    Args:
        transfer: a fitted strategy, or one per seed.
        scratch: the fitted from-scratch baseline, or one per seed (same count as ``transfer``).
        validation: labeled images neither model trained on.
        confidence: level of the interval.
        n_resamples: bootstrap resamples (one seed only).
        seed: seeds the bootstrap.
        context: what was transferred (``strategy``, ``backbone``, ``layer``, ``layers``): shapes the advice.

    Returns:
        A :class:`Verdict`. With one model each, the interval is a paired bootstrap over images; with several, a
        t-interval over the per-seed gains.
    """
    transfers = transfer if isinstance(transfer, list) else [transfer]
    scratches = scratch if isinstance(scratch, list) else [scratch]
    if len(transfers) != len(scratches) or not transfers:
        raise DataError(f"The verdict pairs transfer and scratch models seed by seed. Got {len(transfers)} and "
                        f"{len(scratches)} instead.")
    pairs = []
    for t_model, s_model in zip(transfers, scratches, strict=True):
        t_index, t_correct = correctness(t_model, validation)
        s_index, s_correct = correctness(s_model, validation)
        common, t_pos, s_pos = np.intersect1d(t_index, s_index, return_indices=True)
        pairs.append((t_correct[t_pos], s_correct[s_pos], len(common)))
    images = pairs[0][2]
    t_acc = float(np.mean([p[0].mean() for p in pairs]))
    s_acc = float(np.mean([p[1].mean() for p in pairs]))
    if len(pairs) == 1:
        gain, lo, hi = paired_bootstrap(pairs[0][0], pairs[0][1], confidence=confidence, n_resamples=n_resamples,
                                        seed=seed)
        method = f"paired percentile bootstrap over validation images ({n_resamples} resamples)"
    else:
        gain, lo, hi = seeds_interval([float(a.mean() - b.mean()) for a, b, _ in pairs], confidence=confidence)
        method = f"Student-t interval over {len(pairs)} seeds (transfer and scratch retrained per seed)"
    verdict = classify(lo, hi)
    return Verdict(verdict=verdict, gain=gain, ci=(lo, hi), transfer_accuracy=t_acc, scratch_accuracy=s_acc,
                   images=images, seeds=len(pairs), method=method, confidence=confidence,
                   advice=advice(verdict, context or {}))


def advice(verdict: str, context: dict[str, Any]) -> list[str]:
    """What to try next, given the verdict and what was transferred."""
    strategy = context.get("strategy", "")
    backbone = context.get("backbone", "")
    data = context.get("data", "DATA")
    layers = [str(name) for name in context.get("layers", [])]
    layer = context.get("layer") or "pre_logits"
    rank = f"transferkit rank {data} --candidates {backbone},...  (score other backbones and layers in seconds)"
    if verdict == "positive":
        return []
    tips: list[str] = []
    if verdict == "negative":
        tips.append(f"Rank other sources before training: {rank}.")
        if strategy == "feature-extraction" and layer in layers and layers.index(layer) > 0:
            shallower = layers[max(0, layers.index(layer) - 2)]
            tips.append(f"Use a shallower, more generic layer: --layer {shallower} (features closer to the input "
                        f"transfer further from the source task).")
        if strategy == "feature-extraction":
            tips.append("Let the backbone adapt: --strategy fine-tune (two-stage: head first, then all layers at a "
                        "low learning rate).")
        elif strategy == "fine-tune":
            tips.append("Fine-tune more of the network or for longer: --schedule two-stage with more --epochs, or a "
                        "larger --lr-backbone.")
        tips.append("Or do not transfer: the from-scratch model is better on this data (--strategy scratch).")
    else:
        tips.append("The difference is within noise: validate on more images (--val-fraction) or retrain both with "
                    "several seeds (--baseline-seeds 3) before deciding.")
        if strategy == "feature-extraction":
            tips.append("Fine-tuning (--strategy fine-tune) often turns a neutral result positive when the target "
                        "differs from the source.")
        tips.append(f"Other sources may transfer better: {rank}.")
    return tips
