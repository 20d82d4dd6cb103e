"""``export_onnx``: a bundle as one ONNX file (+ its tokenizer beside it), checked against the bundle before it is
written.

The graph (:mod:`.graph`) is traced by torch's TorchScript exporter by default (``exporter='torchscript'``: in our
tests it exported every bundle 4-6x faster than the torch.export-based ``dynamo`` exporter, which is kept as the
alternative), batch (and text length) dynamic. Then onnxruntime runs the file on real inputs and its probabilities
are compared with the bundle's own ``predict_proba`` on the same files — end to end, preprocessing and head
included:

- float32: the largest absolute difference of any probability must be <= :data:`FP32_TOLERANCE` (1e-4); more is a
  bug of the exporter or of transferkit, and the export fails, writing nothing;
- int8 (``quantize='int8'``, :mod:`.quantize`): on labelled check items, accuracy may drop by at most
  :data:`INT8_MAX_ACCURACY_DROP` (1 point), and a top-1 agreement with the bundle below :data:`INT8_MIN_AGREEMENT`
  (99 %) is a warning; on unlabelled ones, agreement is all there is to judge by, and it must reach 99 %. A failed
  check fails the export with the numbers, unless ``force=True``, which writes the file anyway and says so in
  ``warnings``. (Agreement alone would refuse most int8 models: on our benchmarks it was 96-98 % with accuracy
  unchanged, the flips being near-ties of a model right 60-80 % of the time; bench/README.md.)

The check items are real inputs from ``calibration`` (a DATA path or dataset, labelled or not): int8 calibrates on
up to ``calibration_size`` of them (a seeded random half at most) and every export is checked on the others (up to
``check_size``), so int8 is never judged on the images it was calibrated on. Without ``calibration`` (float32
only) the graph is checked on random inputs against the bundle's backbone and head. Nothing is written until the
checks pass; then the tokenizer folder and the ``.onnx`` file are moved into place, the file last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._errors import BundleError, DataError, TransferkitError
from .._extras import require
from .._utils import sha256_file
from .._version import __version__
from ..bundle import META_FILE, load_bundle, read_meta
from ..data import ImageDataset, open_dataset
from ..data.sources import visible_files
from ..strategies._base import as_dataset
from .checks import compare, random_reference
from .graph import OUTPUT, build_graph
from .metadata import onnx_module, stamp
from .qat import qat_graph
from .quantize import quantize_dynamic_matmul, quantize_static_qdq
from .runtime import ONNX_SUFFIX, OnnxClassifier, tokenizer_folder

FP32_TOLERANCE = 1e-4
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_ACCURACY_DROP = 0.01
#: how far int8 must agree with float32 on its own calibration items for a recipe to be chosen (:mod:`.quantize`)
CALIBRATION_AGREEMENT = 0.99
DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
QUANTIZE = ("int8",)


def export_onnx(bundle: str | os.PathLike[str], out: str | os.PathLike[str], *, quantize: str | None = None,
                calibration: Any = None, calibration_size: int = 200, check_size: int = 500,
                opset: int = DEFAULT_OPSET, exporter: str = "torchscript", force: bool = False, batch_size: int = 32,
                seed: int = 0, text_column: str = "text", label_column: str = "label",
                encoding: str = "utf-8", qat_steps: int = 0) -> dict[str, Any]:
    """Export a bundle to ONNX: preprocessed inputs → class probabilities, one graph, batch dynamic.

    Args:
        bundle: the bundle directory.
        out: the ``.onnx`` file to write; a text model's tokenizer goes beside it, into ``<name>.tokenizer/``.
        quantize: None (float32) or ``int8`` (static QDQ for image graphs, dynamic for text graphs).
        calibration: real inputs to calibrate int8 on and to check the export with, needed for
            ``quantize='int8'``: labelled DATA as ``evaluate`` reads it, unlabelled images (a flat folder) or texts
            (a ``.txt``), or a dataset.
        calibration_size: at most this many items calibrate int8 (and at most half of ``calibration``).
        check_size: at most this many other items check the export.
        opset: the ONNX opset to export with.
        exporter: ``torchscript`` (default) or ``dynamo`` (torch.export-based, needs onnxscript).
        force: write an int8 file that fails its check anyway (with a warning).
        batch_size: items per batch while checking.
        seed: seeds the split of ``calibration`` and the random check inputs.
        text_column, label_column, encoding: how a text ``calibration`` file is read.
        qat_steps: image int8 only: first fine-tune a copy of the backbone for this many steps on the calibration
            images so that its int8 form agrees with the bundle (:mod:`.qat`; 0: no fine-tuning). Minutes on a CPU.

    Returns:
        ``{"onnx", "tokenizer", "bundle", "format", "quantize", "modality", "inputs", "outputs", "classes",
        "opset", "exporter", "size_bytes", "parity", "quantization", "warnings", "seconds"}``; ``parity`` holds
        ``inputs`` (``real`` or ``random``), ``check_items``, ``fp32_max_abs_diff`` and, for int8,
        ``int8_agreement``, ``int8_max_abs_diff``, ``calibration_items`` and with labels ``accuracy_bundle``,
        ``accuracy_int8``, ``accuracy_drop``; for int8, ``quantization`` holds the ``recipe`` chosen on the
        calibration items, its ``calibration_agreement``, the ``criterion`` and every try (:mod:`.quantize`).

    Raises:
        BundleError: the bundle cannot be exported (an audio or word-vector bundle, a tree-ensemble head) or the
            exported graph does not reproduce it.
        TransferkitError: bad parameters, or int8 below the thresholds without ``force``.

    Example:
        >>> export_onnx("runs/pets", "pets.onnx", quantize="int8", calibration="pets/")["parity"]["int8_agreement"]
        0.995
    """
    start = time.perf_counter()
    out = Path(out)
    _check_parameters(out, quantize, exporter, calibration, calibration_size, check_size)
    if isinstance(qat_steps, bool) or not isinstance(qat_steps, int) or qat_steps < 0:
        raise TransferkitError(f"`qat_steps` must be a non-negative integer. Got {qat_steps!r} instead.")
    if qat_steps and quantize is None:
        raise TransferkitError("`qat_steps` tunes the model for int8; pass `quantize='int8'` with it.")
    onnx = onnx_module()
    model = load_bundle(bundle, device="cpu", cache=False, progress=False, batch_size=batch_size)
    if qat_steps and model.modality_ != "image":  # before any export work
        raise TransferkitError(f"`qat_steps` applies to image bundles; {str(bundle)!r} is a {model.modality_} bundle. "
                               "Leave it out.")
    graph, example = build_graph(model, str(bundle))
    data = _calibration(calibration, model.modality_, text_column, label_column, encoding)
    calib, check = _split(data, quantize is not None, calibration_size, check_size, seed)
    facts = _facts(bundle, model, list(example), exporter)
    out.parent.mkdir(parents=True, exist_ok=True)
    warn: list[str] = []
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        work = Path(tmp)
        tokenizer = _write_tokenizer(model, work / "tokenizer") if model.modality_ == "text" else None
        if tokenizer is not None:
            facts["tokenizer"] = {"dir": tokenizer_folder(out).name, "files": _checksums(tokenizer)}
        raw = work / "fp32.raw.onnx"
        _torch_export(graph, example, raw, opset, exporter, str(bundle))
        facts["opset"] = _opset(onnx.load(str(raw), load_external_data=False))
        fp32 = _stamped(onnx, raw, work / "fp32.onnx", {**facts, "quantization": {"method": "none"}})
        runner = OnnxClassifier(fp32, device="cpu", batch_size=batch_size, progress=False, tokenizer_dir=tokenizer)
        if check is not None:
            reference = model.predict_proba_details(check)
            fp32_result = compare(reference, runner.predict_proba_details(check), check, facts["classes"])
        else:
            reference, fp32_result = None, random_reference(model, runner, example, seed)
        parity: dict[str, Any] = {"inputs": "real" if check is not None else "random",
                                  "check_items": fp32_result["items"], "fp32_max_abs_diff": fp32_result["max_abs_diff"]}
        if fp32_result["max_abs_diff"] > FP32_TOLERANCE:
            raise BundleError(f"The exported graph's probabilities differ from bundle {str(bundle)!r}'s by up to "
                              f"{fp32_result['max_abs_diff']:.2e} (> {FP32_TOLERANCE:g}) on {fp32_result['items']} "
                              f"items; nothing was written. Try `exporter='dynamo'`, and please report it.")
        final, quantization = fp32, dict[str, Any](method="none")
        if quantize is not None:
            assert check is not None and reference is not None
            quantized = work / "int8.raw.onnx"
            if model.modality_ == "image":
                feeds = _feeds(runner, calib)
                source, tuning = fp32, None
                if qat_steps:
                    tuned, tuning = qat_graph(graph, np.concatenate([f["pixels"] for f in feeds]), qat_steps,
                                              seed=seed)
                    source = work / "qat.raw.onnx"
                    _torch_export(tuned, example, source, opset, exporter, str(bundle))
                quantization = quantize_static_qdq(source, quantized, feeds, work, model.backbone_._group_names,
                                                   CALIBRATION_AGREEMENT, reference=fp32)
                if tuning is not None:
                    quantization["qat"] = tuning
            else:
                quantization = quantize_dynamic_matmul(fp32, quantized, work, _feeds(runner, calib),
                                                       CALIBRATION_AGREEMENT)
            final = _stamped(onnx, quantized, work / "int8.onnx", {**facts, "quantization": quantization})
            int8 = OnnxClassifier(final, device="cpu", batch_size=batch_size, progress=False, tokenizer_dir=tokenizer)
            result = compare(reference, int8.predict_proba_details(check), check, facts["classes"])
            parity.update(_int8_parity(result, quantization))
            failures, notes = _int8_verdict(parity)
            if failures and not force:
                raise TransferkitError(f"The int8 model {'; '.join(failures)} ({result['items']} items); nothing "
                                       "was written. Calibrate on more (or more typical) inputs with "
                                       "`calibration`, export float32 (no `quantize`), or write it anyway with "
                                       "`force=True`.")
            warn += notes + [f"int8 written although it {f}" for f in failures]
        if "accuracy_bundle" in fp32_result:
            parity.update(accuracy_bundle=fp32_result["accuracy_bundle"], accuracy_fp32=fp32_result["accuracy_onnx"])
        stamped = _stamped(onnx, final, work / "final.onnx", {**facts, "quantization": quantization, "parity": parity})
        if tokenizer is not None:
            _replace_folder(tokenizer, tokenizer_folder(out), work)
        os.replace(stamped, out)  # last: a reader finds the new file with its tokenizer already in place
    return {"onnx": str(out), "tokenizer": str(tokenizer_folder(out)) if tokenizer is not None else None,
            "bundle": str(bundle), "format": "onnx", "quantize": quantize, "modality": model.modality_,
            "inputs": list(example), "outputs": [OUTPUT], "classes": facts["classes"], "opset": facts["opset"],
            "exporter": exporter, "size_bytes": out.stat().st_size, "parity": parity, "quantization": quantization,
            "warnings": warn, "seconds": round(time.perf_counter() - start, 2)}


def _check_parameters(out: Path, quantize: str | None, exporter: str, calibration: Any, calibration_size: int,
                      check_size: int) -> None:
    if out.suffix.lower() != ONNX_SUFFIX:
        raise TransferkitError(f"`out` must be a file name ending in .onnx. Got {str(out)!r} instead.")
    if out.is_dir():
        raise TransferkitError(f"`out` is a folder ({str(out)!r}); give the .onnx file to write.")
    if quantize not in (None, *QUANTIZE):
        raise TransferkitError(f"`quantize` must be one of: {', '.join(QUANTIZE)} (or None for float32). Got "
                               f"{quantize!r} instead.")
    if exporter not in EXPORTERS:
        raise TransferkitError(f"`exporter` must be one of: {', '.join(EXPORTERS)}. Got {exporter!r} instead.")
    if quantize is not None and calibration is None:
        raise TransferkitError(f"`quantize={quantize!r}` needs `calibration`: real inputs (e.g. a few hundred of "
                               "your images or texts, labelled or not) that int8 is calibrated and checked on.")
    for name, value in (("calibration_size", calibration_size), ("check_size", check_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TransferkitError(f"`{name}` must be a positive integer. Got {value!r} instead.")


def _calibration(calibration: Any, modality: str, text_column: str, label_column: str, encoding: str) -> Any:
    if calibration is None:
        return None
    if isinstance(calibration, (str, os.PathLike)):
        folder = Path(calibration)
        if folder.is_dir() and not any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir()):
            calibration = ImageDataset(visible_files(folder), None, [], name=str(folder))  # unlabelled images
        else:
            calibration = open_dataset(calibration, text_column=text_column, label_column=label_column,
                                       encoding=encoding)
    return as_dataset(calibration, modality=modality)


def _split(data: Any, calibrates: bool, calibration_size: int, check_size: int, seed: int) -> tuple[Any, Any]:
    """``(calibration items, check items)``: a seeded shuffle; int8 calibrates (and chooses its recipe) on at most half of it."""
    if data is None:
        return None, None
    order = np.random.default_rng(seed).permutation(len(data))
    if not calibrates:
        return None, data.subset(order[:check_size])
    if len(data) < 2:
        raise DataError(f"`calibration` holds {len(data)} item; int8 needs at least 2 (some to calibrate on, others "
                        "to check it with), better a few hundred.")
    n_calib = min(calibration_size, len(data) // 2)
    return data.subset(order[:n_calib]), data.subset(order[n_calib:n_calib + check_size])


def _facts(bundle: Any, model: Any, inputs: list[str], exporter: str) -> dict[str, Any]:
    """The file's metadata (:mod:`.metadata`) known before exporting."""
    meta = read_meta(bundle)
    info = meta.get("backbone", {})
    ort = require("onnxruntime", "onnx", "ONNX export")
    return {
        "modality": model.modality_, "classes": [str(c) for c in model.classes_],
        "preprocessing": model.backbone_.preprocessing.to_dict(), "inputs": inputs, "outputs": OUTPUT,
        "backbone": {k: info.get(k) for k in ("spec", "arch_spec", "layer", "num_features", "weights")},
        "licence": meta.get("licence", "unknown"), "strategy": meta.get("strategy"),
        "head": {k: v for k, v in meta.get("head", {}).items() if k in ("name", "type", "estimator")},
        "bundle": Path(bundle).name, "bundle_sha256": sha256_file(Path(bundle) / META_FILE),
        "transferkit_version": __version__, "exporter": exporter,
        "versions": {"torch": torch.__version__, "onnx": onnx_module().__version__,
                     "onnxruntime": ort.__version__},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _torch_export(graph: torch.nn.Module, example: dict[str, torch.Tensor], path: Path, opset: int, exporter: str,
                  bundle: str) -> None:
    names, args = list(example), tuple(example.values())
    text = "pixels" not in example
    axes = {n: ({0: "batch", 1: "sequence"} if text else {0: "batch"}) for n in names} | {OUTPUT: {0: "batch"}}
    # the exporters print progress on stdout, which `--json` keeps for its one object
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr), torch.inference_mode(False):
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings: this use is tested
        try:
            if exporter == "torchscript":
                torch.onnx.export(graph, args, str(path), input_names=names, output_names=[OUTPUT],
                                  dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
            else:
                from torch.export import Dim

                batch, sequence = Dim("batch", min=1, max=1 << 16), Dim("sequence", min=1, max=1 << 16)
                shapes = {n: ({0: batch, 1: sequence} if text else {0: batch}) for n in names}
                torch.onnx.export(graph, args, str(path), input_names=names, output_names=[OUTPUT],
                                  dynamic_shapes=shapes, opset_version=opset, dynamo=True, external_data=False)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            other = "dynamo" if exporter == "torchscript" else "torchscript"
            raise BundleError(f"torch.onnx could not export bundle {bundle!r} with `exporter={exporter!r}` "
                              f"({type(e).__name__}: {first}); try `exporter={other!r}`.") from None


def _opset(model: Any) -> int:
    return int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))


