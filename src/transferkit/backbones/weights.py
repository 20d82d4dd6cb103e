"""What weights carry besides tensors: the preprocessing they expect and where they came from.

The lowest floor of :mod:`transferkit.backbones` (torchvision's ``Weights`` dataclass, timm's ``PretrainedCfg``):
:class:`Preprocessing` (images), :class:`TextPreprocessing`, :class:`AudioPreprocessing`, :class:`WeightsInfo`
(licence, origin, checksum), the checksum over a state dict, and the one conversion of a timm data config into a
:class:`Preprocessing`. It imports no other transferkit package, so data transforms, bundles and the feature
cache can read a spec without the backbone sources.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import BackboneError
from .licences import RANDOM_INIT, UNKNOWN, LicenceSource, spdx_id

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MAX_SECONDS = 10.0


@dataclass(frozen=True)
class Preprocessing:
    """How inputs must look for these weights (timm's ``PretrainedCfg`` / torchvision's ``Weights.transforms``).

    Attributes:
        input_size: ``(channels, height, width)`` the network was trained at.
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel std divided by after subtracting the mean.
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``, used to resize.
        crop_pct: the centre crop keeps this fraction of the resized short side (1.0 = resize only).
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]

    def with_image_size(self, size: int | None) -> Preprocessing:
        """The same spec at another square resolution (``None`` keeps it)."""
        if size is None:
            return self
        return dataclasses.replace(self, input_size=(self.channels, size, size))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The spec a ``to_dict`` wrote: :class:`Preprocessing`, :class:`TextPreprocessing` for text, or
