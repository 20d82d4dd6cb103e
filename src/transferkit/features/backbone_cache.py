"""A copy of a backbone's trunk beside the feature cache, so a fit whose features are all cached never builds it.

A feature-extraction re-fit on cached features needs the backbone for three things only: the feature-cache key
(the trunk's checksum), the bundle's description (spec, layers, preprocessing, licence) and the trunk's tensors
that the bundle keeps. Building the model for them costs seconds (importing timm and torchvision, mapping the
weights); this keeps all three in ``<cache>/backbones/<digest>/``:

- ``trunk.safetensors``: the trunk's state dict exactly as the built backbone had it;
- ``backbone.json``: the key, the trunk's checksum and what :class:`~transferkit.backbones.Backbone` is made of,
  written last (a folder without it is incomplete and never read).

The digest is over the spec and the sha256 of the file the weights come from, plus the timm and torch versions
that map that file onto the architecture: other weights, or another mapping, are another entry.
:class:`CachedBackbone` then stands in for the backbone and builds the real one the first time anything needs
the network itself (a forward pass, ``.to()``, its modules); a bundle written from it holds the same tensors.
Only weights known without building the model take part: ``packaged:`` image backbones, and random
initialisations of timm architectures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._errors import BackboneError
from .._utils import atomic_path, sha256_file, write_json_atomic
from ..backbones._base import Backbone
from ..backbones._registry import create_backbone
from ..backbones.weights import Preprocessing, WeightsInfo
from .cache import FeatureCache

# Raised whenever what an entry holds changes meaning, so no older entry is read.
BACKBONE_CACHE_FORMAT = 1
META = "backbone.json"
TRUNK = "trunk.safetensors"


def weights_source(spec: str, pretrained: bool) -> dict[str, Any] | None:
    """What identifies ``spec``'s weights without building the model, or None when only the built model knows
    (then the backbone is always built): the sha256 of a ``packaged:`` image backbone's weights file; for a random
    initialisation of a timm architecture (``timm:``, ``packaged:``), its seed. The timm and torch versions that
    map the file onto the architecture (or draw the random weights) are part of it."""
    from importlib.metadata import version

    # the prefix is read here, not with split_spec: that imports the source's module, and `timm` costs seconds
    prefix, _, name = spec.partition(":")
    versions = {"timm": version("timm"), "torch": torch.__version__}
    if prefix == "timm" and name and not pretrained:
        return {"init": "random", "seed": 0, **versions}  # create_backbone's default init_seed
    if prefix != "packaged":
        return None
    from ..backbones.packaged import PACKAGED

    entry = PACKAGED.get(name)
    if entry is None or entry.modality != "image" or not entry.timm_arch:
        return None
    if not pretrained:
        return {"init": "random", "seed": 0, **versions}
    path = entry.weights_path()
    return {"file": path.name, "sha256": sha256_file(path), **versions} if path is not None else None


def _entry(cache: FeatureCache, spec: str, pretrained: bool) -> tuple[Path, dict[str, Any]] | None:
    source = weights_source(spec, pretrained)
    if source is None:
        return None
    key = {"format": BACKBONE_CACHE_FORMAT, "spec": spec, "weights": source}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache.root / "backbones" / digest, key


def remember_backbone(cache: FeatureCache, spec: str, pretrained: bool, backbone: Backbone) -> None:
    """Keep ``backbone``'s trunk and description for :func:`cached_backbone` (once per weights; a no-op for
    backbones that take no part: other sources, subclasses, text options, a ``bundle:`` history)."""
    if type(backbone) is not Backbone or backbone.options or backbone.source_items is not None:
        return
    found = _entry(cache, spec, pretrained)
    if found is None or (found[0] / META).is_file():
        return
    directory, key = found
    init = {"spec": backbone.spec, "arch_spec": backbone.arch_spec,
            "preprocessing": backbone.preprocessing.to_dict(), "weights": backbone.weights.to_dict(),
            "num_features": backbone.num_features, "feature_layers": dict(backbone._feature_layers),
            "groups": [[name, list(members)] for name, members in backbone._group_names]}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / TRUNK) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in backbone.trunk_state_dict().items()}, str(tmp))
        write_json_atomic(directory / META, {"key": key, "checksum": backbone.trunk_checksum(), "backbone": init})
    except OSError:  # a read-only or full cache: the next fit builds the backbone again, as it always did
        return


def cached_backbone(cache: FeatureCache, spec: str, pretrained: bool) -> CachedBackbone | None:
    """A :class:`CachedBackbone` for ``spec`` when :func:`remember_backbone` kept one for these weights, else None."""
    found = _entry(cache, spec, pretrained)
    if found is None:
        return None
    directory, key = found
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or not (directory / TRUNK).is_file():
        return None
    init = meta["backbone"]
    return CachedBackbone(
        directory / TRUNK, meta["checksum"], lambda: create_backbone(spec, pretrained=pretrained),
        spec=init["spec"], arch_spec=init["arch_spec"], preprocessing=Preprocessing.from_dict(init["preprocessing"]),
        weights=WeightsInfo.from_dict(init["weights"]), num_features=int(init["num_features"]),
        feature_layers={k: int(v) for k, v in init["feature_layers"].items()},
        groups=[(name, list(members)) for name, members in init["groups"]])


class CachedBackbone(Backbone):
    """A :class:`Backbone` whose network is built on first use.

    Until then it answers from its cache entry: its description, layers and preprocessing, the trunk's checksum
    and state dict. Whatever needs the network (``forward``, ``.to()``, ``.eval()``, its modules or parameters)
    builds the real backbone first and takes its trunk, checking that it is the cached one.
    """

    def __init__(self, trunk_file: Path, checksum: str, build: Callable[[], Backbone], **init: Any):
        super().__init__(torch.nn.Identity(), **init)
        del self._modules["trunk"]  # absent until built: reading it goes through __getattr__ below
        del self.__dict__["source_head"]
        self._trunk_file, self._checksum, self._build, self._built = trunk_file, checksum, build, False

    def __getattr__(self, name: str) -> Any:
        if name in ("trunk", "source_head") and not self.__dict__.get("_built", True):
            self.build()
        return super().__getattr__(name)

    def build(self) -> CachedBackbone:
        """Build the network now (a no-op once built)."""
        if self._built:
            return self
        real = self._build()
        if real.trunk_checksum() != self._checksum:
            raise BackboneError(f"The cached copy of {self.spec}'s weights differs from the weights it was made "
                                f"from; delete {str(self._trunk_file.parent)!r} and run again.")
        self._built = True
        self.trunk = real.trunk.train(self.training)
        self.source_head = real.source_head
        return self

    def trunk_checksum(self) -> str:
        return self._checksum if not self._built else super().trunk_checksum()

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        if self._built:
            return super().trunk_state_dict()
        try:
            return load_file(str(self._trunk_file))
        except (SafetensorError, OSError):  # a damaged entry: the network itself has the tensors
            return self.build().trunk_state_dict()

    # Everything that walks the network's modules, parameters or buffers builds it first.
    def _apply(self, *args: Any, **kwargs: Any) -> Any:
        self.build()
        return super()._apply(*args, **kwargs)

    def named_children(self, *args: Any, **kwargs: Any) -> Any:
        self.build()
        return super().named_children(*args, **kwargs)

    def named_modules(self, *args: Any, **kwargs: Any) -> Any:
        self.build()
        return super().named_modules(*args, **kwargs)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        self.build()
        return super().named_parameters(*args, **kwargs)

    def named_buffers(self, *args: Any, **kwargs: Any) -> Any:
        self.build()
        return super().named_buffers(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.build()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.build()
        return super().load_state_dict(*args, **kwargs)
