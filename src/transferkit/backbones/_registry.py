"""Backbone sources by prefix: ``timm:``, ``torchvision:``, ``packaged:``, ``bundle:``.

Each source module registers a factory ``(name, pretrained, **kwargs) -> Backbone`` and a lister of what it
knows. Text and audio sources (``hf:``) plug into the same seam.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .._errors import BackboneError, did_you_mean
from ._base import Backbone
from .licences import UNKNOWN, LicenceSource, commercial_status, spdx_id


@dataclass(frozen=True)
class SourceEntry:
    """One known backbone name, as listed by ``transferkit backbones``.

    ``licence`` is an SPDX id (:mod:`.licences`) for a concrete spec; a pattern (``timm:<any ...>``) says where each
    model's licence comes from. ``modality`` (``image``, ``text``, ``audio``; "" when it varies) lets a refusal
    suggest alternatives that read the same inputs."""

    spec: str
    licence: str
    offline: bool
    pretrained: bool
    note: str = ""
    modality: str = ""

    @property
    def commercial(self) -> str:
        """``yes``, ``no``, ``unknown`` (:func:`~.licences.commercial_status`), or ``per model`` for a pattern."""
        licence = spdx_id(self.licence)
        return "per model" if "<" in self.spec and licence == UNKNOWN else commercial_status(licence)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "licence": self.licence, "commercial": self.commercial, "offline": self.offline,
                "pretrained": self.pretrained, "note": self.note, "modality": self.modality}


@dataclass(frozen=True)
class _Source:
    prefix: str
    create: Callable[..., Backbone]
    list_entries: Callable[[], list[SourceEntry]]
    knows: Callable[[str], bool]
    description: str
    reads: Callable[[str], str | None]
    licence: Callable[[str], tuple[tuple[LicenceSource, ...], str] | None]


_SOURCES: dict[str, _Source] = {}

#: options of text backbones (``pooling``, ``max_length``): refused by backbones that read images or sound,
#: and remembered on the backbone (``Backbone.options``) so its architecture is rebuilt with them.
TEXT_OPTIONS = ("pooling", "max_length")


def register_source(
    prefix: str,
    create: Callable[..., Backbone],
    list_entries: Callable[[], list[SourceEntry]],
    knows: Callable[[str], bool],
    description: str,
    reads: Callable[[str], str | None] | None = None,
    licence: Callable[[str], tuple[tuple[LicenceSource, ...], str] | None] | None = None,
) -> None:
    """Make ``<prefix>:<name>`` specs resolvable. Later modalities register here too.

    ``reads(name)`` says what a backbone of this source reads (``image``, ``text``, ``audio``) before creating it,
    or None when only the created backbone knows; options of another modality are then refused without a download.
    ``licence(name)`` gives the licence chain of ``name``'s pretrained weights and what it reads without loading
    (or downloading) them, or None when only the created backbone knows: the licence guard refuses before a
    download (:mod:`.commercial`).
    """
    _SOURCES[prefix] = _Source(prefix, create, list_entries, knows, description, reads or (lambda _name: None),
                               licence or (lambda _name: None))


def split_spec(spec: str) -> tuple[str, str]:
    """``'timm:resnet18'`` → ``('timm', 'resnet18')``; refuses specs without a known prefix, naming the fix."""
    module = spec.partition(":")[0].replace("-", "_") if isinstance(spec, str) else ""
    if module in _SOURCE_MODULES and spec.partition(":")[2]:
        _ensure_sources(module)  # only that source: `timm` alone costs seconds to import
    else:
        _ensure_sources()
    if not isinstance(spec, str) or not spec.strip():
        raise BackboneError(f"A backbone spec must be a non-empty string like 'timm:resnet18'. Got {spec!r} instead.")
    prefix, sep, name = spec.partition(":")
    if not sep or not name:
        owners = [f"{p}:{spec}" for p, s in _SOURCES.items() if s.knows(spec)]
        hint = f" Did you mean: {', '.join(owners)}?" if owners else ""
        raise BackboneError(
            f"Backbone spec {spec!r} has no source prefix; write <source>:<name> with source one of "
            f"{', '.join(_SOURCES)} (see `transferkit backbones`).{hint}"
        )
    if prefix not in _SOURCES:
        raise BackboneError(
            f"Unknown backbone source {prefix!r} in {spec!r}; sources are: {', '.join(_SOURCES)}."
            f"{did_you_mean(prefix, _SOURCES)}"
        )
    return prefix, name


def create_backbone(spec: str, *, pretrained: bool = True, init_seed: int = 0, **kwargs: Any) -> Backbone:
    """Create a backbone from a prefixed spec.

    Args:
        spec: ``timm:<model>``, ``torchvision:<model>``, ``packaged:<name>`` or ``bundle:<dir>``.
        pretrained: False gives the same architecture randomly initialised (offline, the scratch baseline).
        init_seed: seed of that random initialisation.
        **kwargs: source-specific options, e.g. ``weights_file=`` for timm; for text backbones ``pooling=``
            (``mean``/``cls``/``max`` for transformers, ``mean``/``sif`` for word vectors) and ``max_length=``
            (transformers). None means the source's default.

    Returns:
        A :class:`Backbone` in eval mode.

    Raises:
        BackboneError: unknown source or name (with the closest names); a text option given to a backbone that
            does not read text, or a pooling/max_length that backbone does not have; OfflineError when a hub is
            unreachable.

    Example:
        >>> bb = create_backbone("packaged:efficientnet_lite0")
        >>> bb.num_features
        1280
    """
    prefix, name = split_spec(spec)
    text_options = {k: kwargs[k] for k in TEXT_OPTIONS if kwargs.get(k) is not None}
    if text_options and _SOURCES[prefix].reads(name) not in (None, "text"):
        _refuse_text_options(text_options, spec, str(_SOURCES[prefix].reads(name)))
    if pretrained:
        backbone = _SOURCES[prefix].create(name, pretrained=True, **kwargs)
    else:
        # A random initialisation is seeded, so "random init" is the same network every time (and cacheable).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            backbone = _SOURCES[prefix].create(name, pretrained=False, **kwargs)
    if text_options and backbone.modality != "text":
        _refuse_text_options(text_options, spec, backbone.modality)
    backbone.options = text_options
    return backbone.eval()


def _refuse_text_options(options: dict[str, Any], spec: str, modality: str) -> None:
    names = " and ".join(f"`{k}`" for k in options)
    raise BackboneError(
        f"{names} applies to text backbones (hf:<model>, packaged:all-minilm-l6-v2, vectors:<file>, "
        f"packaged:glove-6b-50d); {spec} reads {modality}. Drop {names}."
    )


def known_licence(spec: str) -> tuple[tuple[LicenceSource, ...], str] | None:
    """``(licence chain, modality)`` of the pretrained weights ``spec`` names, when its source knows them without
    loading the weights (``register_source(licence=)``); None otherwise."""
    prefix, name = split_spec(spec)
    return _SOURCES[prefix].licence(name)


def list_backbones() -> list[SourceEntry]:
    """Everything the registered sources know, with licence and whether it works offline right now."""
    _ensure_sources()
    rows: list[SourceEntry] = []
    for source in _SOURCES.values():
        rows.extend(source.list_entries())
    return rows


def source_descriptions() -> dict[str, str]:
    _ensure_sources()
    return {p: s.description for p, s in _SOURCES.items()}


def _ensure_sources(*prefixes: str) -> None:
    # Importing the source modules registers them; done lazily so `import transferkit` stays light. Checked by
    # module, not by an empty registry: importing one source module directly registers only that one. With
    # ``prefixes``, only those sources (each module is named as its prefix, ``-`` read as ``_``).
    import importlib
    import sys

    for name in prefixes or _SOURCE_MODULES:
        if f"{__package__}.{name}" not in sys.modules:
            importlib.import_module(f".{name}", __package__)


_SOURCE_MODULES = ("bundle", "hf", "packaged", "random", "small_cnn", "timm", "torchvision", "vectors")
