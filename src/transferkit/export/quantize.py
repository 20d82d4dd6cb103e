"""int8 quantisation of an exported graph with onnxruntime.quantization, the recipe chosen on calibration items.

Two methods, after onnxruntime's own guidance ("Quantize ONNX models", onnxruntime.ai/docs/performance/
model-optimizations/quantization.html): CNNs are quantised *statically* — weights per output channel (int8,
symmetric), activations per tensor (uint8) with ranges measured once on calibration inputs by running the float
graph (MinMax), written as QDQ pairs that onnxruntime fuses into integer kernels. Transformers are quantised
*dynamically* — the weights of every MatMul per channel, activation ranges computed per batch at run time; the
embeddings stay float (a lookup gains nothing from int8). The graph is first run through onnxruntime's
pre-processing (shape inference, constant folding, Conv+BatchNorm fusion), as it asks.

Which parts stay float is chosen per file by a criterion that needs no labels: a few recipes, fastest first
(:func:`image_recipes`, :func:`text_recipes`), are written in turn until one agrees with the float graph's top-1
class on :data:`~transferkit.export.writer.CALIBRATION_AGREEMENT` (99 %) of the calibration items; where none does,
the fastest within one standard error of the most agreeing one is kept (:func:`pick_recipe`). The choice and every
try go into the file's ``quantization`` metadata. The classifier head (everything after the pooled features) is
always float: it costs nothing next to the backbone. Whether the int8 file is good enough is then measured on held-out real inputs (:mod:`transferkit.export.writer`), never assumed.

On our benchmarks (bench/README.md, results/export-int8-sensitivity-2026-12-04.json) the int8 error is spread over the whole network
rather than held by a few layers: keeping any one part float removes only its share, so 99 % agreement costs most
of int8's speed-up on models whose decisions are often near-ties.
"""

from __future__ import annotations

import contextlib
import logging
import os
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


def image_recipes(nodes: list[str], groups: list[tuple[str, list[str]]]) -> list[tuple[list[str], list[str]]]:
    """The static recipes tried on an image graph, fastest first: ``(groups kept float, their node names)``.

    The backbone's first layer groups are the most sensitive to int8 (few channels at full resolution, read straight
    from the normalised pixels), so groups are kept float from the input side, one more per recipe, up to half of
    them; the head is always float."""
    recipes: list[tuple[list[str], list[str]]] = []
    for k in range(len(groups) // 2 + 1):
        prefixes = tuple(node_prefixes(m) for _, modules in groups[:k] for m in modules)
        excluded = [n for n in nodes if n.startswith(HEAD_PREFIX) or (prefixes and n.startswith(prefixes))]
        if recipes and len(excluded) == len(recipes[-1][1]):
            continue  # names the exporter did not give (the dynamo exporter): nothing more to keep float
        recipes.append(([g for g, _ in groups[:k]], excluded))
    return recipes


def quantize_static_qdq(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], work: Path,
                        groups: list[tuple[str, list[str]]], min_agreement: float,
                        reference: Path | None = None) -> dict[str, Any]:
    """Static QDQ int8 of the image graph ``src`` into ``dst``, calibrated on ``feeds``.

    The ranges are measured once (MinMax, cached in ``work``); then the recipes of :func:`image_recipes` are written
    in turn until one agrees with the float graph on ``min_agreement`` of the calibration items, the criterion
    that needs no labels; where none does, as :func:`pick_recipe` says (the held-out check in the writer has the
    last word).

    Args:
        groups: the backbone's layer groups, input first: ``(name, [module names under the trunk])``.
        reference: the float graph agreement is measured against, where ``src`` is not it (``src`` tuned for int8
            by :mod:`.qat`: its int8 form must agree with the ORIGINAL float graph).

    Returns:
        What was done, for the file's ``quantization`` metadata (``recipe``, ``float_groups``: the groups kept
        float, ``calibration_agreement``, ``tries``: each recipe's agreement on the calibration items).
    """
    ort = require("onnxruntime", "onnx", "`quantize='int8'`")
    quantization = require("onnxruntime.quantization", "onnx", "`quantize='int8'`", package="onnxruntime")
    onnx = require("onnx", "onnx", "ONNX export")
    with _quiet():
        pre = _preprocessed(src, work, symbolic=True)
        nodes = [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node]

        def write(excluded: list[str], out: Path) -> None:
            quantization.quantize_static(
                str(pre), str(out), _Batches(feeds), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=excluded,
                calibration_cache_path=str(work / "ranges-minmax.json"))

        recipes: list[tuple[str, list[str], dict[str, Any]]] = [
            (f"float {'+'.join(g)}" if g else "int8 throughout", excluded, {"float_groups": g})
            for g, excluded in image_recipes(nodes, groups)]
        chosen = _choose(ort, pre, dst, work, feeds, recipes, write, min_agreement, reference)
    return {"method": "static", "format": "QDQ", "weights": "int8 per channel", "activations": "uint8 per tensor",
            "calibration": "MinMax", "calibration_items": _items(feeds), **chosen}


def _items(feeds: list[dict[str, np.ndarray]]) -> int:
    return int(sum(len(next(iter(f.values()))) for f in feeds))


