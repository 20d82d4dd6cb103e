"""The one ``Backbone`` contract every source is wrapped into.

A backbone maps a batch of preprocessed images ``(B, C, H, W)`` to pooled features ``(B, D)`` at a named
layer, knows its layer groups (input → output, for freezing and per-group learning rates), and carries the
preprocessing and provenance of its weights (:mod:`.weights`), so a user never types ImageNet mean/std by hand.
Reading a dataset into batches it accepts is the data layer's job (:func:`transferkit.data.backbone_batches`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import BackboneError, did_you_mean
from .licences import LicenceSource
from .weights import WeightsInfo, state_dict_checksum

DEFAULT_LAYER = "pre_logits"


@dataclass
class LayerGroup:
    """A named set of modules (and loose parameters such as a ViT's ``cls_token``) trained together."""

    name: str
    modules: list[nn.Module] = field(default_factory=list)
    loose_parameters: list[nn.Parameter] = field(default_factory=list)

    def parameters(self) -> Iterator[nn.Parameter]:
        for m in self.modules:
            yield from m.parameters()
        yield from self.loose_parameters


class _StopForward(Exception):
    """Raised by a feature hook once the requested layer ran: the rest of the network is skipped."""

    def __init__(self, output: torch.Tensor):
        self.output = output


def read_json(path: Path) -> Any:
    """A model folder's JSON file, or a one-line :class:`BackboneError` naming the file when it is damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BackboneError(f"{str(path)!r} is not valid JSON ({e}); the model folder is damaged: download or "
                            f"re-create it.") from None


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average a feature map ``(B, C, H, W)`` or token sequence ``(B, N, C)`` into ``(B, C)``."""
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    if x.ndim == 2:
        return x
    raise BackboneError(f"Cannot pool a feature of shape {tuple(x.shape)}; choose another `layer`.")



class Backbone(nn.Module):
    """A pretrained (or random) network without its source head, seen through one contract.

    Args:
        trunk: module mapping ``(B, C, H, W)`` to pooled pre-logits features ``(B, num_features)``.
        spec: the spec it was created from, e.g. ``packaged:efficientnet_lite0``.
        arch_spec: a spec that rebuilds the same architecture (weights then come from a state dict).
        preprocessing: what inputs must look like.
        weights: provenance and licence.
        num_features: dimension of the default (``pre_logits``) features.
        feature_layers: intermediate layer name → number of channels; each is globally pooled.
        groups: ordered input → output; every trainable parameter of ``trunk`` is in exactly one group.
        source_head: the discarded classifier of the source task (kept for LEEP-style scores), or None.

    Example:
        >>> bb = create_backbone("timm:test_efficientnet", pretrained=False)
        >>> bb(torch.zeros(2, 3, 160, 160)).shape
        torch.Size([2, ...])
    """

    #: what the backbone reads; the data pipeline dispatches on it (:func:`transferkit.data.backbone_batches`).
    modality = "image"

    def __init__(
        self,
        trunk: nn.Module,
        *,
        spec: str,
        arch_spec: str,
        preprocessing: Any,
        weights: WeightsInfo,
        num_features: int,
        feature_layers: dict[str, int],
        groups: list[tuple[str, list[str]]],
        source_head: nn.Module | None = None,
    ):
        super().__init__()
        self.trunk = trunk
        self.spec = spec
        self.arch_spec = arch_spec
        self.preprocessing = preprocessing
        self.weights = weights
        self.num_features = num_features
        self._feature_layers = dict(feature_layers)
        self._group_names = groups
        self.source_head = source_head
        self._frozen: set[str] = set()
        self.train_frozen_bn = False
        # trunk parameter names no schedule ever trains (the pretrained weights under LoRA adapters or a prompt)
        self.fixed_parameters: set[str] = set()
        # the source options it was created with (text: pooling, max_length); its architecture is rebuilt with them
        self.options: dict[str, Any] = {}
        # digests of the items these weights were trained on, when known (bundle: backbones; transferkit.data.seen)
        self.source_items: np.ndarray | None = None

    # -- inputs ---------------------------------------------------------------------------------------
    # Batches for ``forward`` come from :func:`transferkit.data.backbone_batches`, which dispatches on ``modality``.
    def describe_inputs(self, dataset: Any) -> dict[str, Any]:
        """Facts about how ``dataset`` fits this backbone (e.g. out-of-vocabulary tokens); empty for images."""
        return {}

    def export_assets(self, directory: Any) -> str | None:
        """Write what rebuilding the architecture needs besides tensors (a tokenizer, a vocabulary) into
        ``directory`` and return the source prefix that reads it back (``<prefix>:<directory>``); None when the
        ``arch_spec`` alone rebuilds it (every image source)."""
        return None

    # -- weights --------------------------------------------------------------------------------------
    def trunk_checksum(self) -> str:
        """sha256 of the trunk's weights as they are now (what the feature cache keys features on)."""
        return state_dict_checksum(self.trunk)

    def trunk_state_dict(self) -> dict[str, torch.Tensor]:
        """The trunk's state dict, as a bundle keeps it (a cached backbone reads it without building the model)."""
        return dict(self.trunk.state_dict())

    # -- features -------------------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Layer names usable as ``layer=``, input → output; the last is ``pre_logits`` (the default)."""
        return [*self._feature_layers, DEFAULT_LAYER]

    def layer_dim(self, layer: str | None = None) -> int:
        layer = self._check_layer(layer)
        return self.num_features if layer == DEFAULT_LAYER else self._feature_layers[layer]

    def _check_layer(self, layer: str | None) -> str:
        if layer in (None, "", "last", DEFAULT_LAYER):
            return DEFAULT_LAYER
        if layer not in self._feature_layers:
            raise BackboneError(
                f"Layer {layer!r} is not a feature layer of {self.spec}. Choose one of: "
                f"{', '.join(self.layers)}.{did_you_mean(layer, self.layers)}"
            )
        return layer

    def forward(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """Pooled features ``(B, D)`` at ``layer`` (default: the pre-logits features)."""
        layer = self._check_layer(layer)
        if layer == DEFAULT_LAYER:
            return self.trunk(x)

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            raise _StopForward(output[0] if isinstance(output, tuple) else output)

        handle = self.trunk.get_submodule(layer).register_forward_hook(hook)
        try:
            self.trunk(x)
        except _StopForward as stop:
            return global_pool(stop.output)
        finally:
            handle.remove()
        raise BackboneError(f"Layer {layer!r} of {self.spec} was never reached in the forward pass.")

    def forward_layers(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Pooled features ``(B, D_layer)`` at several layers from one forward pass (stops after the deepest)."""
        names = [self._check_layer(layer) for layer in layers]
        outputs: dict[str, torch.Tensor] = {}
        inner = [n for n in names if n != DEFAULT_LAYER]
        deepest = max(inner, key=self.layers.index) if inner else None

        def hook(name: str) -> Any:
            def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
                outputs[name] = global_pool(output[0] if isinstance(output, tuple) else output)
                if name == deepest and DEFAULT_LAYER not in names:
                    raise _StopForward(outputs[name])
            return record

        handles = [self.trunk.get_submodule(n).register_forward_hook(hook(n)) for n in dict.fromkeys(inner)]
        try:
            final = self.trunk(x)
            if DEFAULT_LAYER in names:
                outputs[DEFAULT_LAYER] = final
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return {n: outputs[n] for n in names}

    # -- layer groups and freezing -------------------------------------------------------------------
    def layer_groups(self) -> list[LayerGroup]:
        """Ordered input → output groups of modules, for freezing and discriminative learning rates."""
        groups = []
        for name, names in self._group_names:
            group = LayerGroup(name)
            for n in names:
                try:
                    group.modules.append(self.trunk.get_submodule(n))
                except AttributeError:
                    group.loose_parameters.append(self.trunk.get_parameter(n))
            groups.append(group)
        return groups

    def freeze(self, groups: list[str] | None = None, *, train_bn: bool = False) -> None:
        """Freeze ``groups`` (default: all): no gradient, and BatchNorm statistics stay fixed.

        Frozen modules stay in eval mode even when ``.train()`` is called later, so nothing in a
        training loop silently updates their BatchNorm buffers. ``train_bn=True`` keeps BN layers
        learning (affine parameters and statistics), as some recipes prefer.
        """
        names = self._resolve_groups(groups)
        self.train_frozen_bn = train_bn
        for group in self.layer_groups():
            if group.name in names:
                for m in group.modules:
                    for mod in m.modules():
                        is_bn = isinstance(mod, nn.modules.batchnorm._BatchNorm)
                        for p in mod.parameters(recurse=False):
                            p.requires_grad_(train_bn and is_bn)
                for p in group.loose_parameters:
                    p.requires_grad_(False)
                self._frozen.add(group.name)
        self.train(self.training)

    def unfreeze(self, groups: list[str] | None = None) -> None:
        """Make ``groups`` (default: all) trainable again, except the ``fixed_parameters``."""
        names = self._resolve_groups(groups)
        fixed = {id(p) for n, p in self.trunk.named_parameters() if n in getattr(self, "fixed_parameters", ())}
        for group in self.layer_groups():
            if group.name in names:
                for p in group.parameters():
                    p.requires_grad_(id(p) not in fixed)
                self._frozen.discard(group.name)
        self.train(self.training)

    def groups_for(self, layer: str | None) -> list[str]:
        """The layer groups that compute ``layer``'s features, input first (all of them for the pre-logits).

        A forward pass at an inner layer stops there, so the groups after it get no gradient: unfreezing them would
        train nothing (and DDP would wait for their gradients). A group counts when its first module is registered
        no later than the layer's module (timm, torchvision and transformers register modules in forward order).
        """
        layer = self._check_layer(layer)
        names = [g for g, _ in self._group_names]
        if layer == DEFAULT_LAYER:
            return names
        modules = [name for name, _ in self.trunk.named_modules()]

        def position(name: str) -> int:  # layer and group names may be relative to a wrapped model inside the trunk
            if name in modules:
                return modules.index(name)
            for i, module in enumerate(modules):
                if module.endswith("." + name):
                    return i
            owner = name.rpartition(".")[0]  # a loose parameter counts at its owning module (the root: first)
            return position(owner) if owner else 0

        limit = position(layer)
        return [g for g, members in self._group_names if min(map(position, members)) <= limit]

    @property
    def frozen_groups(self) -> list[str]:
        return [g for g, _ in self._group_names if g in self._frozen]

    def _resolve_groups(self, groups: list[str] | None) -> set[str]:
        known = [g for g, _ in self._group_names]
        if groups is None:
            return set(known)
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise BackboneError(
                f"Unknown layer group {unknown[0]!r} of {self.spec}; groups are: {', '.join(known)}."
                f"{did_you_mean(unknown[0], known)}"
            )
        return set(groups)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode and self._frozen:
            for group in self.layer_groups():
                if group.name in self._frozen:
                    for m in group.modules:
                        m.eval()
                        if self.train_frozen_bn:  # eval() above reached nested BatchNorm too: re-enable it
                            for mod in m.modules():
                                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                                    mod.train()
        return self

    # -- description ----------------------------------------------------------------------------------
    @property
    def licence_chain(self) -> tuple[LicenceSource, ...]:
        """Every set of weights this backbone descends from, each with its SPDX licence (:mod:`.licences`): the
        source's own weights, or for a ``bundle:`` backbone the chain its bundle recorded."""
        w = self.weights
        return w.licence_chain or (LicenceSource(self.spec, w.licence, note=w.licence_note),)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: spec, weights provenance, preprocessing, layers and groups."""
        return {
            "spec": self.spec,
            "arch_spec": self.arch_spec,
            "num_features": self.num_features,
            "layers": {name: self.layer_dim(name) for name in self.layers},
            "groups": [g for g, _ in self._group_names],
            "preprocessing": self.preprocessing.to_dict(),
            "weights": self.weights.to_dict(),
            "licence_chain": [s.to_dict() for s in self.licence_chain],
        }


class PooledBackbone(Backbone):
    """A :class:`Backbone` whose trunk pools its own features: texts and audio, where a batch is a dict of
    tensors and every feature layer is pooled over a mask inside the trunk.

    The trunk maps a batch to pooled features ``(B, num_features)`` and has ``pooled_layers(inputs, names) ->
    {name: (B, D)}`` (one forward pass for several layers). ``export`` writes what rebuilding the architecture
    needs (tokenizer, vocabulary, config) into a directory and returns the source prefix that reads it back; None
    when ``arch_spec`` alone rebuilds it.
    """

    def __init__(self, trunk: nn.Module, *, export: Callable[[Path], str] | None = None, **kwargs: Any):
        super().__init__(trunk, **kwargs)
        self._export = export

    def export_assets(self, directory: Any) -> str | None:
        if self._export is None:
            return None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return self._export(directory)

    def forward(self, x: Any, layer: str | None = None) -> torch.Tensor:
        """Pooled features ``(B, D)`` at ``layer`` of a batch ``x`` as ``backbone_batches`` yields it."""
        layer = self._check_layer(layer)
        if layer == DEFAULT_LAYER:
            return self.trunk(x)
        return self.trunk.pooled_layers(x, [layer])[layer]  # type: ignore[operator]

    def forward_layers(self, x: Any, layers: list[str]) -> dict[str, torch.Tensor]:
        names = [self._check_layer(layer) for layer in layers]
        if all(n == DEFAULT_LAYER for n in names):
            return {DEFAULT_LAYER: self.trunk(x)}
        out = self.trunk.pooled_layers(x, names)  # type: ignore[operator]  # one pass for every layer
        return {n: out[n] for n in names}