def _stamped(onnx: Any, src: Path, dst: Path, facts: dict[str, Any]) -> Path:
    onnx.save(stamp(onnx.load(str(src)), facts), str(dst))
    return dst


def _feeds(runner: OnnxClassifier, calib: Any) -> list[dict[str, np.ndarray]]:
    """The calibration items as the graph reads them, batch by batch (MinMax keeps only each tensor's range)."""
    feeds = [{k: v.numpy() for k, v in b["inputs"].items()} if isinstance(b["inputs"], dict)
             else {"pixels": b["inputs"].numpy()} for b in runner._batches(calib) if len(b["index"])]
    if not feeds:
        raise DataError("None of the `calibration` items could be read; pass readable images or texts.")
    return feeds


def _int8_parity(result: dict[str, Any], quantization: dict[str, Any]) -> dict[str, Any]:
    parity = {"int8_agreement": result["agreement"], "int8_max_abs_diff": result["max_abs_diff"],
              "calibration_items": quantization.get("calibration_items", 0)}
    if "accuracy_bundle" in result:
        parity.update(accuracy_bundle=result["accuracy_bundle"], accuracy_int8=result["accuracy_onnx"],
                      accuracy_drop=round(result["accuracy_bundle"] - result["accuracy_onnx"], 6))
    return parity


