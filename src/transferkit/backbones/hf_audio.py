"""``hf:`` speech encoders (wav2vec 2.0, HuBERT, WavLM, data2vec-audio) as audio backbones.

Baevski et al., "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations", NeurIPS 2020;
Hsu et al., "HuBERT", 2021. A convolutional feature encoder turns 16 kHz samples into ~50 frames a second, a
projection and a transformer encoder contextualise them. Here the model's own ``AutoFeatureExtractor`` normalises
each clip (zero mean, unit variance over its real samples), clips are cropped to ``max_seconds`` (default 10 s),
and frame vectors are averaged over the real frames only (the sample mask mapped through the convolutions'
output lengths), so padding never leaks into a clip's features. Feature layers are the hidden states of each
encoder layer; layer groups are the feature encoder, the feature projection (with the positional convolution),
each encoder layer, and what follows. Models that were trained without an attention mask (``wav2vec2-base``:
``return_attention_mask`` false in the feature extractor) get zero padding and no mask, as their model card asks.

``hf.py`` hands a name to :func:`backbone_from_hf_audio` when :func:`is_audio_model` recognises it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import BackboneError
from .._utils import sha256_file
from ._audio import AudioBackbone, masked_mean
from ._base import DEFAULT_LAYER, read_json
from ._groups import name_and_cover_groups
from ._hf_hub import hub_file, load_transformers, read_licence, weights_and_card
from .weights import DEFAULT_MAX_SECONDS, AudioPreprocessing, WeightsInfo, state_dict_checksum

AUDIO_MODEL_TYPES = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech",
                     "unispeech-sat", "sew", "sew-d")
OPTIONS_FILE = "transferkit_audio.json"  # max_seconds, written next to a bundle's feature-extractor config
OFFLINE_ALTERNATIVES = "packaged:crepe-tiny, packaged:crepe-full, hf:<local model dir>, or a bundle:<dir>"


def _config_files(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config.json, preprocessor_config.json)`` of a local directory or a hub id in the local cache."""
    found = []
    for filename in ("config.json", "preprocessor_config.json"):
        path = Path(name) / filename if os.path.isdir(name) else hub_file(name, filename)
        try:
            found.append(read_json(path) if path is not None and path.is_file() else {})
        except (OSError, ValueError):
            found.append({})
    return found[0], found[1]


def is_audio_model(name: str) -> bool:
    """Whether ``hf:<name>`` is a speech encoder: its config's ``model_type`` is one, or its feature extractor
    reads sampled audio (``sampling_rate`` without image sizes)."""
    config, extractor = _config_files(name)
    if config.get("model_type") in AUDIO_MODEL_TYPES:
        return True
    return "sampling_rate" in extractor and "size" not in extractor and "crop_size" not in extractor


def _shortest_input(model: Any) -> int:
    """The fewest samples for which the convolutional feature encoder yields one frame (400 for wav2vec2)."""
    lengths: Any = model._get_feat_extract_output_lengths
    low, high = 1, 1 << 16
    if int(lengths(torch.tensor(high))) < 1:
        return high
    while low < high:  # the output length grows with the input: the smallest input with one frame
        mid = (low + high) // 2
        if int(lengths(torch.tensor(mid))) >= 1:
            high = mid
        else:
            low = mid + 1
    return low


