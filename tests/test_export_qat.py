"""Quantization-aware fine-tuning before int8 (``export_onnx(..., qat_steps=N)``, :mod:`transferkit.export.qat`):
the fake-quant student is the float network when its rounding is off and stays on the int8 grid when it is on,
tuning lowers its distance to the float model, the tuned trunk goes back to plain modules, and the export records
what was done and measures int8 against the ORIGINAL bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.cli import main
from transferkit.export import export_onnx
from transferkit.export.graph import build_graph
from transferkit.export.qat import FakeQuantTrunk, FoldedConv, qat_tune

from .test_export import bundle, images, props  # noqa: F401  (fixtures)

pytest.importorskip("onnxruntime")


def graph_and_pixels(bundle: Path) -> tuple[torch.nn.Module, torch.Tensor]:  # noqa: F811
    model = tk.load_bundle(bundle, progress=False, cache=False, device="cpu")
    graph, _ = build_graph(model, str(bundle))
    c, h, w = model.backbone_.preprocessing.input_size
    return graph, torch.randn(12, c, h, w, generator=torch.Generator().manual_seed(1))


def test_the_student_is_the_float_network_without_rounding_and_on_the_int8_grid_with_it(bundle: Path):  # noqa: F811
    graph, x = graph_and_pixels(bundle)
    student = FakeQuantTrunk(graph.trunk)
    assert student.folded > 0
    student.calibrate([x[:6], x[6:]])
    with torch.no_grad():
        float_features = graph.trunk(x)
        student.set_quantization(False)
        torch.testing.assert_close(student(x), float_features, atol=1e-4, rtol=1e-4)  # the folding is exact
        student.set_quantization(True)
        rounded = student(x)
    assert not torch.allclose(rounded, float_features)
    # the pooled features are uint8-rounded: at most 256 distinct values
    assert len(torch.unique(rounded)) <= 256
    conv = next(m for m in student.modules() if isinstance(m, FoldedConv))
    with torch.no_grad():
        weight, _ = conv.folded()
    steps = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert torch.allclose(weight / steps, torch.round(weight / steps), atol=1e-3)  # int8 multiples per channel


def test_tuning_brings_the_rounded_network_closer_and_leaves_the_original_alone(bundle: Path):  # noqa: F811
    graph, x = graph_and_pixels(bundle)
    before = {k: v.clone() for k, v in graph.state_dict().items()}
    tuned, facts = qat_tune(graph.trunk, graph.head.head, x.numpy(), 12, lr=1e-3, batch_size=12)
    assert np.mean(facts["loss_last"]) < np.mean(facts["loss_first"])
    assert all(torch.equal(before[k], v) for k, v in graph.state_dict().items())  # a copy was tuned
    assert not any(isinstance(m, FoldedConv) for m in tuned.modules())  # plain modules again
    assert type(tuned) is type(graph.trunk)
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, before[f"trunk.{k}"])]
    assert changed and all(k.endswith(("weight", "bias")) for k in changed)  # BatchNorm statistics stay frozen


def test_the_export_records_the_tuning_and_checks_against_the_original(bundle: Path, images: Path,  # noqa: F811
                                                                       tmp_path: Path, monkeypatch):
    plain = export_onnx(bundle, tmp_path / "plain.onnx", quantize="int8", calibration=images, calibration_size=8)
    out = tmp_path / "qat.onnx"
    report = export_onnx(bundle, out, quantize="int8", calibration=images, calibration_size=8, qat_steps=4)
    qat = report["quantization"]["qat"]
    assert qat["steps"] == 4 and qat["items"] == 8 and qat["folded_convs"] > 0
    assert json.loads(props(out)["quantization"])["qat"] == qat
    assert report["parity"]["int8_agreement"] >= plain["parity"]["int8_agreement"]

    # agreement is with the bundle, not with the tuned graph: a tuning that wrecks the weights shows as disagreement
    from transferkit.export import qat as qat_module
    from transferkit.export import writer

    wreck = qat_module.qat_graph
    monkeypatch.setattr(writer, "qat_graph", lambda *a, **k: wreck(*a, **k, lr=1.0))
    wrecked = export_onnx(bundle, tmp_path / "w.onnx", quantize="int8", calibration=images, calibration_size=8,
                          qat_steps=4, force=True)
    assert wrecked["quantization"]["calibration_agreement"] < 0.9 and wrecked["parity"]["int8_agreement"] < 0.9


def test_bad_qat_requests_are_one_line_errors(bundle: Path, images: Path, tmp_path: Path, capsys):  # noqa: F811
    assert main(["export", str(bundle), "--out", str(tmp_path / "q.onnx"), "--qat-steps", "3"]) == 2
    assert "qat" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(bundle), "--out", str(tmp_path / "q.onnx"), "--qat-steps", "-1"])
