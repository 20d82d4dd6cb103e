"""``bundle:<dir>`` backbones: the (possibly fine-tuned) backbone of a transferkit bundle, without its head.

This is how a model you trained yourself — e.g. with ``transferkit pretrain`` or a fine-tuned ``fit`` —
becomes the source of the next transfer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._base import Backbone
from ._registry import TEXT_OPTIONS, SourceEntry, register_source


def create(name: str, *, pretrained: bool = True, **options: Any) -> Backbone:
    """``options``: ``pooling``/``max_length`` of a text bundle (default: as it was trained)."""
    from ..bundle import read_meta, read_weights
    from ..bundle_io import backbone_from_bundle

    directory = Path(name)
    meta = read_meta(directory)
    options = {k: v for k, v in options.items() if k in TEXT_OPTIONS and v is not None}
    if not pretrained:
        from ..bundle_io import architecture_spec
        from ._registry import create_backbone

        return create_backbone(architecture_spec(directory, meta), pretrained=False, **options)
    return backbone_from_bundle(directory, meta, read_weights(directory, meta), **options)


def list_entries() -> list[SourceEntry]:
    return [SourceEntry("bundle:<dir>", "inherits the licence of its source weights", True, True,
                        "the backbone of a bundle written by transferkit fit/pretrain")]


register_source("bundle", create, list_entries, lambda n: (Path(n) / "transferkit.json").is_file(),
                "the backbone of a transferkit bundle directory")
