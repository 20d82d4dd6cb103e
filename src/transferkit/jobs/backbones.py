"""``transferkit backbones``: what is known, what works offline right now and each licence; or one backbone's layers,
groups and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backbones import create_backbone, list_backbones, source_descriptions


@dataclass
class BackbonesConfig:
    """What ``transferkit backbones`` shows.

    Attributes:
        show: describe this one backbone spec instead of listing them all.
        random_init: with ``show``: describe the architecture only (no weights to download, works offline).
    """

    show: str | None = None
    random_init: bool = False


def describe_backbones(cfg: BackbonesConfig) -> dict[str, Any]:
    """``{"backbone": ...}`` (:meth:`~transferkit.Backbone.describe`) with ``cfg.show``; else ``{"sources",
    "backbones", "offline"}``: the sources, every known backbone, and the specs usable offline right now."""
    if cfg.show:
        return {"backbone": create_backbone(cfg.show, pretrained=not cfg.random_init).describe()}
    rows = [e.to_dict() for e in list_backbones()]
    return {"sources": source_descriptions(), "backbones": rows,
            "offline": [r["spec"] for r in rows if r["offline"] and "<" not in r["spec"]]}
