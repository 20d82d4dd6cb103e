"""The text side of the ``Backbone`` contract: tokenised batches in, pooled features out.

A text backbone's batches (:func:`transferkit.data.backbone_batches`) are tokenised by its ``encoder`` in the
DataLoader's collate function and hold a dict of tensors as ``inputs``; its trunk maps that dict to pooled
features. Strategies, the feature cache, the training loop and bundles see the same contract as for images
(``forward(x, layer)``, layer groups, ``preprocessing``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from .._errors import BackboneError
from ._base import PooledBackbone

POOLINGS = ("mean", "cls", "max")


class TextEncoder(Protocol):
    """Texts → the dict of tensors a text trunk takes (picklable, so DataLoader workers can run it)."""

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]: ...

    def report(self, texts: list[str]) -> dict[str, Any]: ...


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token vectors ``(B, T, D)`` into ``(B, D)`` over the real tokens of ``mask`` ``(B, T)``.

    ``mean`` averages real tokens (padding excluded), ``cls`` takes the first token, ``max`` the element-wise
    maximum over real tokens.
    """
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    if pooling == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


def check_text_options(pooling: str | None, max_length: Any, poolings: tuple[str, ...], spec: str) -> None:
    """Refuse a pooling this kind of text backbone does not have, or a max_length that is not a positive integer,
    naming the fix (``sif`` belongs to word vectors; ``cls``/``max`` to transformers)."""
    if pooling is not None and pooling not in poolings:
        if pooling == "sif":
            hint = " sif weighs word vectors (vectors:<file>, packaged:glove-6b-50d);"
        elif pooling in POOLINGS:
            hint = f" {pooling} pooling needs token vectors of a transformer (hf:<model>, packaged:all-minilm-l6-v2);"
        else:
            hint = ""
        raise BackboneError(f"`pooling` of {spec} must be one of {', '.join(poolings)}. Got {pooling!r} instead;"
                            f"{hint} use `pooling={poolings[0]!r}` or drop `pooling`.")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise BackboneError(f"`max_length` must be a positive integer (tokens per text). Got {max_length!r} instead.")


class TextBackbone(PooledBackbone):
    """A :class:`Backbone` over texts.

    Args:
        trunk: maps the encoder's dict to pooled features ``(B, num_features)``; a trunk with feature layers also
            has ``pooled_layers(inputs, names) -> {name: (B, D)}``.
        encoder: texts → dict of tensors (tokeniser, truncation, padding).
        export: writes the tokenizer/vocabulary and options into a directory and returns the source prefix that
            rebuilds the architecture from it (used by bundles).
        **kwargs: as :class:`Backbone`.
    """

    modality = "text"

    def __init__(self, trunk: nn.Module, *, encoder: TextEncoder, export: Callable[[Path], str], **kwargs: Any):
        super().__init__(trunk, export=export, **kwargs)
        self.encoder = encoder

    def describe_inputs(self, dataset: Any) -> dict[str, Any]:
        return self.encoder.report([dataset.load(i) for i in range(len(dataset))])
