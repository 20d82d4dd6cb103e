"""``hf:<model id or local dir>`` backbones: Hugging Face transformer encoders (BERT, MiniLM, RoBERTa, ...).

Token vectors of the last layer are pooled into one vector per text: ``mean`` over the attention mask (the
default, as sentence-transformers' mean pooling), ``cls`` (first token) or ``max``. Every encoder layer is a
feature layer (its hidden states pooled the same way); the layer groups are the embeddings, each encoder layer,
and what follows (a final norm, if any), so freezing, gradual unfreezing and discriminative learning rates work as
for images. The model's own pooler (BERT's dense + tanh over ``[CLS]``, trained for next-sentence prediction) is
removed: no pooling here reads it, so it would only take the top slot of the learning-rate decay, waste the first
stage of gradual unfreezing and leave DDP with parameters that never get a gradient. A local directory needs ``config.json``, the weights and the tokenizer files; a hub id is read from
the local hub cache, or downloaded when the hub is reachable (:mod:`._hf_hub`, which imports ``transformers``
lazily).

A trunk may also carry ``prompt``: virtual token vectors prepended to every text's word embeddings (prompt
tuning, :mod:`transferkit.backbones.prompt_tuning`), the attention mask extended to cover them, exactly as peft's
``PeftModelForFeatureExtraction`` runs a ``PromptTuningConfig``. Their output vectors are dropped before pooling:
they steer the text's tokens through attention, while ``mean``/``max`` run over the text's real tokens and ``cls``
is still the text's own first token, as without a prompt.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import BackboneError
from .._utils import sha256_bytes, sha256_file
from ._base import DEFAULT_LAYER, read_json
from ._groups import name_and_cover_groups
from ._hf_hub import load_transformers, read_licence, weights_and_card
from ._registry import SourceEntry, register_source
from ._text import POOLINGS, TextBackbone, check_text_options, pool_tokens
from .weights import TextPreprocessing, WeightsInfo, state_dict_checksum

DEFAULT_MAX_LENGTH = 128
OPTIONS_FILE = "transferkit_text.json"  # pooling, max_length, prompt_tokens; written next to a bundle's tokenizer
OFFLINE_ALTERNATIVES = ("packaged:all-minilm-l6-v2 or packaged:glove-6b-50d (text), packaged:crepe-tiny (audio), "
                        "hf:<local model dir>, or a bundle:<dir>")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class HFEncoder:
    """Texts → ``input_ids``, ``attention_mask`` (and ``token_type_ids``), truncated to ``max_length``."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: enc[k] for k in _MODEL_INPUTS if k in enc}

    def report(self, texts: list[str]) -> dict[str, Any]:
        """How many texts are longer than ``max_length`` tokens (their ends are not seen)."""
        if not texts:
            return {"texts": 0}
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]
        truncated = sum(n > self.max_length for n in lengths)
        return {"texts": len(texts), "mean_tokens": round(sum(lengths) / len(lengths), 1),
                "max_length": self.max_length, "truncated": truncated,
                "truncated_fraction": round(truncated / len(texts), 4)}


