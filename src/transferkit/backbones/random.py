"""``random:<spec>``: the architecture of ``<spec>`` with seeded random weights instead of its pretrained ones.

The same as ``create_backbone(spec, pretrained=False)``, but as a spec of its own, so a random initialisation can
stand beside pretrained candidates in ``transferkit rank`` or be named anywhere a backbone spec is accepted.
"""

from __future__ import annotations

from typing import Any

from ._base import Backbone
from ._registry import SourceEntry, register_source
from .licences import RANDOM_INIT


def create(name: str, *, pretrained: bool = True, **kwargs: Any) -> Backbone:
    from ._registry import create_backbone

    backbone = create_backbone(name, pretrained=False, **kwargs)
    backbone.spec = f"random:{backbone.spec}"
    return backbone


def list_entries() -> list[SourceEntry]:
    return [SourceEntry("random:<spec>", RANDOM_INIT, True, False,
                        "any architecture above, seeded random weights (a reference candidate for ranking)")]


register_source("random", create, list_entries, lambda n: False,
                "the architecture of another spec, randomly initialised")
