"""``transferkit export`` to ONNX: the graph reproduces the bundle (tiny CNN and tiny BERT, float32 and int8), the
batch is dynamic, the metadata says how to run it, ``predict``/``evaluate`` run the file, and what cannot be
exported is refused in one line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.cli import main
from transferkit.export import OnnxClassifier, export_onnx
from transferkit.export.checks import random_inputs, strategy_proba
from transferkit.export.graph import linear_svm_module

from .conftest import COLORS, make_image, tiny_backbone
from .test_text import make_texts, tiny_bert  # noqa: F401  (a fixture)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``images/<class>/<n>.png``: 3 classes x 8 images."""
    root = tmp_path_factory.mktemp("export-data") / "images"
    for c, (name, color) in enumerate(COLORS.items()):
        (root / name).mkdir(parents=True)
        for i in range(8):
            make_image(color, seed=100 * c + i).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def bundle(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature-extraction bundle: the tiny CNN and the default (tuned logistic) head."""
    torch.manual_seed(0)
    clf = tk.FeatureExtractionClassifier(tiny_backbone(), progress=False, cache=False).fit(tk.from_folder(images))
    return clf.save(tmp_path_factory.mktemp("export-bundle") / "fe")


def props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_float32_export_matches_the_bundle_and_says_how_to_run_it(bundle: Path, images: Path, tmp_path: Path):
    out = tmp_path / "m.onnx"
    report = export_onnx(bundle, out, calibration=images)
    assert report["parity"]["inputs"] == "real" and report["parity"]["check_items"] == 24
    assert report["parity"]["fp32_max_abs_diff"] <= 1e-4
    meta = props(out)
    assert json.loads(meta["classes"]) == ["blue", "green", "red"] and meta["modality"] == "image"
    pre = json.loads(meta["preprocessing"])
    assert pre["input_size"] == [3, 32, 32] and {"mean", "std", "interpolation", "crop_pct"} <= set(pre)
    recorded = json.loads((bundle / "transferkit.json").read_text())
    assert json.loads(meta["backbone"])["spec"] == recorded["backbone"]["spec"] == "timm:test_efficientnet"
    assert meta["licence"] == recorded["licence"] and meta["transferkit_version"] == tk.__version__
    from transferkit._utils import sha256_file

    assert meta["bundle_sha256"] == sha256_file(bundle / "transferkit.json")
    assert json.loads(meta["quantization"]) == {"method": "none"} and int(meta["opset"]) == report["opset"] == 17
    assert json.loads(meta["parity"])["fp32_max_abs_diff"] == report["parity"]["fp32_max_abs_diff"]
    graph_input = onnx.load(str(out)).graph.input[0]
    assert graph_input.name == "pixels"
    assert [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim] == ["batch", 3, 32, 32]


def test_the_batch_is_dynamic(bundle: Path, tmp_path: Path):
    export_onnx(bundle, tmp_path / "m.onnx")  # no data: checked on random inputs
    model = tk.load_bundle(bundle, progress=False, cache=False)
    runner = OnnxClassifier(tmp_path / "m.onnx", progress=False)
    pixels = random_inputs(model, {"pixels": torch.zeros(1, 3, 32, 32)}, seed=1)
    for n in (1, 3, 8):
        got = runner.run({"pixels": pixels["pixels"][:n].numpy()})
        assert got.shape == (n, 3)
        np.testing.assert_allclose(got, strategy_proba(model, {"pixels": pixels["pixels"][:n]}), atol=1e-5)


@pytest.mark.slow  # 8 s on a quiet machine (the torch.export-based exporter is slow); the default is TorchScript
def test_the_dynamo_exporter_is_the_alternative(bundle: Path, images: Path, tmp_path: Path, capsys):
    report = export_onnx(bundle, tmp_path / "d.onnx", calibration=images, exporter="dynamo")
    assert report["exporter"] == "dynamo" and report["parity"]["fp32_max_abs_diff"] <= 1e-4
    assert capsys.readouterr().out == ""  # its progress lines go to stderr: --json keeps stdout for one object


def test_predict_and_evaluate_accept_the_onnx_file(bundle: Path, images: Path, tmp_path: Path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(bundle), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["onnx"] == str(out)
    assert main(["predict", str(out), str(images), "--json", "--no-progress"]) == 0
    onnx_pred = json.loads(capsys.readouterr().out)
    assert main(["predict", str(bundle), str(images), "--json", "--no-progress"]) == 0
    bundle_pred = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in onnx_pred["predictions"]] == [p["label"] for p in bundle_pred["predictions"]]
    for a, b in zip(onnx_pred["predictions"], bundle_pred["predictions"], strict=True):
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) <= 1e-4
    assert main(["evaluate", str(out), str(images), "--json", "--no-progress"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] == tk.evaluate(tk.load_bundle(bundle, progress=False, cache=False),
                                            tk.from_folder(images))["accuracy"]
    assert scores["seen"] is None and Path(scores["confusion_png"]) == tmp_path / "m.evaluation_confusion.png"


def test_int8_is_static_qdq_calibrated_apart_from_its_check_items(bundle: Path, images: Path, tmp_path: Path):
    out = tmp_path / "q.onnx"
    report = export_onnx(bundle, out, quantize="int8", calibration=images, calibration_size=8)
    parity = report["parity"]
    assert parity["calibration_items"] == 8 and parity["check_items"] == 16  # 24 items: 8 calibrate, 16 check
    assert parity["int8_agreement"] >= 0.99 and parity["accuracy_drop"] <= 0.01 and report["warnings"] == []
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    quantization = json.loads(props(out)["quantization"])
    assert quantization["method"] == "static" and quantization["recipe"] == "int8 throughout"
    assert len(quantization["tries"]) == 1 and quantization["calibration_agreement"] >= 0.99  # the first sufficed
    # weights per output channel: every Conv weight's DequantizeLinear has one scale per output channel
    graph = onnx.load(str(out)).graph
    weights = {i.name: i for i in graph.initializer}
    conv_weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
                    and len(weights[n.input[0]].dims) == 4]
    assert conv_weights and all(list(weights[n.input[1]].dims) == [weights[n.input[0]].dims[0]]
                                for n in conv_weights)
    assert (OnnxClassifier(out, progress=False).predict(tk.from_folder(images)) ==
            tk.load_bundle(bundle, progress=False, cache=False).predict(tk.from_folder(images))).all()


def test_without_a_recipe_reaching_the_calibration_threshold_the_most_agreeing_is_kept(
        bundle: Path, images: Path, tmp_path: Path, monkeypatch, capsys):
    from transferkit.export import writer

    monkeypatch.setattr(writer, "CALIBRATION_AGREEMENT", 1.01)  # no recipe can reach it: every one is tried
    out = tmp_path / "q.onnx"
    report = export_onnx(bundle, out, quantize="int8", calibration=images, calibration_size=8)
    tries = report["quantization"]["tries"]
    groups = tk.load_bundle(bundle, progress=False, cache=False).backbone_._group_names
    assert [t["float_groups"] for t in tries] == [[g for g, _ in groups[:k]] for k in range(len(groups) // 2 + 1)]
    assert [t["float_nodes"] for t in tries] == sorted(t["float_nodes"] for t in tries)  # more float, try by try
    best = max(t["calibration_agreement"] for t in tries)
    noise = (best * (1 - best) / 8) ** 0.5  # a smaller gain on 8 items is noise: the fastest within it is kept
    chosen = json.loads(props(out)["quantization"])
    assert chosen == report["quantization"] and "standard error" in chosen["criterion"]
    assert chosen["recipe"] == next(t["recipe"] for t in tries if t["calibration_agreement"] >= best - noise - 1e-9)
    assert "calibration items" in chosen["criterion"] and chosen["calibration_items"] == 8
    capsys.readouterr()
    assert main(["export", str(bundle), "--out", str(tmp_path / "cli.onnx"), "--quantize", "int8", "--calibration",
                 str(images), "--calibration-size", "8", "--no-progress"]) == 0
    assert f"int8 recipe: {chosen['recipe']} (static), chosen on 8 calibration items" in capsys.readouterr().out


@pytest.mark.parametrize("agreements, chosen", [
    ([0.96, 0.975, 0.99], 2),  # the first reaching 99%
    ([0.985, 0.99], 1),  # reaching it beats being close to it
    ([0.962, 0.97, 0.972], 0),  # none does: 0.972 on 200 items is 0.972 +- 0.012, no better than 0.962
    ([0.90, 0.97, 0.972], 1),  # 0.90 is worse beyond noise
])
def test_the_recipe_is_the_fastest_that_agrees_enough(agreements: list[float], chosen: int):
    from transferkit.export.quantize import pick_recipe

    assert pick_recipe(agreements, 200, 0.99)[0] == chosen


def test_int8_below_the_thresholds_is_refused_unless_forced(bundle: Path, images: Path, tmp_path: Path, monkeypatch):
    from transferkit.export import writer

    monkeypatch.setattr(writer, "INT8_MIN_AGREEMENT", 1.01)  # nothing can pass: the refusal and warning paths
    unlabelled = tmp_path / "flat"
    unlabelled.mkdir()
    for p in images.rglob("*.png"):
        (unlabelled / f"{p.parent.name}-{p.name}").write_bytes(p.read_bytes())
    out = tmp_path / "out" / "q.onnx"
    with pytest.raises(tk.TransferkitError, match=r"agrees with the bundle's top-1 class on 100\.0% of the check "
                                                  r"items \(< 101%\) \(12 items\); nothing was written.*force"):
        export_onnx(bundle, out, quantize="int8", calibration=unlabelled)
    assert list(out.parent.iterdir()) == []  # nothing written, no temporaries left
    report = export_onnx(bundle, out, quantize="int8", calibration=unlabelled, force=True)
    assert out.is_file() and report["warnings"][0].startswith("int8 written although it agrees")
    # labelled check items judge by accuracy: low agreement alone is a warning, and the file is written
    monkeypatch.setattr(writer, "INT8_MAX_ACCURACY_DROP", -0.5)
    with pytest.raises(tk.TransferkitError, match=r"loses 0\.0 accuracy points on the check items \(> -50\)"):
        export_onnx(bundle, out, quantize="int8", calibration=images)
    monkeypatch.setattr(writer, "INT8_MAX_ACCURACY_DROP", 0.01)
    report = export_onnx(bundle, out, quantize="int8", calibration=images)
    assert report["warnings"] == ["int8 agrees with the bundle's top-1 class on 100.0% of the check items (< 101%); "
                                  "its accuracy there is 1.0000 against the bundle's 1.0000"]


def test_fine_tuned_and_inner_layer_bundles_export(images: Path, tmp_path: Path):
    data = tk.from_folder(images)
    tuned = tk.FineTuneClassifier(tiny_backbone(), head_epochs=1, epochs=1, batch_size=8, progress=False).fit(data)
    inner = tk.FeatureExtractionClassifier(tiny_backbone(), layer="blocks.1", head="mlp", progress=False,
                                           cache=False).fit(data)
    for name, clf in (("ft", tuned), ("inner", inner)):
        clf.save(tmp_path / name)
        report = export_onnx(tmp_path / name, tmp_path / f"{name}.onnx", calibration=images)
        assert report["parity"]["fp32_max_abs_diff"] <= 1e-4, name


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_temperature_calibrated_linear_svm_becomes_one_linear_layer(n_classes: int):
    from transferkit.heads.tuned import fit_tuned

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12)) + np.repeat(np.arange(n_classes), 60 // n_classes)[:, None] * 0.8
    y = np.repeat(np.arange(n_classes), 60 // n_classes)
    head, _ = fit_tuned("svm", x, y)
    module = linear_svm_module(head)
    assert module is not None
    with torch.no_grad():
        proba = module(torch.as_tensor(x, dtype=torch.float32)).softmax(-1).numpy()
    np.testing.assert_allclose(proba, head.predict_proba(x), atol=1e-5)


def test_a_head_without_a_graph_is_refused_in_one_line(images: Path, tmp_path: Path, capsys):
    clf = tk.FeatureExtractionClassifier(tiny_backbone(), head="random-forest", progress=False, cache=False)
    clf.fit(tk.from_folder(images)).save(tmp_path / "rf")
    assert main(["export", str(tmp_path / "rf"), "--out", str(tmp_path / "rf.onnx")]) == 2
    err = capsys.readouterr().err
    assert "'random-forest' head (RandomForestClassifier)" in err and "--head logistic" not in err
    assert "only logistic, svm, linear, mlp heads export" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rf.onnx").exists()


def test_bad_requests_are_one_line_errors_in_flag_spelling(bundle: Path, tmp_path: Path, capsys):
    assert main(["export", str(bundle), "--out", str(tmp_path / "q.onnx"), "--quantize", "int8"]) == 2
    assert "--quantize int8 needs --calibration" in capsys.readouterr().err
    assert main(["export", str(bundle), "--out", str(tmp_path / "model.bin")]) == 2
    assert "--out must be a file name ending in .onnx" in capsys.readouterr().err
    plain = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(plain), dynamo=False)
    assert main(["predict", str(plain), str(tmp_path)]) == 2
    assert "without transferkit's metadata" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["evaluate", str(tmp_path / "junk.onnx"), "embedded"]) == 2
    assert "is not a readable ONNX file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.onnx"), str(tmp_path)]) == 2
    assert "does not exist; export one with" in capsys.readouterr().err


def test_word_vector_bundles_are_refused(tmp_path: Path):
    vectors = tmp_path / "v.txt"
    words = ["apple", "banana", "engine", "wheel", "the", "a"]
    vectors.write_text("".join(f"{w} {' '.join(str(v) for v in np.eye(6)[i])}\n" for i, w in enumerate(words)))
    clf = tk.FeatureExtractionClassifier(f"vectors:{vectors}", progress=False, cache=False)
    clf.fit(["apple banana", "banana apple", "engine wheel", "wheel engine"], ["fruit", "fruit", "car", "car"])
    clf.save(tmp_path / "vec")
    with pytest.raises(tk.BundleError, match=r"is a word-vector bundle .* cannot export to ONNX; image bundles and "
                                             r"transformer text bundles"):
        export_onnx(tmp_path / "vec", tmp_path / "vec.onnx")


def test_text_bundles_export_with_their_tokenizer_beside(tiny_bert: Path, tmp_path: Path, capsys):  # noqa: F811
    texts, labels = make_texts()
    data = tmp_path / "texts.csv"
    data.write_text("text,label\n" + "\n".join(f"{t},{lab}" for t, lab in zip(texts, labels, strict=True)) + "\n")
    clf = tk.FeatureExtractionClassifier(f"hf:{tiny_bert}", progress=False, cache=False).fit(tk.open_dataset(data))
    clf.save(tmp_path / "tb")
    out = tmp_path / "tb.onnx"
    report = export_onnx(tmp_path / "tb", out, quantize="int8", calibration=data)
    assert report["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert report["tokenizer"] == str(tmp_path / "tb.tokenizer") and (tmp_path / "tb.tokenizer").is_dir()
    assert report["parity"]["fp32_max_abs_diff"] <= 1e-4 and report["parity"]["int8_agreement"] >= 0.99
    quantization = json.loads(props(out)["quantization"])
    assert quantization["method"] == "dynamic" and quantization["recipe"] in [t["recipe"] for t in
                                                                              quantization["tries"]]
    assert quantization["calibration_items"] + report["parity"]["check_items"] == len(texts)  # calibrated apart
    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(out)).graph.node}
    # the recipes tell the feed-forward MatMuls apart by their weights' shapes: BERT's intermediate/output dense
    from transferkit.export.quantize import text_recipes

    export_onnx(tmp_path / "tb", tmp_path / "fp32.onnx")
    graph = onnx.load(str(tmp_path / "fp32.onnx"))
    recipes = dict(text_recipes(graph, [n.name for n in graph.graph.node]))
    assert list(recipes) == ["int8 throughout", "float feed-forward out", "float feed-forward"]
    head = [n.name for n in graph.graph.node if n.name.startswith("/head/")]
    assert recipes["int8 throughout"] == head
    out_only, ffn = set(recipes["float feed-forward out"]) - set(head), set(recipes["float feed-forward"]) - set(head)
    assert out_only and all("/output/dense/" in n and "attention" not in n for n in out_only)
    assert out_only < ffn and all("/intermediate/" in n for n in ffn - out_only)
    lines = tmp_path / "new.txt"
    lines.write_text("the apple is very sweet\ni like this fast car\na juice\n")
    assert main(["predict", str(out), str(lines), "--json", "--no-progress"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["label"] for p in predictions] == list(clf.predict(lines.read_text().splitlines()))
    assert predictions[0]["text"] == "the apple is very sweet"
    # lengths differ by batch: the sequence axis is dynamic too
    runner = OnnxClassifier(out, progress=False, batch_size=2)
    assert runner.predict_proba(["apple", "the apple is very sweet and i like this juice"]).shape == (2, 2)
    vocab = tmp_path / "tb.tokenizer" / "tokenizer.json"
    vocab.write_text(vocab.read_text().replace("apple", "pear"))
    with pytest.raises(tk.BundleError, match=r"tokenizer of .* does not match the file"):
        OnnxClassifier(out)


def test_zero_shot_bundles_export(tiny_bert: Path, tmp_path: Path):  # noqa: F811
    tk.ZeroShotClassifier(f"hf:{tiny_bert}", labels="fruit,car", progress=False, cache=False).fit().save(tmp_path / "z")
    report = export_onnx(tmp_path / "z", tmp_path / "z.onnx")  # no data: random token ids, as a batch and alone
    assert report["parity"]["inputs"] == "random" and report["parity"]["fp32_max_abs_diff"] <= 1e-4
    assert report["classes"] == ["fruit", "car"]


def test_onnx_hint_names_the_onnx_extra(monkeypatch, bundle: Path, tmp_path: Path):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(tk.TransferkitError, match=r"ONNX export needs onnx.*pip install 'transferkit\[onnx\]'"):
        export_onnx(bundle, tmp_path / "m.onnx")


def test_qat_steps_on_a_text_bundle_is_refused_before_any_export(tiny_bert: Path, tmp_path: Path):  # noqa: F811
    texts, labels = make_texts()
    clf = tk.FeatureExtractionClassifier(f"hf:{tiny_bert}", progress=False, cache=False).fit(texts, labels)
    clf.save(tmp_path / "tb")
    with pytest.raises(tk.TransferkitError, match="applies to image bundles; .* is a text bundle"):
        export_onnx(tmp_path / "tb", tmp_path / "tb.onnx", quantize="int8", calibration=texts, qat_steps=2)
    assert not (tmp_path / "tb.onnx").exists()
