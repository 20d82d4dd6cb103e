"""The audio side of the ``Backbone`` contract: waveforms in, pooled features out.

An audio backbone's batches (:func:`transferkit.data.backbone_batches`) read clips (mono, at their own rate),
resample them with ``soxr`` to the weights' rate, crop them to ``max_seconds`` and pad the batch, in the
DataLoader's collate function; its trunk maps ``{"input_values": (B, T), "attention_mask": (B, T)}`` to features
pooled over the real (unpadded) frames.
Strategies, the feature cache, the training loop and bundles see the same contract as for images and texts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._base import PooledBackbone


class AudioBackbone(PooledBackbone):
    """A :class:`Backbone` over sound clips.

    Args:
        trunk: maps ``{"input_values", "attention_mask"}`` to pooled features ``(B, num_features)`` and has
            ``pooled_layers(inputs, names) -> {name: (B, D)}`` (one forward pass for several layers).
        prepare: model-specific input preparation of the resampled clips (see :class:`transferkit.data.loader.AudioCollate`).
        export: writes what rebuilding the architecture needs into a directory and returns the source prefix
            that reads it back; None when ``arch_spec`` alone rebuilds it.
        **kwargs: as :class:`Backbone`; ``preprocessing`` is an
            :class:`~transferkit.backbones.weights.AudioPreprocessing`.
    """

    modality = "audio"

    def __init__(self, trunk: nn.Module, *, prepare: Callable[[list[np.ndarray]], dict[str, torch.Tensor]] | None = None,
                 export: Callable[[Path], str] | None = None, min_samples: int = 1, **kwargs: Any):
        super().__init__(trunk, export=export, **kwargs)
        self.prepare = prepare
        self.min_samples = min_samples  # shorter clips (at the model's rate) give the model no frame at all

    def describe_inputs(self, dataset: Any) -> dict[str, Any]:
        return {}


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average ``(B, F, D)`` frame vectors over the real frames of ``mask`` ``(B, F)`` → ``(B, D)``."""
    m = mask.to(frames.dtype).unsqueeze(-1)
    return (frames * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
