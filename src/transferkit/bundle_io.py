"""Turning fitted strategies into bundle records and back (private to :mod:`transferkit.bundle`)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._errors import BundleError
from ._utils import sha256_file
from .backbones._base import Backbone
from .backbones.weights import Preprocessing, WeightsInfo, state_dict_checksum
from .bundle import read_training_items
from .heads import build_head_module
from .heads.persist import load_sklearn_head, save_sklearn_head

SKLEARN_HEAD_FILE = "head.skops"


def head_record(model: Any, directory: Path) -> dict[str, Any]:
    head_name = model.get_params(deep=False).get("head", "linear")
    name = head_name if isinstance(head_name, str) else type(head_name).__name__
    if getattr(model, "head_module_", None) is not None:
        return {"type": model.head_config_["type"], "name": name, "config": model.head_config_,
                "module": model.head_module_}
    save_sklearn_head(model.head_, directory / SKLEARN_HEAD_FILE)
    return {"type": "sklearn", "name": name, "estimator": type(model.head_).__name__, "file": SKLEARN_HEAD_FILE}


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
    from .backbones import create_backbone

    info = meta.get("backbone", {})
    arch = architecture_spec(directory, meta)
    backbone = create_backbone(arch, pretrained=False, **options)
    state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
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
    backbone.weights = WeightsInfo(
        source="bundle",
        pretrained=True,
        licence=meta.get("licence", "unknown"),
        origin=str(directory),
        checksum=state_dict_checksum(backbone.trunk),
        source_task=f"{meta.get('strategy', '?')} on {meta.get('data', {}).get('name', '?')}"
        + (f", from {origin.origin}" if origin else ""),
        num_source_classes=len(meta.get("classes", [])),
    )
    backbone.source_items = read_training_items(directory, meta, "backbone")
    return backbone.eval()


def restore(directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor], overrides: dict[str, Any]) -> Any:
    from .strategies import STRATEGIES
    from .strategies._train import TransferModel

    strategy = meta.get("strategy")
    if strategy not in STRATEGIES:
        raise BundleError(f"Bundle {str(directory)!r} has unknown strategy {strategy!r}; upgrade transferkit.")
    cls = STRATEGIES[strategy]
    accepted = set(inspect.signature(cls).parameters)
    params = {k: v for k, v in meta.get("params", {}).items() if k in accepted}
    params["backbone"] = f"bundle:{directory}"
    if "head" in accepted:
        params["head"] = meta.get("head", {}).get("name", "logistic")
    params.update({k: v for k, v in overrides.items() if k in accepted})
    est = cls(**params)
    backbone = backbone_from_bundle(directory, meta, tensors)
    layer = backbone._check_layer(meta["backbone"].get("layer"))
    head = meta.get("head", {})
    est.backbone_ = backbone
    est.layer_ = layer
    est.classes_ = np.asarray(meta["classes"])
    if meta.get("classes_are_integers"):
        est.classes_ = est.classes_.astype(np.int64)
    est.head_classes_ = np.asarray(meta.get("head_classes", list(range(len(meta["classes"])))), dtype=np.int64)
    est.fit_info_ = meta.get("fit", {})
    est.train_items_ = read_training_items(directory, meta, "model")
    if head.get("type") == "sklearn":
        path = directory / head.get("file", SKLEARN_HEAD_FILE)
        if not path.is_file():
            raise BundleError(f"Bundle {str(directory)!r} is missing {path.name}; re-create it.")
        expected = meta.get("files", {}).get(path.name)
        if expected and sha256_file(path) != expected:
            raise BundleError(f"{str(path)!r} does not match its recorded checksum; the bundle is damaged, re-create it.")
        est.head_ = load_sklearn_head(path)
        est.head_module_, est.head_config_ = None, None
    else:
        config = head.get("config")
        if not config:
            raise BundleError(f"Bundle {str(directory)!r} does not describe its head; re-create it.")
        module = build_head_module(config)
        state = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
        try:
            module.load_state_dict(state)
        except RuntimeError:
            raise BundleError(f"Bundle {str(directory)!r} head weights do not match its description.") from None
        est.head_module_, est.head_config_ = module.eval(), config
        est.head_ = None
    if strategy in ("fine-tune", "scratch"):
        est.model_ = TransferModel(backbone, est.head_module_, layer).eval()
    return est
