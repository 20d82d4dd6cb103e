"""Backbones: one contract over timm, torchvision, packaged offline weights and your own bundles."""

from ._base import DEFAULT_LAYER, Backbone, LayerGroup
from ._registry import (
    SourceEntry,
    create_backbone,
    list_backbones,
    register_source,
    source_descriptions,
    split_spec,
)
from .weights import AudioPreprocessing, Preprocessing, TextPreprocessing, WeightsInfo

__all__ = [
    "DEFAULT_LAYER", "AudioPreprocessing", "Backbone", "LayerGroup", "Preprocessing", "SourceEntry", "TextPreprocessing", "WeightsInfo", "create_backbone",
    "list_backbones", "register_source", "source_descriptions", "split_spec",
]
