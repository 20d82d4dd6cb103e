"""Feature extraction from frozen backbones and the on-disk feature cache."""

from .cache import FeatureCache, FeatureStore, default_cache_dir
from .extract import ExtractedFeatures, extract_features

__all__ = ["ExtractedFeatures", "FeatureCache", "FeatureStore", "default_cache_dir", "extract_features"]
