"""``transferkit pretrain``: train your own source model from scratch, then transfer it as ``bundle:<out>``."""

from __future__ import annotations

import dataclasses
from typing import Any

from ._fit_config import FitConfig
from .fit import fit_bundle


def pretrain_bundle(cfg: FitConfig) -> dict[str, Any]:
    """Train your own source model from scratch (``transferkit pretrain``); reuse it as ``bundle:<out>``."""
    result = fit_bundle(dataclasses.replace(cfg, strategy="scratch"))
    result["reuse_as"] = f"bundle:{cfg.out}"
    return result
