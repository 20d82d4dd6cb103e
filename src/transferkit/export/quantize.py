"""int8 quantisation of an exported graph with onnxruntime.quantization.

Two recipes, after onnxruntime's own guidance ("Quantize ONNX models", onnxruntime.ai/docs/performance/
model-optimizations/quantization.html): CNNs are quantised *statically* — weights per output channel (int8,
symmetric), activations per tensor (uint8) with ranges measured on calibration inputs by running the float graph
(MinMax), written as QDQ pairs that onnxruntime fuses into integer kernels. Transformers are quantised
*dynamically* — the weights of every MatMul/Gemm per channel, activation ranges computed per batch at run time,
so no calibration is needed; the embeddings stay float (a lookup gains nothing from int8). The graph is first
run through onnxruntime's pre-processing (shape inference, constant folding, Conv+BatchNorm fusion), as it asks.

The classifier head (everything after the pooled features) stays float in both: it costs nothing next to the
backbone, and quantising the features it reads flipped decisions on borderline items. Whether the int8 file is
good enough is measured afterwards on real inputs (:mod:`transferkit.export.writer`), never assumed.
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


def quantize_static_qdq(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], work: Path,
                        exclude: list[str] | None = None) -> dict[str, Any]:
    """Static QDQ int8 of the image graph ``src`` into ``dst``, calibrated on ``feeds`` (equal-size batches).

    Returns:
        What was done, for the file's ``quantization`` metadata.
    """
    quantization = require("onnxruntime.quantization", "onnx", "`quantize='int8'`", package="onnxruntime")
    with _quiet():
        pre = _preprocessed(src, work, symbolic=True)
        excluded = _head_nodes(pre) + list(exclude or [])
        reader: Any = _Batches(feeds)
        quantization.quantize_static(
            str(pre), str(dst), reader, quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=excluded)
    return {"method": "static", "format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor",
            "calibration": "MinMax", "calibration_items": int(sum(len(next(iter(f.values()))) for f in feeds)),
            "float_nodes": len(excluded)}


def quantize_dynamic_matmul(src: Path, dst: Path, work: Path) -> dict[str, Any]:
    """Dynamic int8 of the MatMul/Gemm weights of the text graph ``src`` into ``dst``."""
    quantization = require("onnxruntime.quantization", "onnx", "`quantize='int8'`", package="onnxruntime")
    with _quiet():
        pre = _preprocessed(src, work, symbolic=False)
        quantization.quantize_dynamic(str(pre), str(dst), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                                      weight_type=quantization.QuantType.QInt8, nodes_to_exclude=_head_nodes(pre))
    return {"method": "dynamic", "weights": "int8 per channel (MatMul, Gemm)",
            "activations": "uint8, ranges per batch at run time"}