class FeatureExtractorPrepare:
    """Resampled clips → the model's inputs through its own feature extractor (picklable for loader workers)."""

    def __init__(self, feature_extractor: Any):
        self.feature_extractor = feature_extractor

    def __call__(self, clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
        fe = self.feature_extractor
        enc = fe(clips, sampling_rate=fe.sampling_rate, padding=True, return_attention_mask=True, return_tensors="pt")
        return {"input_values": enc["input_values"].float(), "attention_mask": enc["attention_mask"].long()}


class HFAudioTrunk(nn.Module):
    """A transformers speech encoder whose frame vectors are averaged over the real frames."""

    def __init__(self, model: nn.Module, layer_names: list[str], pass_mask: bool):
        super().__init__()
        self.model = model
        self.layer_names = layer_names  # hidden_states[i + 1] is the output of layer_names[i]
        self.pass_mask = pass_mask

    def _run(self, inputs: dict[str, torch.Tensor], hidden_states: bool) -> tuple[Any, torch.Tensor]:
        mask = inputs["attention_mask"]
        out = self.model(inputs["input_values"], attention_mask=mask if self.pass_mask else None,
                         output_hidden_states=hidden_states)
        output_lengths: Any = self.model._get_feat_extract_output_lengths  # what the model's own masking uses
        lengths = output_lengths(mask.sum(dim=1))
        frames = out.last_hidden_state.shape[1]
        frame_mask = torch.arange(frames, device=mask.device).unsqueeze(0) < lengths.unsqueeze(1).to(mask.device)
        return out, frame_mask

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out, frame_mask = self._run(inputs, hidden_states=False)
        return masked_mean(out.last_hidden_state, frame_mask)

    def pooled_layers(self, inputs: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
        out, frame_mask = self._run(inputs, hidden_states=True)
        return {name: masked_mean(out.last_hidden_state if name == DEFAULT_LAYER else
                                  out.hidden_states[self.layer_names.index(name) + 1], frame_mask)
                for name in names}


def _groups(trunk: HFAudioTrunk, layers_name: str, num_layers: int, stable_norm: bool) -> list[tuple[str, list[str]]]:
    """feature encoder (CNN), feature projection (+ positional conv), each encoder layer, then what follows."""
    raw: list[list[str]] = [[] for _ in range(num_layers + 3)]
    layer_prefix = f"model.{layers_name}."
    front = ("model.feature_projection.", "model.masked_spec_embed", "model.encoder.pos_conv_embed.")
    for name, _ in trunk.named_parameters():
        if name.startswith(("model.feature_extractor.", "model.feature_encoder.")):
            raw[0].append(name)
        elif name.startswith(front) or (name.startswith("model.encoder.layer_norm.") and not stable_norm):
            raw[1].append(name)
        elif name.startswith(layer_prefix):
            raw[2 + int(name[len(layer_prefix):].split(".")[0])].append(name)
        else:
            raw[-1].append(name)
    labels = ["feature_encoder", "feature_projection", *[f"{layers_name}.{i}" for i in range(num_layers)], "final"]
    kept = [(label, names) for label, names in zip(labels, raw, strict=True) if names]
    covered = name_and_cover_groups(trunk, [names for _, names in kept])
    return [(label, modules) for (label, _), (_, modules) in zip(kept, covered, strict=True)]


def _load(name: str, pretrained: bool) -> tuple[Any, Any, Path | None, str]:
    """``(model, feature extractor, local directory or None, origin)``; the hub only when reachable."""
    return load_transformers(name, pretrained, processor="AutoFeatureExtractor", what="speech model",
                             needs="config.json, preprocessor_config.json and model.safetensors (or pytorch_model.bin)",
                             alternatives=OFFLINE_ALTERNATIVES, extra="audio")


def backbone_from_hf_audio(name: str, *, spec: str, arch_spec: str, pretrained: bool = True,
                           max_seconds: float | None = None) -> AudioBackbone:
    """Wrap the transformers speech encoder at ``name`` (hub id or directory) into an :class:`AudioBackbone`.

    Args:
        name: hub id or directory with ``config.json`` and ``preprocessor_config.json``.
        spec, arch_spec: the spec it is created from, and one that rebuilds the architecture.
        pretrained: False keeps the configuration and feature extractor with random (seeded) weights.
        max_seconds: longest clip seen, the rest is cropped (default: the directory's ``transferkit_audio.json``,
            else 10 s).

    Raises:
        BackboneError: not a speech encoder directory; OfflineError: a hub id neither cached nor reachable.

    Example:
        >>> bb = create_backbone("hf:facebook/wav2vec2-base", max_seconds=5)
    """
    model, extractor, directory, origin = _load(name, pretrained)
    options: dict[str, Any] = {}
    if directory is not None and (directory / OPTIONS_FILE).is_file():
        options = read_json(directory / OPTIONS_FILE)
    seconds = float(max_seconds or options.get("max_seconds") or DEFAULT_MAX_SECONDS)
    if seconds <= 0:
        raise BackboneError(f"max_seconds must be positive. Got {seconds} instead.")
    config = model.config
    num_layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    layers_name = "encoder.layers"
    try:
        layers = model.get_submodule(layers_name)
    except AttributeError:
        raise BackboneError(f"Cannot find the encoder layers of {type(model).__name__}; hf: audio supports "
                            "wav2vec2, HuBERT, WavLM and data2vec-audio encoders.") from None
    if not hasattr(model, "_get_feat_extract_output_lengths") or len(layers) != num_layers:
        raise BackboneError(f"{type(model).__name__} is not a supported speech encoder (wav2vec2-style).")
    layer_names = [f"{layers_name}.{i}" for i in range(num_layers)]
    trunk = HFAudioTrunk(model, layer_names, pass_mask=bool(getattr(extractor, "return_attention_mask", False)))
    hidden = int(config.hidden_size)
    source = spec.split(":", 1)[0]
    if pretrained:
        weights_file, readme = weights_and_card(name, directory)
        weights = WeightsInfo(source=source, pretrained=True, licence=read_licence(readme), origin=origin,
                              checksum=sha256_file(weights_file) if weights_file else state_dict_checksum(trunk),
                              source_task=f"self-supervised speech ({config.model_type})")
    else:
        weights = WeightsInfo(source=source, pretrained=False, licence="n/a (random init)", origin="random init",
                              checksum=state_dict_checksum(trunk))
    preprocessing = AudioPreprocessing(
        sample_rate=int(extractor.sampling_rate), max_seconds=seconds,
        normalisation="zero-mean-unit-variance" if getattr(extractor, "do_normalize", False) else "none",
        feature_extractor=type(extractor).__name__)

    def export(target: Path) -> str:
        extractor.save_pretrained(target)
        config.save_pretrained(target)
        (target / OPTIONS_FILE).write_text(json.dumps({"max_seconds": seconds}))
        return "hf"

    return AudioBackbone(
        trunk, prepare=FeatureExtractorPrepare(extractor), export=export, min_samples=_shortest_input(model),
        spec=spec, arch_spec=arch_spec,
        preprocessing=preprocessing, weights=weights, num_features=hidden,
        feature_layers=dict.fromkeys(layer_names, hidden),
        groups=_groups(trunk, layers_name, num_layers, bool(getattr(config, "do_stable_layer_norm", False))),
    )
