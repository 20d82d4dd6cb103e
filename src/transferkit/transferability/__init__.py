"""Transferability scores: rank candidate backbones for a labeled target set without fine-tuning any of them.

| name | needs | paper |
|---|---|---|
| ``logme`` | features | You et al., ICML 2021 |
| ``hscore`` | features | Bao et al., ICIP 2019; shrinkage of Ibrahim et al., ECML-PKDD 2022 |
| ``leep`` | source_probabilities | Nguyen et al., ICML 2020 |
| ``nce`` | source_probabilities (or hard source labels) | Tran et al., ICCV 2019 |
| ``probe`` | features | cross-validated logistic regression (Kornblith et al., CVPR 2019) |

Higher is better for all five. Scores compare backbones on the *same* labeled set; their absolute values mean
little across data sets. ``leep`` and ``nce`` need the source model's classifier, so they only apply to backbones
whose source head is kept; ``logme``, ``hscore`` and ``probe`` need only features. ``probe`` fits ``folds``
classifiers, so it takes seconds where LogME takes milliseconds; on our ranking benchmark it tracked fine-tuned
accuracy somewhat more closely, not always (bench/README.md). When the candidates will be fine-tuned, no frozen-feature
score sees how well they train: :func:`transferkit.selection.race.race` (``transferkit rank --race``) fine-tunes
the best-scored ones briefly, cross-validated, and ranks them by that.

Example:
    >>> import transferkit as tk
    >>> from transferkit.transferability import score
    >>> data = tk.load_embedded()
    >>> out = tk.extract_features(tk.create_backbone("packaged:efficientnet_lite0"), data)
    >>> score("logme", features=out.features, labels=data.labels[out.index])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from numpy.typing import ArrayLike

from .._errors import DataError, did_you_mean
from .hscore import hscore
from .leep import leep
from .logme import logme
from .nce import nce
from .probe import probe


@dataclass(frozen=True)
class MetricInfo:
    """What a transferability score needs and how to read it.

    Attributes:
        function: the score, called as ``function(inputs, labels)``.
        needs: ``"features"`` (``(n, d)`` backbone features) or ``"source_probabilities"`` (``(n, Z)`` softmax
            output of the source model's classifier).
        higher_is_better: True for every score here.
        paper: the short citation; the module docstring has the full one.
    """

    function: Callable[..., float]
    needs: Literal["features", "source_probabilities"]
    higher_is_better: bool
    paper: str


METRICS: dict[str, MetricInfo] = {
    "logme": MetricInfo(logme, "features", True, "You, Liu, Wang, Long, ICML 2021"),
    "hscore": MetricInfo(hscore, "features", True, "Bao et al., ICIP 2019; Ibrahim et al., ECML-PKDD 2022"),
    "leep": MetricInfo(leep, "source_probabilities", True, "Nguyen, Hassner, Seeger, Archambeau, ICML 2020"),
    "nce": MetricInfo(nce, "source_probabilities", True, "Tran, Nguyen, Hassner, ICCV 2019"),
    "probe": MetricInfo(probe, "features", True, "linear probe, as in Kornblith, Shlens, Le, CVPR 2019"),
}


def _metric_name(metric: Any) -> str:
    if not isinstance(metric, str):
        raise DataError(f"metric must be a name, one of {', '.join(METRICS)}. Got {type(metric).__name__} "
                        f"{metric!r} instead.")
    name = metric.strip().lower().replace("-", "").replace("_", "")  # "LogME", "H-score", "h_score"
    if name not in METRICS:
        raise DataError(f"Unknown transferability metric {metric!r}; metrics are: {', '.join(METRICS)}."
                        f"{did_you_mean(name, METRICS)}")
    return name


def score(metric: str, *, features: ArrayLike | None = None, labels: ArrayLike,
          source_probabilities: ArrayLike | None = None) -> float:
    """One transferability score by name, from whichever input it needs.

    Pass both ``features`` and ``source_probabilities`` to score every metric in a loop; each metric reads only
    the input it needs.

    Args:
        metric: a name from :data:`METRICS` (case, ``-`` and ``_`` are ignored: ``"H-score"`` is ``hscore``).
        features: ``(n, d)`` backbone features of the target samples, for ``logme``, ``hscore`` and ``probe``.
        labels: ``(n,)`` target labels of any hashable kind, at least 2 classes.
        source_probabilities: ``(n, Z)`` softmax output of the source model's classifier on the target samples,
            for ``leep`` and ``nce`` (``nce`` also takes ``(n,)`` hard source labels).

    Returns:
        The score; higher is better for every metric.

    Raises:
        DataError: unknown metric, the input the metric needs is missing, or invalid inputs.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 3, 100)
        >>> features = rng.normal(size=(100, 8)) + np.eye(3, 8)[labels]
        >>> {m: round(score(m, features=features, labels=labels), 3) for m in ("logme", "hscore")}
    """
    name = _metric_name(metric)
    info = METRICS[name]
    if info.needs == "features":
        if features is None:
            raise DataError(f"{name} scores backbone features. Got features=None; pass features=<(n, d) array>, "
                            f"e.g. tk.extract_features(backbone, data).features with the labels of out.index.")
        return info.function(features, labels)
    if source_probabilities is None:
        raise DataError(f"{name} needs source_probabilities, the (n, source classes) softmax output of the source "
                        f"model's classifier on the target samples, which only backbones whose source head is kept "
                        f"have. Got source_probabilities=None; pass them, or use metric='logme' (or 'hscore'), "
                        f"which needs only features.")
    return info.function(source_probabilities, labels)


__all__ = ["METRICS", "logme", "leep", "nce", "hscore", "probe", "score"]
