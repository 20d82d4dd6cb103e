"""Which from-scratch baseline a transfer is judged against: the strongest cheap model a user would write without it.

Images get a small CNN at their native resolution (:class:`SmallCNNClassifier`), texts TF-IDF + logistic regression
(:class:`TfidfClassifier`); ``arch`` is the transfer model's own architecture from random init
(:class:`ScratchClassifier`), the only choice for audio. ``fit``'s verdict and ``curve`` resolve the choice here.
"""

from __future__ import annotations

from .._errors import TransferkitError, did_you_mean

BASELINES = ("auto", "small-cnn", "tfidf", "arch")
#: what ``auto`` trains per modality
DEFAULT_BASELINE = {"image": "small-cnn", "text": "tfidf", "audio": "arch"}


def baseline_kind(choice: str, modality: str) -> str:
    """The baseline ``choice`` (``auto``, ``small-cnn``, ``tfidf``, ``arch``) resolves to for ``modality``."""
    if choice not in BASELINES:
        raise TransferkitError(f"`baseline_model` must be one of {', '.join(BASELINES)}. Got {choice!r} instead."
                               f"{did_you_mean(choice, BASELINES)}")
    kind = DEFAULT_BASELINE.get(modality, "arch") if choice == "auto" else choice
    reads = {"small-cnn": "image", "tfidf": "text"}.get(kind)
    if reads is not None and reads != modality:
        raise TransferkitError(f"The {kind} baseline reads {reads}s but DATA holds {modality}s; use "
                               f"`baseline_model='auto'` or `baseline_model='arch'`.")
    return kind


def baseline_label(kind: str, arch: str = "") -> str:
    """Words for a plot legend or a table header."""
    return {"small-cnn": "small CNN from scratch (native size)", "tfidf": "TF-IDF + logistic regression",
            }.get(kind, f"scratch (same architecture{f': {arch}' if arch else ''})")
