"""Reading transformers models for the ``hf:`` sources (text encoders in :mod:`.hf`, speech encoders in
:mod:`.hf_audio`): a local directory as it is, a hub id from the local cache first and the network only when the
hub is reachable; licence from the model card. ``transformers`` is imported only here, lazily.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from .._errors import BackboneError, OfflineError
from .._extras import require
from .timm import hub_reachable

UNKNOWN_LICENCE = "unknown — check the model card"


def transformers_module(extra: str = "text", what: str = "hf: backbones") -> Any:
    """``transformers``, quiet; refused with the install hint of ``extra`` when it is missing."""
    transformers: Any = require("transformers", extra, what, error=BackboneError)
    transformers.utils.logging.set_verbosity_error()  # "newly initialized weights" notices are expected here
    transformers.utils.logging.disable_progress_bar()  # progress goes through transferkit's own bars
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return transformers


def load_transformers(name: str, pretrained: bool, *, processor: str, what: str, needs: str,
                      alternatives: str, extra: str = "text") -> tuple[Any, Any, Path | None, str]:
    """``(model, processor, local directory or None, origin)`` for any transformers encoder.

    A directory is read as it is; a hub id from the local cache first, and from the network only when the hub is
    reachable, so offline it fails in seconds with ``alternatives`` in the message.

    Args:
        name: hub id or local directory.
        pretrained: False builds the same config with random weights.
        processor: the ``transformers`` auto class of the input processor (``AutoTokenizer``,
            ``AutoFeatureExtractor``).
        what, needs, alternatives: wording of the errors (``"speech model"``, the files a directory needs, the
            specs that work offline).
        extra: the transferkit extra that installs ``transformers`` for this kind of model (``text``, ``audio``).
    """
    tf = transformers_module(extra, f"hf:{name}")
    directory = Path(name) if os.path.isdir(name) else None

    def load(local_only: bool) -> tuple[Any, Any]:
        kwargs: dict[str, Any] = {"local_files_only": local_only}
        pre = getattr(tf, processor).from_pretrained(name, **kwargs)
        if pretrained:
            model = tf.AutoModel.from_pretrained(name, **kwargs)
        else:
            model = tf.AutoModel.from_config(tf.AutoConfig.from_pretrained(name, **kwargs))
        return model, pre

    if directory is not None:
        try:
            model, pre = load(True)
        except (OSError, ValueError, KeyError, SafetensorError) as e:  # a cut model.safetensors: SafetensorError
            raise BackboneError(
                f"{name!r} is not a loadable transformers {what} directory ({str(e).splitlines()[0]}); it needs "
                f"{needs}."
            ) from None
        return model, pre, directory, str(directory.resolve())
    try:
        model, pre = load(True)
        return model, pre, None, f"hf-hub:{name}"
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise OfflineError(
            f"hf:{name} is not in the local Hugging Face cache and the hub cannot be reached (offline). "
            f"Use {alternatives}."
        )
    try:
        model, pre = load(False)
    except (OSError, ValueError) as e:
        raise OfflineError(f"Could not download hf:{name}: {str(e).splitlines()[0]}. Use {alternatives}.") from e
    return model, pre, None, f"hf-hub:{name}"


def weights_and_card(name: str, directory: Path | None) -> tuple[Path | None, Path | None]:
    """The weights file (safetensors first) and the model card of a local directory or a cached hub model."""
    weights_file = None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        candidate = directory / filename if directory is not None else hub_file(name, filename)
        if candidate is not None and candidate.is_file():
            weights_file = candidate
            break
    readme = directory / "README.md" if directory is not None else hub_file(name, "README.md")
    return weights_file, readme


def hub_file(name: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, filename)
        return Path(hit) if isinstance(hit, str) else None
    except Exception:  # not a valid repo id, no cache: no file
        return None


def read_licence(readme: Path | None) -> str:
    """``license:`` from a model card's YAML front matter (a custom ``license: other`` by its ``license_name``);
    :class:`~transferkit.backbones.WeightsInfo` turns it into the SPDX id."""
    if readme is None or not readme.is_file():
        return UNKNOWN_LICENCE
    lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return UNKNOWN_LICENCE
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() in ("license", "license_name") and value.strip():
            fields[key.strip()] = value.strip().strip("'\"")
    if fields.get("license", "").lower() == "other" and fields.get("license_name"):
        return f"LicenseRef-{fields['license_name']}"
    return fields.get("license", UNKNOWN_LICENCE)
