"""Ranking candidates before training: multi-layer extraction, ``random:`` specs, ``rank_backbones`` and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.cli import main
from transferkit.features.extract import extract_layers
from transferkit.selection.rank import rank_backbones

from .conftest import TINY, tiny_backbone


def test_forward_layers_equals_one_layer_at_a_time():
    bb = tiny_backbone(48)
    x = torch.randn(3, 3, 48, 48)
    with torch.inference_mode():
        many = bb.forward_layers(x, ["blocks.1", "blocks.3", "pre_logits"])
        early = bb.forward_layers(x, ["blocks.2", "blocks.0"])  # stops after blocks.2; order kept
        for name, value in {**many, **early}.items():
            torch.testing.assert_close(value, bb(x, name))
    assert list(early) == ["blocks.2", "blocks.0"]
    with pytest.raises(tk.BackboneError, match="Did you mean"):
        bb.forward_layers(x, ["blocks.9x"])


@pytest.mark.parametrize("cache", [True, False])
def test_extract_layers_matches_extract_features_and_fills_every_layer_in_one_pass(arrays, cache):
    bb, data = tiny_backbone(32), tk.from_arrays(*arrays)
    layers = ["blocks.0", "blocks.4", "pre_logits"]
    calls = {"n": 0}
    handle = bb.trunk.conv_stem.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    out = extract_layers(bb, data, layers, cache=cache, batch_size=64, progress=False)
    handle.remove()
    assert list(out) == layers and calls["n"] == 1  # one batch, one forward pass for all three layers
    for layer in layers:
        alone = tk.extract_features(bb, data, layer=layer, cache=False, progress=False)
        np.testing.assert_allclose(out[layer].features, alone.features, rtol=1e-5, atol=1e-6)
        if cache:
            assert tk.extract_features(bb, data, layer=layer, progress=False).computed == 0


def test_random_spec_is_the_architecture_untrained():
    bb = tk.create_backbone(f"random:{TINY}")
    ref = tk.create_backbone(TINY, pretrained=False)
    assert bb.spec == f"random:{TINY}" and not bb.weights.pretrained
    for a, b in zip(bb.state_dict().values(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(tk.BackboneError, match="Did you mean"):
        tk.create_backbone("randon:timm:test_efficientnet")


@pytest.fixture
def own_bundle(arrays, tmp_path):
    """Your own source model (``transferkit pretrain``'s kind): the tiny architecture trained from scratch."""
    clf = tk.ScratchClassifier(TINY, epochs=1, image_size=32, progress=False, augment="none").fit(*arrays)
    return tk.save_bundle(clf, tmp_path / "own")


def test_pretrained_outranks_random_init_on_real_images():
    data = tk.load_embedded()  # 400 Fashion-MNIST images shipped in the package
    candidates = ["random:packaged:efficientnet_lite0", "packaged:efficientnet_lite0"]
    rows = rank_backbones(data, candidates, sample=60, progress=False)
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["metric"] == "logme"
    assert rows[0]["backbone"] == "packaged:efficientnet_lite0", rows
    assert rows[0]["score"] > rows[1]["score"] and rows[0]["images"] == 60
    assert rows[0]["licence"] == "Apache-2.0" and rows[1]["pretrained"] is False
    rows = rank_backbones(data, candidates[1], layers="all", sample=60, progress=False)
    assert len(rows) == 6 and [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert rows[0]["layer"] in ("pre_logits", "blocks.6")  # deep ImageNet features fit clothing best
    rows = rank_backbones(data, candidates, sample=60, metric="probe", progress=False)  # held-out accuracy
    assert rows[0]["backbone"] == "packaged:efficientnet_lite0" and rows[0]["metric"] == "probe", rows
    assert 1.0 >= rows[0]["score"] > rows[1]["score"] >= 0.0


def test_own_bundles_and_every_layer_are_candidates(arrays, own_bundle):
    data = tk.from_arrays(*arrays)
    rows = rank_backbones(data, [f"random:{TINY}", f"bundle:{own_bundle}"], layers="all", sample=18,
                          progress=False)
    assert len(rows) == 2 * len(tiny_backbone().layers) and all(r["images"] == 18 for r in rows)
    assert {r["backbone"] for r in rows} == {f"random:{TINY}", f"bundle:{own_bundle}"}
    assert all(np.isfinite(r["score"]) and r["dim"] > 0 and r["seconds"] >= 0 for r in rows)


def test_leep_and_nce_read_the_kept_source_head(arrays):
    data = tk.from_arrays(*arrays)
    packaged = "packaged:efficientnet_lite0"  # keeps its ImageNet classifier
    for metric in ("leep", "nce"):
        (row,) = rank_backbones(data, packaged, metric=metric, sample=12, progress=False)
        assert np.isfinite(row["score"]) and row["score"] <= 0.0  # both are (negative) log-likelihood-like
    rows = rank_backbones(data, [packaged, f"random:{TINY}"], metric="leep", sample=12, progress=False)
    assert rows[0]["backbone"] == packaged and rows[1]["score"] is None and "metric='logme'" in rows[1]["error"]
    with pytest.raises(tk.BackboneError, match="No candidate could be scored.*metric='logme'"):
        rank_backbones(data, [f"random:{TINY}"], metric="nce", progress=False)


def test_cli_rank_json_and_mistakes(capsys, image_folder, own_bundle):
    code = main(["rank", str(image_folder), "--candidates", f"random:{TINY},bundle:{own_bundle}", "--json",
                 "--no-progress", "--layers", "blocks.2,pre_logits"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "logme" and result["images"] == 24
    assert len(result["ranking"]) == 4 and [r["rank"] for r in result["ranking"]] == [1, 2, 3, 4]
    assert {(r["backbone"].split(":")[0], r["layer"]) for r in result["ranking"]} == {
        ("random", "blocks.2"), ("random", "pre_logits"), ("bundle", "blocks.2"), ("bundle", "pre_logits")}
    assert main(["rank", str(image_folder), "--candidates", f"random:{TINY}", "--no-progress"]) == 0
    assert "transferkit rank" in capsys.readouterr().out  # the human table
    assert main(["rank", str(image_folder), "--candidates", f"random:{TINY}", "--metric", "probe", "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["metric"] == "probe"
    assert main(["rank", str(image_folder), "--candidates", TINY, "--metric", "logm"]) == 2
    assert "Did you mean: logme" in capsys.readouterr().err
    assert main(["rank", str(image_folder), "--candidates", f"random:{TINY}", "--layers", "blocks.77"]) == 2
    assert "not a feature layer" in capsys.readouterr().err
    assert main(["rank", str(image_folder), "--candidates", ","]) == 2
    assert "at least one backbone spec" in capsys.readouterr().err


def test_a_layer_named_twice_is_scored_once():
    from transferkit.selection.rank import layers_for

    backbone = tk.create_backbone(f"random:{TINY}")
    assert layers_for(backbone, "pre_logits,last, pre_logits") == ["pre_logits"]
    assert len(layers_for(backbone, "all")) == len(set(backbone.layers))


def test_image_size_scores_what_fine_tuning_will_see(arrays):
    data = tk.from_arrays(*arrays)
    (row,) = rank_backbones(data, f"random:{TINY}", image_size=48, cache=False, progress=False)
    assert row["input_size"] == [3, 48, 48]
    backbone = tk.create_backbone(f"random:{TINY}")
    backbone.preprocessing = backbone.preprocessing.with_image_size(48)
    out = tk.extract_features(backbone, data, cache=False, progress=False)
    from transferkit.transferability import score

    assert row["score"] == pytest.approx(score("logme", features=out.features, labels=data.labels[out.index]))
    (native,) = rank_backbones(data, f"random:{TINY}", cache=False, progress=False)
    assert native["input_size"] != [3, 48, 48] and native["score"] != pytest.approx(row["score"])


def test_copies_of_an_image_are_scored_once(arrays):
    # 36 images, then copies of the first 10 under the same labels: scored as the 36 (a copy would otherwise
    # count as a second observation and inflate LogME when the features outnumber the images)
    images, labels = arrays
    copied = tk.from_arrays(np.concatenate([images, images[:10]]), np.r_[labels, labels[:10]])
    (row,) = rank_backbones(copied, f"random:{TINY}", cache=False, progress=False)
    (plain,) = rank_backbones(tk.from_arrays(images, labels), f"random:{TINY}", cache=False, progress=False)
    assert (row["images"], row["copies"], plain["copies"]) == (36, 10, 0)
    assert row["score"] == pytest.approx(plain["score"], rel=1e-9)


def test_cli_rank_says_how_many_copies_it_left_out(capsys, image_folder):
    red = image_folder / "red"
    (red / "copy.png").write_bytes((red / "0.png").read_bytes())
    args = ["rank", str(image_folder), "--candidates", f"random:{TINY}", "--no-progress", "--no-cache"]
    assert main(args) == 0
    assert "copies left out: 1 (images identical to another" in " ".join(capsys.readouterr().out.split())
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["copies"], result["images"], result["ranking"][0]["copies"]) == (1, 24, 1)


def test_cli_rank_image_size(capsys, image_folder):
    assert main(["rank", str(image_folder), "--candidates", f"random:{TINY}", "--image-size", "40", "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["ranking"][0]["input_size"] == [3, 40, 40]
    with pytest.raises(SystemExit) as exit_info:  # argparse's own one-line error
        main(["rank", str(image_folder), "--candidates", f"random:{TINY}", "--image-size", "0"])
    assert exit_info.value.code == 2 and "--image-size" in capsys.readouterr().err
