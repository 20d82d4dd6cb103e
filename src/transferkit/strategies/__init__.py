"""Transfer strategies as scikit-learn estimators over images and texts."""

from ._base import TransferClassifier, as_dataset
from .feature_extraction import FeatureExtractionClassifier
from .fine_tune import FineTuneClassifier
from .scratch import ScratchClassifier
from .zero_shot import ZeroShotClassifier

STRATEGIES = {
    "feature-extraction": FeatureExtractionClassifier,
    "fine-tune": FineTuneClassifier,
    "scratch": ScratchClassifier,
    "zero-shot": ZeroShotClassifier,
}

__all__ = [
    "STRATEGIES", "FeatureExtractionClassifier", "FineTuneClassifier", "ScratchClassifier", "TransferClassifier",
    "ZeroShotClassifier", "as_dataset",
]