def _choose(ort: Any, pre: Path, dst: Path, work: Path, feeds: list[dict[str, np.ndarray]],
            recipes: list[tuple[str, list[str], dict[str, Any]]], write: Any, min_agreement: float,
            reference_graph: Path | None = None) -> dict[str, Any]:
    """Write ``recipes`` (``(name, nodes kept float, facts)``, fastest first) with ``write(excluded, path)`` until
    one's top-1 agreement with the float graph ``pre`` on ``feeds`` reaches ``min_agreement``. Where none does, the
    fastest whose agreement is within one standard error of the best one's is kept: a smaller gain on a few hundred
    items is noise, not worth the speed it costs. The chosen file ends in ``dst``. Agreement is with
    ``reference_graph`` where given, else with ``pre``."""
    reference = _run(ort, reference_graph or pre, feeds).argmax(1)
    tries: list[dict[str, Any]] = []
    for i, (name, excluded, facts) in enumerate(recipes):
        write(excluded, work / f"int8-try{i}.onnx")
        agreement = float(np.mean(_run(ort, work / f"int8-try{i}.onnx", feeds).argmax(1) == reference))
        tries.append({"recipe": name, **facts, "float_nodes": len(excluded),
                      "calibration_agreement": round(agreement, 6)})
        if agreement >= min_agreement:
            break
    chosen, noise = pick_recipe([t["calibration_agreement"] for t in tries], len(reference), min_agreement)
    os.replace(work / f"int8-try{chosen}.onnx", dst)
    return {**tries[chosen], "criterion": f"the first recipe (fastest first) agreeing with float32 on >= "
                                          f"{100 * min_agreement:g}% of the calibration items, else the fastest "
                                          f"within one standard error ({100 * noise:.1f} points) of the most agreeing",
            "tries": tries}


def pick_recipe(agreements: list[float], items: int, min_agreement: float) -> tuple[int, float]:
    """``(index, standard error)``: the first of ``agreements`` (recipes fastest first, each measured on ``items``)
    reaching ``min_agreement``, else the first within one standard error of the best.

    Example:
        >>> pick_recipe([0.962, 0.97, 0.972], 200, 0.99)[0]  # 0.972 is 0.972 +- 0.012: no better than 0.962
        0
    """
    best = max(agreements)
    noise = float(np.sqrt(best * (1 - best) / items))
    enough = min_agreement if best >= min_agreement else best - noise
    return next(i for i, a in enumerate(agreements) if a >= enough), noise


def _run(ort: Any, path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def text_recipes(model: Any, nodes: list[str]) -> list[tuple[str, list[str]]]:
    """The dynamic recipes tried on a text graph, fastest first: ``(name, nodes kept float)``.

    A transformer's MatMuls with weights are told apart by their weight's shape, whatever the architecture's names:
    the attention projections are square, the feed-forward block widens then narrows. Kept float in turn: the
    narrowing MatMuls (their input, after GELU, is the widest-ranged activation: the usual first suspect), then the
    whole feed-forward block (two thirds of the MatMul work); the head is always float."""
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    head = [n for n in nodes if n.startswith(HEAD_PREFIX)]
    narrow: list[str] = []
    ffn: list[str] = []
    for node in model.graph.node:
        shape = weights.get(node.input[1], ()) if node.op_type == "MatMul" and len(node.input) > 1 else ()
        if len(shape) == 2 and shape[0] != shape[1] and node.name not in head:
            ffn.append(node.name)
            if shape[0] > shape[1]:
                narrow.append(node.name)
    recipes = [("int8 throughout", head)]
    if narrow:
        recipes += [("float feed-forward out", head + narrow), ("float feed-forward", head + ffn)]
    return recipes


def quantize_dynamic_matmul(src: Path, dst: Path, work: Path, feeds: list[dict[str, np.ndarray]],
                            min_agreement: float) -> dict[str, Any]:
    """Dynamic int8 of the MatMul/Gemm weights of the text graph ``src`` into ``dst``: the recipes of
    :func:`text_recipes` in turn until one agrees with the float graph on ``min_agreement`` of the calibration
    items ``feeds`` (the labelled-free criterion), else as :func:`pick_recipe` says."""
    ort = require("onnxruntime", "onnx", "`quantize='int8'`")
    quantization = require("onnxruntime.quantization", "onnx", "`quantize='int8'`", package="onnxruntime")
    onnx = require("onnx", "onnx", "ONNX export")
    with _quiet():
        pre = _preprocessed(src, work, symbolic=False)
        graph = onnx.load(str(pre), load_external_data=False)
        nodes = [n.name for n in graph.graph.node]

        def write(excluded: list[str], out: Path) -> None:
            quantization.quantize_dynamic(str(pre), str(out), op_types_to_quantize=["MatMul", "Gemm"],
                                          per_channel=True, weight_type=quantization.QuantType.QInt8,
                                          nodes_to_exclude=excluded)

        recipes: list[tuple[str, list[str], dict[str, Any]]] = [
            (name, excluded, {}) for name, excluded in text_recipes(graph, nodes)]
        chosen = _choose(ort, pre, dst, work, feeds, recipes, write, min_agreement)
    return {"method": "dynamic", "weights": "int8 per channel (MatMul, Gemm)",
            "activations": "uint8, ranges per batch at run time", "calibration_items": _items(feeds), **chosen}
