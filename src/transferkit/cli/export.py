"""``transferkit export BUNDLE --format onnx [--quantize int8 --calibration DATA] --out FILE``: the job is
:func:`transferkit.jobs.export.export_bundle`."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ..export.writer import DEFAULT_OPSET, EXPORTERS
from ..jobs.export import FORMATS, ExportConfig, export_bundle
from ._common import add_text_options, emit, non_negative_int, positive_int, print_warnings


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a bundle to ONNX (float32 or int8), checked against the bundle")
    p.add_argument("bundle", help="bundle directory written by `transferkit fit`")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the .onnx file to write; a text model's tokenizer goes beside it into <name>.tokenizer/")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default: onnx)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8 (needs --calibration): static QDQ for image models, dynamic for text models")
    p.add_argument("--calibration", metavar="DATA", default=None,
                   help="real inputs to calibrate int8 on and to check the export with (needed for --quantize): "
                        "labelled DATA as `evaluate` reads it, or a flat folder of images, or a .txt of texts")
    p.add_argument("--calibration-size", type=positive_int, default=200, metavar="N",
                   help="at most N items calibrate int8 (at most half of DATA; the rest check it; default 200)")
    p.add_argument("--check-size", type=positive_int, default=500, metavar="N",
                   help="at most N items check the export (default 500)")
    p.add_argument("--qat-steps", type=non_negative_int, default=0, metavar="N",
                   help="image int8: first fine-tune a copy of the backbone N steps on the calibration images so its "
                        "int8 form agrees with the bundle (quantization-aware distillation; experimental: minutes on a CPU, "
                        "+0.4 points of agreement measured)")
    p.add_argument("--force", action="store_true",
                   help="write an int8 file even when it fails the agreement (99%%) or accuracy (1 point) checks")
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                   help="torch's TorchScript exporter (default) or the torch.export-based dynamo exporter")
    p.add_argument("--batch-size", type=positive_int, default=32, help="items per batch while checking")
    p.add_argument("--commercial", action="store_true",
                   help="the file is for commercial use: refuse a bundle whose licence chain is non-commercial or "
                        "unknown")
    add_text_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = ExportConfig(bundle=args.bundle, out=args.out, format=args.format, quantize=args.quantize,
                       calibration=args.calibration, calibration_size=args.calibration_size,
                       check_size=args.check_size, opset=args.opset, exporter=args.exporter, force=args.force,
                       batch_size=args.batch_size, text_column=args.text_column, label_column=args.label_column,
                       encoding=args.encoding, commercial=args.commercial,
                       qat_steps=args.qat_steps)
    emit(args, export_bundle(cfg), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    parity = r["parity"]
    kind = "int8" if r["quantize"] else "float32"
    console.print(f"[bold]{r['onnx']}[/bold]: {kind} ONNX (opset {r['opset']}, {r['size_bytes'] / 1e6:.1f} MB) of "
                  f"{r['bundle']}; inputs {', '.join(r['inputs'])} -> probabilities of {len(r['classes'])} classes")
    if r["tokenizer"]:
        console.print(f"tokenizer: {r['tokenizer']} (keep it beside the .onnx file)")
    where = "real inputs" if parity["inputs"] == "real" else "random inputs (pass --calibration DATA for real ones)"
    console.print(f"float32 vs bundle on {parity['check_items']} {where}: max |Δp| {parity['fp32_max_abs_diff']:.1e}")
    if "int8_agreement" in parity:
        line = (f"int8 vs bundle: top-1 agreement {100 * parity['int8_agreement']:.1f}%, max |Δp| "
                f"{parity['int8_max_abs_diff']:.3f}")
        if "accuracy_drop" in parity:
            line += (f", accuracy {parity['accuracy_bundle']:.4f} -> {parity['accuracy_int8']:.4f} "
                     f"({-100 * parity['accuracy_drop']:+.1f} points)")
        console.print(line)
    quantization = r["quantization"]
    if "recipe" in quantization:
        console.print(f"int8 recipe: {quantization['recipe']} ({quantization['method']}), chosen on "
                      f"{quantization['calibration_items']} calibration items: agreement "
                      f"{100 * quantization['calibration_agreement']:.1f}% ({len(quantization['tries'])} tried)")
    print_warnings(console, r["warnings"])
