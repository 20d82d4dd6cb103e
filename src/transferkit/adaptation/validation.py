"""Choosing an adapted model without target labels: soft neighbourhood density (SND) and prediction entropy.

With no labelled target data, picking a method or a hyper-parameter by target accuracy is cheating, and source
accuracy says little about the target. Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the Right Way:
Unsupervised Validation of Domain Adaptation via Soft Neighborhood Structure" (ICCV 2021): L2-normalise each target
item's predicted class probabilities, take their pairwise similarities (self excluded), turn each row into a soft
neighbour distribution with a softmax at temperature 0.05, and average the rows' entropies. A model whose target
predictions form dense clusters (each item has many close neighbours) scores high; higher is better. In their study it
picked hyper-parameters close to those target accuracy picks, where entropy and source-risk criteria did not.

SND rewards a collapse, though: when most target items get the same class their probability vectors are all alike,
every neighbourhood is flat and its entropy maximal (measured on the printed → handwritten digit shift: AdaBN at 26 %
target accuracy had the highest SND). The information-maximisation score (Hu, Miyato, Tokui, Matsumoto & Sugiyama,
"Learning Discrete Representations via Information Maximizing Self-Augmented Training", ICML 2017; the objective of
SHOT, Liang, Hu & Feng, ICML 2020) guards against exactly that: the entropy of the mean prediction (high when the
classes are used evenly) minus the mean entropy of the predictions (low when each is confident). ``adapt`` selects by
it and reports SND beside it.

Mean prediction entropy (lower is better; Morerio, Cavazza & Murino, "Minimal-Entropy Correlation Alignment",
ICLR 2018) is kept as the simple alternative; it rewards over-confident collapse too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: SND's softmax temperature over similarities (the paper's)
TEMPERATURE = 0.05
#: at most this many target items enter SND (it is quadratic in them)
MAX_ITEMS = 2000


def snd(proba: Any, *, temperature: float = TEMPERATURE, seed: int = 0, max_items: int = MAX_ITEMS) -> float:
    """Soft neighbourhood density of target class probabilities ``(n, classes)``; higher is better."""
    p = np.asarray(proba, dtype=np.float64)
    if len(p) > max_items:
        p = p[np.random.default_rng(seed).permutation(len(p))[:max_items]]
    if len(p) < 2:
        return 0.0
    p = p / np.clip(np.linalg.norm(p, axis=1, keepdims=True), 1e-12, None)
    logits = p @ p.T / temperature
    np.fill_diagonal(logits, -np.inf)
    logits -= logits.max(1, keepdims=True)
    q = np.exp(logits)
    q /= q.sum(1, keepdims=True)
    entropy = -(q * np.log(np.clip(q, 1e-300, None))).sum(1)
    return float(entropy.mean())


def mean_entropy(proba: Any) -> float:
    """Mean entropy of the predicted class distributions ``(n, classes)``; lower is more confident."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return float(-(p * np.log(p)).sum(1).mean())


def information_maximization(proba: Any) -> float:
    """``H(mean prediction) - mean H(prediction)`` of ``(n, classes)`` probabilities; higher is better (at most
    ``log(classes)``: confident predictions that use every class equally)."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    marginal = p.mean(0)
    return float(-(marginal * np.log(marginal)).sum() - mean_entropy(p))
