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
from .commercial import (
    commercial_alternatives,
    licence_chain_of,
    require_commercial_backbone,
    require_commercial_use,
)
from .licences import LicenceSource, allows_commercial_use, licence_record, spdx_id
from .weights import AudioPreprocessing, Preprocessing, TextPreprocessing, WeightsInfo

__all__ = [
    "DEFAULT_LAYER", "AudioPreprocessing", "Backbone", "LayerGroup", "LicenceSource", "allows_commercial_use",
    "commercial_alternatives", "licence_chain_of", "licence_record", "require_commercial_backbone",
    "require_commercial_use", "spdx_id", "Preprocessing", "SourceEntry", "TextPreprocessing", "WeightsInfo", "create_backbone",
    "list_backbones", "register_source", "source_descriptions", "split_spec",
]