:class:`AudioPreprocessing` for audio."""
        if d.get("modality") == "text":
            return TextPreprocessing.from_dict(d)
        if d.get("modality") == "audio":
            return AudioPreprocessing.from_dict(d)
        return cls(
            input_size=tuple(d["input_size"]),  # type: ignore[arg-type]
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d.get("interpolation", "bilinear"),
            crop_pct=float(d.get("crop_pct", 1.0)),
        )


@dataclass(frozen=True)
class TextPreprocessing:
    """How texts become model inputs for these weights (the text counterpart of :class:`Preprocessing`).

    Attributes:
        tokenizer: what splits texts into tokens (``wordpiece``, ``bpe``, ... from the model's tokenizer, or
            ``regex-words+clitics`` for word vectors).
        pooling: how token vectors become one vector per text: ``mean`` (over real tokens), ``cls``, ``max``
            (transformers) or ``mean``/``sif`` (word vectors).
        max_length: tokens kept per text (longer texts are truncated); None for no limit.
        lowercase: texts are lowercased before tokenising.
        tokenizer_sha256: identifies the exact vocabulary/tokenizer (part of the feature-cache key).
        prompt_tokens: trained virtual tokens the encoder reads before every text (prompt tuning; 0: none).
            ``max_length`` then counts the text's own tokens, which share the model's positions with them.
    """

    tokenizer: str = "wordpiece"
    pooling: str = "mean"
    max_length: int | None = 128
    lowercase: bool = False
    tokenizer_sha256: str = ""
    modality: str = "text"
    prompt_tokens: int = 0

    def with_image_size(self, size: int | None) -> TextPreprocessing:
        if size is not None:
            raise BackboneError(f"`image_size` applies to image backbones; this one reads text. Got {size}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["prompt_tokens"]:  # absent unless prompt-tuned: feature-cache keys of other models stay as they were
            del d["prompt_tokens"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextPreprocessing:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class WeightsInfo:
    """Where weights came from and under which terms (torchvision's ``Weights`` metadata).

    Attributes:
        source: the spec prefix that produced them (``timm``, ``torchvision``, ``packaged``, ``bundle``).
        pretrained: False for a random initialisation.
        licence: SPDX id (:mod:`.licences`: ``Apache-2.0``, ``CC-BY-NC-4.0``, ``unknown``, ``none (random init)``);
            an expression such as ``Apache-2.0 AND CC-BY-NC-4.0`` for a bundle made from several. Whatever a
            source states is normalised to the id; the statement is kept in ``licence_note`` when it says more.
        origin: URL, hub id, package or directory the weights were read from.
        checksum: sha256 over the state dict (names, shapes and bytes), identifies the exact weights.
        source_task: what the weights were trained on (e.g. ``ImageNet-1k``), when known.
        num_source_classes: size of the source head (needed by LEEP), 0 when there is none.
        licence_note: the licence in the source's words (e.g. torchvision's caveat on its weights).
        licence_chain: every set of weights these descend from (a ``bundle:`` backbone's ancestors); empty for
            weights that came straight from their source (:attr:`Backbone.licence_chain` then names that source).
    """

    source: str
    pretrained: bool
    licence: str
    origin: str
    checksum: str = ""
    source_task: str = ""
    num_source_classes: int = 0
    licence_note: str = ""
    licence_chain: tuple[LicenceSource, ...] = ()

    def __post_init__(self) -> None:
        stated = str(self.licence or "")
        licence = spdx_id(stated) if self.pretrained else RANDOM_INIT
        if licence != stated:
            object.__setattr__(self, "licence", licence)
            if licence == UNKNOWN and stated.strip().lower() not in ("", UNKNOWN, "other") and not self.licence_note:
                object.__setattr__(self, "licence_note", stated)  # a sentence, a URL: more than "unknown" says
        object.__setattr__(self, "licence_chain", tuple(
            s if isinstance(s, LicenceSource) else LicenceSource.from_dict(s) for s in self.licence_chain))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["licence_chain"] = [s.to_dict() for s in self.licence_chain]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WeightsInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class AudioPreprocessing:
    """How clips become model inputs for these weights (the audio counterpart of ``Preprocessing``).

    Attributes:
        sample_rate: Hz the weights expect; every clip is resampled to it (soxr, high quality).
        max_seconds: longer clips are cropped to their first ``max_seconds``; shorter ones are padded and the
            padding is masked out of the pooling.
        normalisation: what the model applies to the samples (``zero-mean-unit-variance`` per clip,
            ``per-frame-z-score`` for CREPE, ``none``).
        frame_length, hop_length: samples per analysis frame and between frames, for frame-based models (0 else).
        feature_extractor: the class that normalises inputs (transformers feature extractor), when there is one.
    """

    sample_rate: int = 16000
    max_seconds: float = DEFAULT_MAX_SECONDS
    normalisation: str = "zero-mean-unit-variance"
    frame_length: int = 0
    hop_length: int = 0
    feature_extractor: str = ""
    modality: str = "audio"

    def with_image_size(self, size: int | None) -> AudioPreprocessing:
        if size is not None:
            raise BackboneError(f"`image_size` applies to image backbones; this one reads audio. Got {size}.")
        return self

    @property
    def max_samples(self) -> int:
        return max(1, int(round(self.max_seconds * self.sample_rate)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioPreprocessing:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def state_dict_checksum(module: nn.Module) -> str:
    """sha256 over parameter and buffer names, shapes and bytes: identifies the exact weights."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def preprocessing_from_timm(model_or_config: Any) -> Preprocessing:
    """The :class:`Preprocessing` timm's data config gives a model (or a ``pretrained_cfg`` mapping).

    ``timm.data.resolve_data_config`` fills what the config leaves out with timm's defaults (3 x 224 x 224,
    ImageNet mean/std, bicubic, crop 0.875), so a timm model and packaged weights read through a timm
    architecture get their spec the same way.

    Args:
        model_or_config: a timm model (its ``pretrained_cfg`` is read) or a pretrained-config mapping.

    Returns:
        The input size, mean/std, interpolation and centre-crop fraction the weights expect.

    Example:
        >>> preprocessing_from_timm(timm.create_model("efficientnet_lite0")).interpolation
        'bicubic'
    """
    from timm.data import resolve_data_config

    if isinstance(model_or_config, Mapping):
        cfg = resolve_data_config(pretrained_cfg=dict(model_or_config))
    else:
        cfg = resolve_data_config(model=model_or_config)
    return Preprocessing(
        input_size=tuple(cfg["input_size"]),  # type: ignore[arg-type]
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bilinear"),
        crop_pct=float(cfg.get("crop_pct", 1.0)),
    )
