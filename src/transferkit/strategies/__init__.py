"""Transfer strategies as scikit-learn estimators over images and texts, and the baselines they are judged against.

``SmallCNNClassifier`` and ``TfidfClassifier`` are baselines for the transfer verdict, not ``STRATEGIES`` of the CLI.
"""

from ._base import TransferClassifier, as_dataset
from .feature_extraction import FeatureExtractionClassifier
from .fine_tune import FineTuneClassifier
from .scratch import ScratchClassifier
from .small_cnn import SmallCNNClassifier
from .tfidf import TfidfClassifier
from .zero_shot import ZeroShotClassifier

STRATEGIES: dict[str, type[TransferClassifier]] = {
    "feature-extraction": FeatureExtractionClassifier,
    "fine-tune": FineTuneClassifier,
    "scratch": ScratchClassifier,
    "zero-shot": ZeroShotClassifier,
}

__all__ = [
    "STRATEGIES", "FeatureExtractionClassifier", "FineTuneClassifier", "ScratchClassifier", "SmallCNNClassifier",
    "TfidfClassifier", "TransferClassifier", "ZeroShotClassifier", "as_dataset",
]
