"""``bundle:<dir>`` backbones: the (possibly fine-tuned) backbone of a transferkit bundle, without its head.

This is how a model you trained yourself — e.g. with ``transferkit pretrain`` or a fine-tuned ``fit`` —
becomes the source of the next transfer. The bundle is read through :mod:`transferkit.bundle_format` only: its
JSON names the architecture (or keeps a text backbone's tokenizer), rebuilt offline here, and its weights fill it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .._errors import BundleError
from ..bundle_format import META_FILE, read_meta, read_training_items, read_weights, unprefixed
from ._base import Backbone
from ._registry import TEXT_OPTIONS, SourceEntry, create_backbone, register_source
from .licences import LicenceSource, chain_from_meta, combined_licence, inherit
from .weights import Preprocessing, WeightsInfo, state_dict_checksum


def architecture_spec(directory: Path, meta: dict[str, Any]) -> str:
    """A spec that rebuilds the bundle's architecture: the tokenizer/vocabulary kept in the bundle for text
    backbones, else the recorded ``arch_spec``."""
    info = meta.get("backbone", {})
    assets = info.get("assets")
    if assets:
        folder = directory / assets.get("dir", "")
        if not folder.is_dir():
            raise BundleError(f"Bundle {str(directory)!r} is missing {assets.get('dir')}/ (its tokenizer); re-create it.")
        return f"{assets['source']}:{folder}"
    arch = info.get("arch_spec")
    if not arch:
        raise BundleError(f"Bundle {str(directory)!r} does not name its architecture; re-create it.")
    if str(arch).startswith("bundle:"):  # an architecture is a model family, never a bundle (it could be itself)
        raise BundleError(f"Bundle {str(directory)!r} names a bundle ({arch}) as its architecture; re-create it.")
    return str(arch)


def backbone_from_bundle(directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                         **options: Any) -> Backbone:
    """Rebuild the architecture offline (random init), then load the bundle's backbone weights into it.

    ``options`` (text: ``pooling``, ``max_length``) change how a text bundle's backbone runs; without them it
    runs as it was trained (a prompt-tuned one with its virtual tokens: they are part of the architecture its
    assets describe, and their values are weights like any other)."""
    info = meta.get("backbone", {})
    arch = architecture_spec(directory, meta)
    backbone = create_backbone(arch, pretrained=False, **options)
    state = unprefixed("backbone", tensors)
    derived = {n for n, _ in backbone.trunk.named_buffers()} - set(backbone.trunk.state_dict())
    state = {k: v for k, v in state.items() if k not in derived}  # non-persistent buffers older bundles kept
    missing, unexpected = backbone.trunk.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BundleError(
            f"Bundle {str(directory)!r} weights do not fit {arch} ({len(missing)} missing, {len(unexpected)} "
            "unexpected tensors); it was made by an incompatible version, re-create it."
        )
    backbone.spec = f"bundle:{directory}"
    if not options:  # with options, the rebuilt text backbone's own preprocessing says how it now runs
        backbone.preprocessing = Preprocessing.from_dict(meta.get("preprocessing") or info["preprocessing"])
    origin = WeightsInfo.from_dict(info.get("weights", {})) if info.get("weights") else None
    chain = inherit(chain_from_meta(meta), f"bundle:{directory}")  # its ancestors' licences stay with it
    backbone.weights = WeightsInfo(
        source="bundle",
        pretrained=True,
        licence=combined_licence(chain),
        licence_chain=chain,
        origin=str(directory),
        checksum=state_dict_checksum(backbone.trunk),
        source_task=f"{meta.get('strategy', '?')} on {meta.get('data', {}).get('name', '?')}"
        + (f", from {origin.origin}" if origin else ""),
        num_source_classes=len(meta.get("classes", [])),
    )
    backbone.source_items = read_training_items(directory, meta, "backbone")
    return backbone.eval()


def create(name: str, *, pretrained: bool = True, **options: Any) -> Backbone:
    """``options``: ``pooling``/``max_length`` of a text bundle (default: as it was trained)."""
    directory = Path(name)
    meta = read_meta(directory)
    options = {k: v for k, v in options.items() if k in TEXT_OPTIONS and v is not None}
    if not pretrained:
        return create_backbone(architecture_spec(directory, meta), pretrained=False, **options)
    return backbone_from_bundle(directory, meta, read_weights(directory, meta), **options)


def list_entries() -> list[SourceEntry]:
    return [SourceEntry("bundle:<dir>", "inherits its ancestors' (see --show)", True, True,
                        "the backbone of a bundle written by transferkit fit/pretrain")]


def known_licence(name: str) -> tuple[tuple[LicenceSource, ...], str]:
    """The chain a ``bundle:<name>`` backbone has, and what it reads, from the bundle's JSON alone."""
    meta = read_meta(Path(name))
    return inherit(chain_from_meta(meta), f"bundle:{Path(name)}"), str(meta["backbone"].get("modality", ""))


register_source("bundle", create, list_entries, lambda n: (Path(n) / META_FILE).is_file(),
                "the backbone of a transferkit bundle directory", licence=known_licence)
