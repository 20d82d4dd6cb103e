"""Learning curves: both models per point on the same subsets, intervals over seeds and images, resumable files,
the CLI."""

from __future__ import annotations

import json

import pytest

import transferkit as tk
from transferkit.cli import main
from transferkit.curve import CurveConfig, epochs_for, learning_curve

from .conftest import TINY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = {"backbone": f"random:{TINY}", "baseline": "arch", "scratch_epochs": 1, "min_steps": 1, "image_size": 32, "progress": False}


def test_small_sets_get_more_epochs_to_reach_the_minimum_steps():
    assert epochs_for(15, 1000, 32, 200) == 15  # 32 steps per epoch: 15 epochs are already 480 steps
    assert epochs_for(15, 50, 32, 200) == 100  # 2 steps per epoch
    assert epochs_for(6, 10, 32, 200) == 200


def test_curve_points_intervals_and_resume(arrays, tmp_path):
    data = tk.from_arrays(*arrays)
    lines: list[str] = []
    first = learning_curve(data, CurveConfig(per_class=[2], seeds=2, **FAST), tmp_path, log=lines.append)
    assert len(first["runs"]) == 4 and len(lines) == 4
    doc = learning_curve(data, CurveConfig(per_class=[2, 4], seeds=2, **FAST), tmp_path)
    assert doc["runs"][:4] == first["runs"]  # the finished size was kept, not retrained
    assert [(r["per_class"], r["seed"], r["method"]) for r in doc["runs"][4:]] == [
        (4, 0, "transfer"), (4, 0, "scratch"), (4, 1, "transfer"), (4, 1, "scratch")]
    assert {r["train_images"] for r in doc["runs"]} == {6, 12}
    for point in doc["points"]:
        assert point["transfer"]["runs"] == point["scratch"]["runs"] == 2
        gains = [t["accuracy"] - s["accuracy"] for t, s in zip(
            [r for r in doc["runs"] if r["per_class"] == point["per_class"] and r["method"] == "transfer"],
            [r for r in doc["runs"] if r["per_class"] == point["per_class"] and r["method"] == "scratch"],
            strict=True)]
        assert point["gain"] == pytest.approx(sum(gains) / 2)
        assert point["gain_ci"][0] <= point["gain"] <= point["gain_ci"][1]
        assert point["verdict"] in ("positive", "neutral", "negative") and point["pairs"] == 2
    for run in doc["runs"]:  # one mark per held-out image, and the accuracy is their mean
        assert len(run["correct"]) == len(tk.stratified_split(data, 0.2, seed=12345)[1])
        assert run["accuracy"] == pytest.approx(run["correct"].count("1") / len(run["correct"]))
    assert doc["test_images"] == len(tk.stratified_split(data, 0.2, seed=12345)[1])  # one fixed held-out set
    assert (tmp_path / "curve.png").read_bytes().startswith(PNG_MAGIC)
    assert json.loads((tmp_path / "curve.json").read_text())["points"] == doc["points"]
    with pytest.raises(tk.DataError, match="other settings"):
        learning_curve(data, CurveConfig(per_class=[2], seeds=2, **{**FAST, "scratch_epochs": 2}), tmp_path)
    old = json.loads((tmp_path / "curve.json").read_text())
    del old["data_fingerprint"]
    (tmp_path / "older").mkdir()
    (tmp_path / "older" / "curve.json").write_text(json.dumps(old))
    with pytest.raises(tk.DataError, match="from an older transferkit"):
        learning_curve(data, CurveConfig(per_class=[2], seeds=2, **FAST), tmp_path / "older")
    with pytest.raises(tk.DataError, match="smallest class has"):
        learning_curve(data, CurveConfig(per_class=[50], **FAST), tmp_path / "other")


def test_curve_compares_with_the_small_cnn_by_default_and_reads_curves_made_before_the_choice(arrays, tmp_path):
    data = tk.from_arrays(*arrays)
    cfg = {k: v for k, v in FAST.items() if k != "baseline"}
    doc = learning_curve(data, CurveConfig(per_class=[2], seeds=1, **cfg), tmp_path / "auto")
    assert CurveConfig().baseline == "auto" and doc["baseline_kind"] == "small-cnn"
    assert [r["strategy"] for r in doc["runs"] if r["method"] == "scratch"] == ["small-cnn"]
    assert (tmp_path / "auto" / "curve.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(tk.TransferkitError, match="reads texts but DATA holds images"):
        learning_curve(data, CurveConfig(per_class=[2], seeds=1, **{**cfg, "baseline": "tfidf"}), tmp_path / "x")
    assert not (tmp_path / "x" / "curve.json").exists()  # refused before any run
    arch = learning_curve(data, CurveConfig(per_class=[2], seeds=1, **FAST), tmp_path / "arch")
    old = json.loads((tmp_path / "arch" / "curve.json").read_text())
    del old["config"]["baseline"], old["baseline_kind"]  # a curve written before the baseline could be chosen
    (tmp_path / "arch" / "curve.json").write_text(json.dumps(old))
    again = learning_curve(data, CurveConfig(per_class=[2], seeds=1, **FAST), tmp_path / "arch")
    assert again["runs"] == arch["runs"]  # resumed as the arch curve it was, nothing retrained


def test_cli_curve(capsys, image_folder, tmp_path):
    args = ["curve", str(image_folder), "--backbone", f"random:{TINY}", "--per-class", "2,3", "--seeds", "1",
            "--scratch-epochs", "1", "--min-steps", "1", "--image-size", "32", "--out", str(tmp_path / "c"),
            "--no-progress", "--baseline", "arch"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # one seed still gets an interval: the paired bootstrap over the held-out images
    assert [p["per_class"] for p in result["points"]] == [2, 3]
    assert all(p["pairs"] == 1 and p["gain_ci"][0] <= p["gain"] <= p["gain_ci"][1] for p in result["points"])
    assert result["pays_until"] in (None, 2, 3)
    assert main(args) == 0  # everything is done: resumes to the table without training
    assert "transfer vs scratch" not in capsys.readouterr().err
    fewer = tmp_path / "fewer"  # other data into the same --out: refused, not mixed into the curve
    fewer.mkdir()
    for klass in sorted(image_folder.iterdir())[:2]:
        (fewer / klass.name).symlink_to(klass)
    assert main(["curve", str(fewer), *args[2:]]) == 2
    assert "holds a curve of other data" in capsys.readouterr().err
    assert main([*args, "--strategy", "fine-tune", "--head", "svm"]) == 2
    assert "--head is the feature-extraction head" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([*args[:5], "2,x", *args[6:]])
    assert exit_info.value.code == 2
    assert "comma-separated positive integers" in capsys.readouterr().err
