"""``torchvision:<model>`` backbones with torchvision's own weights enums (``DEFAULT`` weights).

Preprocessing is read from ``weights.transforms()``; the last ``nn.Linear`` is the source head and is set
aside, so the trunk returns the pre-logits features. Weights download into ``$TORCH_HOME/hub/checkpoints``
and are read from there offline.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torchvision
from torch import nn

from .._errors import BackboneError, OfflineError, did_you_mean
from ._base import Backbone
from ._groups import name_and_cover_groups, probe_feature_dims, top_level_groups
from ._registry import SourceEntry, register_source
from .licences import LicenceSource, spdx_id
from .timm import OFFLINE_ALTERNATIVES
from .weights import Preprocessing, WeightsInfo, state_dict_checksum

# torchvision's code is BSD-3-Clause; of its weights the docs say only that they "may have their own licenses or
# terms and conditions derived from the dataset used for training": unknown, unless the weights' metadata names one
_LICENCE_NOTE = "BSD-3-Clause code; weights under the terms of their training data (see torchvision docs)"


def weights_licence(weights_enum: Any) -> str:
    """The licence a torchvision weights enum's metadata names (the SWAG weights link theirs), else unknown."""
    return spdx_id(weights_enum.meta.get("license"))


def _classification_models() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _split_off_head(model: nn.Module) -> tuple[nn.Module | None, int]:
    last_name, last = None, None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = name, module
    if last is None or last_name is None:
        raise BackboneError("This torchvision model has no linear classifier to replace; choose a classification model.")
    parent_name, _, child = last_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return copy.deepcopy(last), int(last.in_features)


def _checkpoint_path(weights: Any) -> Path:
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    return hub / os.path.basename(weights.url)


def create(name: str, *, pretrained: bool = True, **_: Any) -> Backbone:
    known = _classification_models()
    if name not in known:
        raise BackboneError(
            f"torchvision has no classification model named {name!r}; see `transferkit backbones`."
            f"{did_you_mean(name, known)}"
        )
    weights_enum: Any = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
    try:
        model = torchvision.models.get_model(name, weights=weights_enum)
    except (URLError, OSError) as e:
        raise OfflineError(
            f"Could not download torchvision weights {weights_enum} ({e.__class__.__name__}: offline?). "
            f"Put {os.path.basename(weights_enum.url)} in {_checkpoint_path(weights_enum).parent} or use "
            f"{OFFLINE_ALTERNATIVES}."
        ) from e
    if getattr(model, "aux_logits", False):  # GoogLeNet, Inception v3: auxiliary logits in train mode, no features
        model.aux_logits = False
        for aux in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    source_head, num_features = _split_off_head(model)
    if weights_enum is not None:
        t = weights_enum.transforms()
        crop = int(t.crop_size[0])
        preprocessing = Preprocessing(
            input_size=(3, crop, crop),
            mean=tuple(t.mean),
            std=tuple(t.std),
            interpolation=t.interpolation.value,
            crop_pct=crop / float(t.resize_size[0]),
        )
        weights = WeightsInfo(
            source="torchvision",
            pretrained=True,
            licence=weights_licence(weights_enum),
            origin=weights_enum.url,
            checksum=state_dict_checksum(model),
            source_task=str(weights_enum).split(".")[-1],
            num_source_classes=len(weights_enum.meta.get("categories", [])),
            licence_note=_LICENCE_NOTE,
        )
    else:
        preprocessing = Preprocessing(interpolation="bilinear", crop_pct=0.875)
        weights = WeightsInfo("torchvision", False, "n/a (random init)", "random init", state_dict_checksum(model))
        source_head = None
    groups = name_and_cover_groups(model, _raw_groups(model))
    module_names = {n for n, _ in model.named_modules()}
    single = [modules[0] for _, modules in groups if len(modules) == 1 and modules[0] in module_names]
    if isinstance(model, torchvision.models.SwinTransformer):
        single = []  # its blocks give channels-last maps (B, H, W, C): pooled as (B, C, H, W) they would be wrong
    return Backbone(
        model,
        spec=f"torchvision:{name}",
        arch_spec=f"torchvision:{name}",
        preprocessing=preprocessing,
        weights=weights,
        num_features=num_features,
        feature_layers=probe_feature_dims(model, single, preprocessing.input_size),
        groups=groups,
        source_head=source_head,
    )


def _raw_groups(model: nn.Module) -> list[list[str]]:
    """Input → output groups. Vision transformers: the patch embedding with the class token and position embedding,
    then each encoder block, then the final norm (the generic top-level split would put the class token last, as if
    it were the layer nearest the head, and the whole encoder in one group)."""
    blocks = getattr(getattr(model, "encoder", None), "layers", None)
    if hasattr(model, "conv_proj") and isinstance(blocks, nn.Sequential):
        embed = ["conv_proj", *[n for n, _ in model.named_parameters(recurse=False)]]
        embed += [f"encoder.{n}" for n, _ in model.get_submodule("encoder").named_parameters(recurse=False)]
        return [embed, *[[f"encoder.layers.{n}"] for n, _ in blocks.named_children()], ["encoder.ln"]]
    return top_level_groups(model)


def list_entries() -> list[SourceEntry]:
    rows = []
    for name in _classification_models():
        try:
            w = torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, AttributeError):
            continue
        if _checkpoint_path(w).is_file():
            rows.append(SourceEntry(f"torchvision:{name}", weights_licence(w), True, True,
                                    f"{w} in the local torch hub cache; {_LICENCE_NOTE}", "image"))
    rows.append(
        SourceEntry(
            f"torchvision:<any of {len(_classification_models())} classification models>",
            "per weights: unknown unless named (terms of their training data)",
            False,
            True,
            "downloads from download.pytorch.org; offline with --random-init",
        )
    )
    return rows


register_source(
    "torchvision",
    create,
    list_entries,
    lambda n: n in _classification_models(),
    "torchvision classification models and their weights enums",
    reads=lambda _name: "image",
    licence=lambda n: (((LicenceSource(f"torchvision:{n}", weights_licence(torchvision.models.get_model_weights(n).DEFAULT),
                                       note=_LICENCE_NOTE),), "image") if n in _classification_models() else None),
)