def _int8_verdict(parity: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(failures, warnings)`` of an int8 check: labelled check items are judged by accuracy (an agreement below
    the threshold is then only a warning), unlabelled ones by top-1 agreement, the only signal they give."""
    low_agreement = (f"agrees with the bundle's top-1 class on {100 * parity['int8_agreement']:.1f}% of the check "
                     f"items (< {100 * INT8_MIN_AGREEMENT:.0f}%)")
    if "accuracy_drop" not in parity:
        return ([low_agreement] if parity["int8_agreement"] < INT8_MIN_AGREEMENT else []), []
    failures = []
    if parity["accuracy_drop"] > INT8_MAX_ACCURACY_DROP:
        failures.append(f"loses {100 * parity['accuracy_drop']:.1f} accuracy points on the check items (> "
                        f"{100 * INT8_MAX_ACCURACY_DROP:.0f})")
    notes = [f"int8 {low_agreement}; its accuracy there is {parity['accuracy_int8']:.4f} against the bundle's "
             f"{parity['accuracy_bundle']:.4f}"] if parity["int8_agreement"] < INT8_MIN_AGREEMENT else []
    return failures, notes


def _write_tokenizer(model: Any, folder: Path) -> Path:
    model.backbone_.encoder.tokenizer.save_pretrained(str(folder))
    return folder


def _checksums(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _replace_folder(new: Path, target: Path, work: Path) -> None:
    """Move ``new`` to ``target``, the old ``target`` (if any) out of the way first and deleted with ``work``."""
    if target.is_dir() and not target.is_symlink():
        target.rename(work / "old-tokenizer")
    elif target.exists():
        raise TransferkitError(f"{str(target)!r} exists and is not a folder; the tokenizer of `out` goes there: "
                               "move it, or choose another `out`.")
    shutil.move(str(new), str(target))