class HFTextTrunk(nn.Module):
    """A transformers encoder whose hidden states are pooled over the attention mask.

    ``prompt`` (``(num_virtual_tokens, hidden)``, or None) is prepended to the word embeddings of every text; see
    the module docstring for how it is run and why its outputs are not pooled.
    """

    prompt: nn.Parameter | None

    def __init__(self, model: nn.Module, pooling: str, layer_names: list[str]):
        super().__init__()
        if isinstance(getattr(model, "pooler", None), nn.Module):  # unused by every pooling (module docstring)
            model.pooler = None  # type: ignore[assignment]  # transformers' add_pooling_layer=False; bundles are saved without it too
        self.model = model
        self.pooling = pooling
        self.layer_names = layer_names  # hidden_states[i + 1] is the output of layer_names[i]
        self.register_parameter("prompt", None)

    @property
    def num_virtual_tokens(self) -> int:
        return 0 if self.prompt is None else int(self.prompt.shape[0])

    def _run(self, inputs: dict[str, torch.Tensor], hidden_states: bool = False) -> Any:
        """The model's output on ``inputs`` (``(B, T)`` tensors); with a prompt, every sequence is
        ``num_virtual_tokens + T`` long, the virtual tokens first."""
        if self.prompt is None:
            return self.model(**inputs, output_hidden_states=hidden_states) if hidden_states else self.model(**inputs)
        model: Any = self.model
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        batch, n = ids.shape[0], self.num_virtual_tokens
        embeds = model.get_input_embeddings()(ids)
        prompt = self.prompt.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
        extra: dict[str, torch.Tensor] = {}
        if "token_type_ids" in inputs:  # the virtual tokens belong to the (single) first segment
            extra["token_type_ids"] = torch.cat([inputs["token_type_ids"].new_zeros(batch, n),
                                                 inputs["token_type_ids"]], dim=1)
        return model(inputs_embeds=torch.cat([prompt, embeds], dim=1),
                     attention_mask=torch.cat([mask.new_ones(batch, n), mask], dim=1),
                     output_hidden_states=hidden_states, **extra)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self._run(inputs)
        return pool_tokens(out.last_hidden_state[:, self.num_virtual_tokens:], inputs["attention_mask"], self.pooling)

    def pooled_layers(self, inputs: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
        out = self._run(inputs, hidden_states=True)
        mask, n = inputs["attention_mask"], self.num_virtual_tokens
        pooled = {}
        for name in names:
            hidden = out.last_hidden_state if name == DEFAULT_LAYER else \
                out.hidden_states[self.layer_names.index(name) + 1]
            pooled[name] = pool_tokens(hidden[:, n:], mask, self.pooling)
        return pooled


def model_positions(model: nn.Module, tokenizer: Any) -> int | None:
    """Tokens the model reads at most (the tokenizer's limit or the position embeddings, whichever is smaller)."""
    limits = []
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:
        limits.append(model_max)
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else None


def add_virtual_tokens(backbone: TextBackbone, num_tokens: int) -> nn.Parameter:
    """Give a transformer text backbone ``num_tokens`` virtual tokens (zeros until trained or loaded).

    The prompt becomes its own layer group, ``prompt``, first (it sits below the embeddings). The texts' own
    ``max_length`` shrinks when the model's positions cannot hold both (e.g. 512 positions, 20 virtual tokens:
    at most 492 text tokens). Returns the new parameter.

    Raises:
        BackboneError: not a transformer text backbone, one that already has a prompt, or no room left for text.
    """
    trunk = backbone.trunk
    if not isinstance(trunk, HFTextTrunk) or not isinstance(backbone.encoder, HFEncoder):
        raise BackboneError(f"Virtual tokens need a transformer text encoder (hf:<model>, packaged:all-minilm-l6-v2). "
                            f"Got {backbone.spec} ({backbone.modality}).")
    if trunk.prompt is not None:
        raise BackboneError(f"{backbone.spec} already runs with {trunk.num_virtual_tokens} virtual tokens (a "
                            "prompt-tuned bundle); fine-tune it without `peft='prompt-tuning'`, or start from its source.")
    if not isinstance(num_tokens, int) or isinstance(num_tokens, bool) or num_tokens < 1:
        raise BackboneError(f"`num_tokens` must be a positive integer. Got {num_tokens!r} instead.")
    max_length = backbone.encoder.max_length
    positions = model_positions(trunk.model, backbone.encoder.tokenizer)
    if positions is not None:
        if positions - num_tokens < 2:
            raise BackboneError(f"`num_tokens={num_tokens}` leaves no room for text: {backbone.spec} reads at most "
                                f"{positions} tokens. Use fewer virtual tokens.")
        max_length = min(max_length, positions - num_tokens)
    model: Any = trunk.model
    trunk.prompt = nn.Parameter(torch.zeros(num_tokens, int(model.config.hidden_size), dtype=torch.float32,
                                            device=next(model.parameters()).device))
    backbone.encoder.max_length = max_length
    backbone.preprocessing = dataclasses.replace(backbone.preprocessing, max_length=max_length,
                                                 prompt_tokens=num_tokens)
    backbone._group_names = [("prompt", ["prompt"]), *backbone._group_names]
    return trunk.prompt


def _encoder_layers(model: nn.Module, num_layers: int) -> str:
    """Name of the ModuleList holding the encoder layers (``encoder.layer`` in BERT, ``transformer.layer``...)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers and num_layers > 0:
            return name
    raise BackboneError(
        f"Cannot find the {num_layers} encoder layers of {type(model).__name__}; hf: supports encoder models "
        "(BERT, RoBERTa, MiniLM, DistilBERT, ...)."
    )


def _groups(trunk: HFTextTrunk, layers_name: str, num_layers: int) -> list[tuple[str, list[str]]]:
    """embeddings (everything before the first layer), each layer, then what follows (pooler, final norm)."""
    prefix = f"model.{layers_name}."
    raw: list[list[str]] = [[] for _ in range(num_layers + 2)]
    seen_layer = False
    for name, _ in trunk.named_parameters():
        if name.startswith(prefix):
            raw[1 + int(name[len(prefix):].split(".")[0])].append(name)
            seen_layer = True
        else:
            raw[-1 if seen_layer else 0].append(name)
    tail = "final"  # what follows the last layer (a final norm); the pooler is removed (module docstring)
    labels = ["embeddings", *[f"{layers_name}.{i}" for i in range(num_layers)], tail]
    kept = [(label, names) for label, names in zip(labels, raw, strict=True) if names]
    covered = name_and_cover_groups(trunk, [names for _, names in kept])
    return [(label, modules) for (label, _), (_, modules) in zip(kept, covered, strict=True)]


def _default_pooling(directory: Path | None) -> str:
    """A sentence-transformers model says how it pools in ``1_Pooling/config.json``; otherwise mean."""
    if directory is None:
        return "mean"
    cfg_path = directory / "1_Pooling" / "config.json"
    if cfg_path.is_file():
        cfg = read_json(cfg_path)
        for mode in POOLINGS:
            if cfg.get(f"pooling_mode_{mode}_token" if mode == "cls" else f"pooling_mode_{mode}_tokens"):
                return mode
    return "mean"


def _load(name: str, pretrained: bool) -> tuple[Any, Any, Path | None, str]:
    """``(model, tokenizer, local directory or None, origin)``; hub ids go to the network only when reachable."""
    return load_transformers(name, pretrained, processor="AutoTokenizer", what="model",
                             needs="config.json, model.safetensors (or pytorch_model.bin) and the tokenizer files",
                             alternatives=OFFLINE_ALTERNATIVES)


def backbone_from_hf(
    name: str, *, spec: str, arch_spec: str, pretrained: bool = True, pooling: str | None = None,
    max_length: int | None = None, licence: str | None = None, origin: str | None = None, source_task: str | None = None,
) -> TextBackbone:
    """Wrap the transformers model at ``name`` (hub id or local directory) into a :class:`TextBackbone`.

    Args:
        name: hub id or directory.
        spec, arch_spec: the spec it is created from, and one that rebuilds the architecture.
        pretrained: False keeps the configuration and tokenizer with random weights.
        pooling: ``mean``, ``cls`` or ``max`` (default: the directory's ``transferkit_text.json`` or
            sentence-transformers pooling config, else ``mean``).
        max_length: tokens per text (default 128, or the tokenizer's limit when smaller).
        licence, origin: override what the model card and location say (packaged weights know better).

    A directory whose ``transferkit_text.json`` names ``prompt_tokens`` (a prompt-tuned bundle's assets) gets that
    many virtual tokens (:func:`add_virtual_tokens`), whose values then come with the weights.
    """
    check_text_options(pooling, max_length, POOLINGS, spec)
    model, tokenizer, directory, found_origin = _load(name, pretrained)
    options: dict[str, Any] = {}
    if directory is not None and (directory / OPTIONS_FILE).is_file():
        options = read_json(directory / OPTIONS_FILE)
    pooling = pooling or options.get("pooling") or _default_pooling(directory)
    check_text_options(pooling, None, POOLINGS, spec)
    limits = [int(max_length or options.get("max_length") or DEFAULT_MAX_LENGTH)]
    positions = model_positions(model, tokenizer)
    if positions is not None:
        limits.append(positions)
    max_len = min(limits)

    num_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    layers_name = _encoder_layers(model, num_layers)
    layer_names = [f"{layers_name}.{i}" for i in range(num_layers)]
    trunk = HFTextTrunk(model, pooling, layer_names)
    hidden = int(model.config.hidden_size)

    if pretrained:
        weights_file, readme = weights_and_card(name, directory)
        weights = WeightsInfo(
            source=spec.split(":", 1)[0], pretrained=True, licence=licence or read_licence(readme),
            origin=origin or found_origin,
            checksum=sha256_file(weights_file) if weights_file is not None else state_dict_checksum(trunk),
            source_task=source_task or "",
        )
    else:
        weights = WeightsInfo(source=spec.split(":", 1)[0], pretrained=False, licence="n/a (random init)",
                              origin="random init", checksum=state_dict_checksum(trunk))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    tok_hash = sha256_bytes(backend.to_str().encode()) if backend is not None else ""
    preprocessing = TextPreprocessing(
        tokenizer=type(tokenizer).__name__, pooling=pooling, max_length=max_len,
        lowercase=bool(getattr(tokenizer, "do_lower_case", False)), tokenizer_sha256=tok_hash,
    )

    encoder = HFEncoder(tokenizer, max_len)

    def export(target: Path) -> str:
        tokenizer.save_pretrained(target)
        model.config.save_pretrained(target)
        written = {"pooling": trunk.pooling, "max_length": encoder.max_length}  # as the backbone runs now
        if trunk.num_virtual_tokens:
            written["prompt_tokens"] = trunk.num_virtual_tokens
        (target / OPTIONS_FILE).write_text(json.dumps(written))
        return "hf"

    backbone = TextBackbone(
        trunk, encoder=encoder, export=export, spec=spec, arch_spec=arch_spec,
        preprocessing=preprocessing, weights=weights, num_features=hidden,
        feature_layers=dict.fromkeys(layer_names, hidden), groups=_groups(trunk, layers_name, num_layers),
    )
    if options.get("prompt_tokens"):
        add_virtual_tokens(backbone, int(options["prompt_tokens"]))
    return backbone


def create(name: str, *, pretrained: bool = True, pooling: str | None = None, max_length: int | None = None,
           **_: Any) -> TextBackbone:
    from .hf_audio import backbone_from_hf_audio, is_audio_model  # speech encoders: the audio modality

    if is_audio_model(name):  # --pooling/--max-length are then refused by create_backbone (not a text backbone)
        return backbone_from_hf_audio(name, spec=f"hf:{name}", arch_spec=f"hf:{name}", pretrained=pretrained,
                                      max_seconds=_.get("max_seconds"))  # type: ignore[return-value]
    return backbone_from_hf(name, spec=f"hf:{name}", arch_spec=f"hf:{name}", pretrained=pretrained, pooling=pooling,
                            max_length=max_length)


def list_entries() -> list[SourceEntry]:
    return [SourceEntry("hf:<model id or local dir>", "per model (model card)", False, True,
                        "transformers text encoders; offline from a local directory or the hub cache")]


def _knows(name: str) -> bool:
    return os.path.isdir(name) and (Path(name) / "config.json").is_file()


register_source("hf", create, list_entries, _knows, "Hugging Face transformers text encoders (hub id or directory)")
