"""What an exported ONNX file says about itself: ONNX ``metadata_props``, one key per fact, structured values as JSON.

Any ONNX tool shows them (Netron, ``onnx.load(f).metadata_props``, onnxruntime's ``get_modelmeta()``); transferkit
reads them back to run the file as it ran the bundle: the class names, the modality, the preprocessing (image size,
mean/std, interpolation, crop; or the tokenizer's ``max_length`` and pooling), the graph's inputs, the backbone (spec,
layer, weights origin and checksum), the licence, the strategy and head, the bundle it came from (its
``transferkit.json``'s sha256, which covers every file of the bundle), the transferkit version, opset, exporter,
quantisation and the parity measured when it was written; a text model's tokenizer folder and its files' checksums.
"""

from __future__ import annotations

import json
from typing import Any

from .._errors import BundleError
from .._extras import require

ONNX_FORMAT = "transferkit.onnx"
ONNX_FORMAT_VERSION = 1
#: keys whose values are JSON (the rest are plain strings)
JSON_KEYS = ("classes", "preprocessing", "inputs", "backbone", "head", "quantization", "tokenizer", "parity",
             "versions")
#: what the ``pixels`` input of an image graph holds (also the graph's own doc string)
IMAGE_INPUT_DOC = ("pixels: float32 (batch, channels, height, width), already preprocessed as `preprocessing` says: "
                   "resized (short side to height / crop_pct, `interpolation`), centre-cropped to height x width, "
                   "scaled to [0, 1], then (x - mean) / std per channel; output probabilities: float32 (batch, "
                   "classes) in the order of `classes`")
TEXT_INPUT_DOC = ("input_ids, attention_mask[, token_type_ids]: int64 (batch, sequence) from the tokenizer saved "
                  "beside this file (padding to the longest text, truncation to preprocessing.max_length); output "
                  "probabilities: float32 (batch, classes) in the order of `classes`")


def onnx_module() -> Any:
    return require("onnx", "onnx", "ONNX export")


def stamp(model: Any, facts: dict[str, Any]) -> Any:
    """Set ``facts`` as the ONNX model's ``metadata_props`` (replacing any of the same keys), and its producer."""
    from .._version import __version__

    props = {p.key: p.value for p in model.metadata_props}
    props.update({"format": ONNX_FORMAT, "format_version": str(ONNX_FORMAT_VERSION)})
    props.update({k: json.dumps(v) if k in JSON_KEYS else str(v) for k, v in facts.items() if v is not None})
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "transferkit", __version__
    model.doc_string = IMAGE_INPUT_DOC if facts.get("modality") == "image" else TEXT_INPUT_DOC
    return model


def read_facts(props: dict[str, str], path: str) -> dict[str, Any]:
    """The facts of a transferkit ONNX file from its ``metadata_props`` (``props``), checked and parsed.

    Raises:
        BundleError: not exported by transferkit, newer than this version reads, or damaged metadata.
    """
    from .._version import __version__

    if props.get("format") != ONNX_FORMAT:
        raise BundleError(f"{path!r} is an ONNX file without transferkit's metadata (no class names or "
                          "preprocessing); export one with `transferkit export BUNDLE --format onnx --out FILE`.")
    version = props.get("format_version", "")
    if not version.isdigit() or int(version) > ONNX_FORMAT_VERSION:
        raise BundleError(f"{path!r} has transferkit ONNX format version {version!r}, newer than this transferkit "
                          f"({__version__}) reads (<= {ONNX_FORMAT_VERSION}); upgrade: pip install -U transferkit.")
    facts: dict[str, Any] = dict(props)
    for key in JSON_KEYS:
        if key in props:
            try:
                facts[key] = json.loads(props[key])
            except json.JSONDecodeError:
                raise BundleError(f"{path!r}: its {key!r} metadata is not valid JSON; the file is damaged, export "
                                  "it again.") from None
    for key in ("classes", "modality", "preprocessing", "inputs"):
        if key not in facts:
            raise BundleError(f"{path!r}: its {key!r} metadata is missing; the file is damaged, export it again.")
    return facts
