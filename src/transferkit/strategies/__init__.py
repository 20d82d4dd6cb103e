"""Transfer strategies as scikit-learn estimators over images."""

from ._base import TransferClassifier, as_dataset
from .feature_extraction import FeatureExtractionClassifier
from .fine_tune import FineTuneClassifier
from .scratch import ScratchClassifier

STRATEGIES = {
    "feature-extraction": FeatureExtractionClassifier,
    "fine-tune": FineTuneClassifier,
    "scratch": ScratchClassifier,
}

__all__ = [
    "STRATEGIES", "FeatureExtractionClassifier", "FineTuneClassifier", "ScratchClassifier", "TransferClassifier",
    "as_dataset",
]
