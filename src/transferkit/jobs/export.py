"""``transferkit export``: a bundle as an ONNX file (float32 or int8), checked against the bundle on real inputs
before it is written (:func:`transferkit.export.export_onnx`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import TransferkitError
from ..export import export_onnx
from ..export.writer import DEFAULT_OPSET

FORMATS = ("onnx",)


@dataclass
class ExportConfig:
    """Everything ``transferkit export`` needs.

    Attributes:
        bundle: bundle directory written by ``fit`` or ``pretrain``.
        out: the ``.onnx`` file to write (a text model's tokenizer goes beside it, into ``<name>.tokenizer/``).
        format: ``onnx`` (the only one so far).
        quantize: None (float32) or ``int8``.
        calibration: real inputs to calibrate int8 on and to check the export with, needed for ``int8``: labelled
            DATA as ``evaluate`` reads it, a flat folder of images, or a ``.txt`` of texts.
        calibration_size: at most this many items calibrate int8 (image models; at most half of ``calibration``).
        check_size: at most this many other items check the export.
        opset: ONNX opset.
        exporter: ``torchscript`` or ``dynamo``.
        force: write an int8 file that fails the agreement or accuracy checks anyway.
        batch_size: items per batch while checking.
        seed: seeds the split of ``calibration``.
        text_column, label_column, encoding: how a text ``calibration`` file is read.
        commercial: the file is for commercial use: refuse a bundle whose recorded licence chain (a distilled
            model's teacher included) holds a non-commercial or unknown licence, before anything is exported.
        qat_steps: image int8: quantization-aware fine-tuning steps on the calibration images first (0: none).
    """

    bundle: str
    out: str
    format: str = "onnx"
    quantize: str | None = None
    calibration: str | None = None
    calibration_size: int = 200
    check_size: int = 500
    opset: int = DEFAULT_OPSET
    exporter: str = "torchscript"
    force: bool = False
    batch_size: int = 32
    seed: int = 0
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    commercial: bool = False
    qat_steps: int = 0


def export_bundle(cfg: ExportConfig) -> dict[str, Any]:
    """Export ``cfg.bundle`` as ``cfg.format``; :func:`~transferkit.export.export_onnx`'s report.

    Raises:
        TransferkitError: an unknown format, or whatever :func:`~transferkit.export.export_onnx` refuses.
    """
    if cfg.format not in FORMATS:
        raise TransferkitError(f"`format` must be one of: {', '.join(FORMATS)}. Got {cfg.format!r} instead.")
    if cfg.commercial:
        from ..backbones import require_commercial_backbone

        require_commercial_backbone(f"bundle:{cfg.bundle}")
    return export_onnx(cfg.bundle, cfg.out, quantize=cfg.quantize, calibration=cfg.calibration,
                       calibration_size=cfg.calibration_size, check_size=cfg.check_size, opset=cfg.opset,
                       exporter=cfg.exporter, force=cfg.force, batch_size=cfg.batch_size, seed=cfg.seed,
                       text_column=cfg.text_column, label_column=cfg.label_column, encoding=cfg.encoding,
                       qat_steps=cfg.qat_steps)
