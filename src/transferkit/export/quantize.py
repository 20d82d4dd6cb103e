"""int8 quantisation of an exported graph with onnxruntime.quantization.

Two recipes, after onnxruntime's own guidance ("Quantize ONNX models", onnxruntime.ai/docs/performance/
model-optimizations/quantization.html): CNNs are quantised *statically* — weights per output channel (int8,
symmetric), activations per tensor (uint8) with ranges measured on calibration inputs by running the float graph
(MinMax), written as QDQ pairs that onnxruntime fuses into integer kernels. Transformers are quantised
*dynamically* — the weights of every MatMul/Gemm per channel, activation ranges computed per batch at run time,
so no calibration is needed; the embeddings stay float (a lookup gains nothing from int8). The graph is first
run through onnxruntime's pre-processing (shape inference, constant folding, Conv+BatchNorm fusion), as it asks.

The classifier head (everything after the pooled features) stays float in both: it costs nothing next to the
backbone. A CNN's first layer groups stay float too when int8 there changes decisions (:func:`quantize_static_qdq`).
Whether the int8 file is good enough is measured afterwards on held-out real inputs
(:mod:`transferkit.export.writer`), never assumed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._extras import require

#: nodes the exporter names under the graph's ``head`` module (TorchScript exporter: ``/head/...``)
HEAD_PREFIX = "/head/"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice through the root logger at WARNING; keep the terminal clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _preprocessed(src: Path, work: Path, symbolic: bool) -> Path:
    """onnxruntime's pre-processing of ``src`` (or ``src`` itself where it fails: it is an optimisation).

    ``symbolic``: also onnxruntime's symbolic shape inference, which CNN graphs need for QDQ; on transformer graphs
    it gives up (and leaves a file in the working directory), and ONNX's own shape inference is enough there."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / f"{src.stem}.pre.onnx"
    try:
        quant_pre_process(str(src), str(out), skip_symbolic_shape=not symbolic)
    except Exception:  # pre-processing is an optimisation; quantisation works without it
        return src
    return out


def _head_nodes(path: Path) -> list[str]:
    onnx = require("onnx", "onnx", "ONNX export")
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.name.startswith(HEAD_PREFIX)]


class _Batches:
    """onnxruntime's ``CalibrationDataReader``: one feed dict per call, None at the end."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # pragma: no cover - called by some calibrators after a single pass
        pass


def node_prefixes(module: str, root: str = "trunk") -> str:
    """The prefix of the ONNX node names the TorchScript exporter gives the ops of ``module`` (a dotted name under
    the graph's ``root`` module): ``blocks.1`` → ``/trunk/blocks/blocks.1/``."""
    parts = module.split(".")
    return "/" + "/".join([root, *(".".join(parts[:i + 1]) for i in range(len(parts)))]) + "/"


def quantize_static_qdq(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], work: Path,
                        groups: list[tuple[str, list[str]]], min_agreement: float) -> dict[str, Any]:
    """Static QDQ int8 of the image graph ``src`` into ``dst``, calibrated on ``feeds``.

    The backbone's first layer groups are the most sensitive to int8 (few channels at full resolution, read straight
    from the normalised pixels: on EfficientNet-Lite0 keeping the stem and two blocks float took top-1 agreement on
    Fashion-MNIST from 97 % to 99 % for 10 % of int8's speed-up). So groups are kept float from the input side, one
    more per try, until the int8 graph agrees with the float one on ``min_agreement`` of the calibration items
    (at most half the groups; the held-out check in the writer has the last word).

    Args:
        groups: the backbone's layer groups, input first: ``(name, [module names under the trunk])``.

    Returns:
        What was done, for the file's ``quantization`` metadata (``float_groups``: the groups kept float,
        ``tries``: each try's agreement on the calibration items).
    """
    ort = require("onnxruntime", "onnx", "`quantize='int8'`")
    quantization = require("onnxruntime.quantization", "onnx", "`quantize='int8'`", package="onnxruntime")
    with _quiet():
        pre = _preprocessed(src, work, symbolic=True)
        onnx = require("onnx", "onnx", "ONNX export")
        nodes = [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node]
        reference = _run(ort, pre, feeds)
        tries: list[dict[str, Any]] = []
        for k in range(len(groups) // 2 + 1):
            prefixes = tuple(node_prefixes(m) for _, modules in groups[:k] for m in modules)
            excluded = [n for n in nodes if n.startswith(HEAD_PREFIX) or (prefixes and n.startswith(prefixes))]
            if tries and len(excluded) == tries[-1]["float_nodes"]:
                continue  # names the exporter did not give (the dynamo exporter): nothing more to keep float
            quantization.quantize_static(
                str(pre), str(dst), _Batches(feeds), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=excluded)
            agreement = float(np.mean(_run(ort, dst, feeds).argmax(1) == reference.argmax(1)))
            tries.append({"float_groups": [g for g, _ in groups[:k]], "float_nodes": len(excluded),
                          "calibration_agreement": round(agreement, 6)})
            if agreement >= min_agreement:
                break
    return {"method": "static", "format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor",
            "calibration": "MinMax", "calibration_items": int(sum(len(next(iter(f.values()))) for f in feeds)),
            "float_groups": tries[-1]["float_groups"], "float_nodes": tries[-1]["float_nodes"], "tries": tries}


def _run(ort: Any, path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def quantize_dynamic_matmul(src: Path, dst: Path, work: Path) -> dict[str, Any]:
    """Dynamic int8 of the MatMul/Gemm weights of the text graph ``src`` into ``dst``."""
    quantization = require("onnxruntime.quantization", "onnx", "`quantize='int8'`", package="onnxruntime")
    with _quiet():
        pre = _preprocessed(src, work, symbolic=False)
        quantization.quantize_dynamic(str(pre), str(dst), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                                      weight_type=quantization.QuantType.QInt8, nodes_to_exclude=_head_nodes(pre))
    return {"method": "dynamic", "weights": "int8 per channel (MatMul, Gemm)",
            "activations": "uint8, ranges per batch at run time"}
