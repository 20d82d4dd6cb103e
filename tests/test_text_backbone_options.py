"""``--pooling`` and ``--max-length``: text backbone options from the command line (tiny random BERT, word vectors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit import create_backbone
from transferkit.cli import main

from . import test_text
from .test_text import WORDS

tiny_bert, text_csv = test_text.tiny_bert, test_text.text_csv  # the text tests' fixtures, shared
CPU = ["--no-progress", "--device", "cpu"]


@pytest.fixture
def word_vectors(tmp_path: Path) -> Path:
    """A GloVe-style file over the fixture texts' words, frequency-ordered as the real files are."""
    rng = np.random.default_rng(0)
    path = tmp_path / "words.txt"
    path.write_text("".join(f"{w} {' '.join(f'{v:.4f}' for v in rng.normal(size=4))}\n" for w in WORDS[::-1]))
    return path


def meta(bundle: Path) -> dict:
    return json.loads((bundle / "transferkit.json").read_text())


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) <= 2, err  # one line (rich may wrap it)
    return " ".join(err.split())


def test_create_backbone_applies_and_remembers_text_options(tiny_bert: Path, tmp_path: Path) -> None:
    from transferkit.strategies.feature_extraction import resolve_backbone

    bb = create_backbone(f"hf:{tiny_bert}", pooling="max", max_length=7)
    assert bb.options == {"pooling": "max", "max_length": 7} and bb.trunk.pooling == "max"
    assert bb.encoder(["apple " * 20])["input_ids"].shape[1] == 7
    assert create_backbone(f"hf:{tiny_bert}", pooling=None).options == {}  # None: the source's default
    # the architecture alone (the scratch baseline) is rebuilt with the same options
    fresh = resolve_backbone(bb, pretrained=False)
    assert not fresh.weights.pretrained and fresh.trunk.pooling == "max" and fresh.encoder.max_length == 7
    assert fresh.preprocessing.pooling == "max" and fresh.preprocessing.max_length == 7


def test_cli_fit_pooling_and_max_length_reach_the_backbone_and_the_baseline(
        tiny_bert: Path, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transferkit.jobs.baseline import make_baseline
    from transferkit.jobs.fit import FitConfig, make_strategy
    from transferkit.strategies.feature_extraction import resolve_backbone

    out = tmp_path / "cls"
    code = main(["fit", str(text_csv), "--backbone", f"hf:{tiny_bert}", "--pooling", "cls", "--max-length", "8",
                 "--no-baseline", "--json", "--out", str(out), *CPU])
    assert code == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["inputs"]["max_length"] == 8
    assert meta(out)["preprocessing"]["pooling"] == "cls" and meta(out)["preprocessing"]["max_length"] == 8
    assert meta(out)["config"]["backbone_options"] == {"pooling": "cls", "max_length": 8}
    loaded = tk.load_bundle(out, progress=False)
    assert loaded.backbone_.trunk.pooling == "cls" and loaded.backbone_.encoder.max_length == 8
    # what the CLI built is what the features are: cls of at most 8 tokens
    bb = loaded.backbone_
    inputs = bb.encoder(["apple banana cherry grape melon fruit sweet juice engine wheel"])
    assert inputs["input_ids"].shape[1] == 8
    with torch.no_grad():
        torch.testing.assert_close(bb(inputs), bb.trunk.model(**inputs).last_hidden_state[:, 0])
    # the scratch baseline has the same pooling and max_length: from the options the fitted backbone remembers, or
    # (a bundle, when a baseline is resumed) from its assets
    fitted = make_strategy(FitConfig(data=str(text_csv), out=str(out), backbone=f"hf:{tiny_bert}", cache=False,
                                     backbone_options={"pooling": "cls", "max_length": 8}, progress=False))
    fitted.fit(*test_text.make_texts(3))
    for estimator in (fitted, loaded):
        scratch = resolve_backbone(make_baseline(FitConfig(data="", out="", baseline_model="arch"), estimator, 0, None,
                                                      progress=False).backbone, False)
        assert scratch.trunk.pooling == "cls" and scratch.encoder.max_length == 8 and not scratch.weights.pretrained


def test_cli_fit_word_vectors_sif_pooling(word_vectors: Path, text_csv: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sif"
    code = main(["fit", str(text_csv), "--backbone", f"vectors:{word_vectors}", "--pooling", "sif", "--no-baseline",
                 "--out", str(out), *CPU])
    assert code == 0
    assert meta(out)["preprocessing"]["pooling"] == "sif"
    weights = tk.load_bundle(out, progress=False).backbone_.trunk.word_weights
    assert float(weights[0]) < float(weights[-1])  # SIF: the most frequent word weighs least


def test_cli_rank_and_curve_take_the_options(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from transferkit.curve import CurveConfig, _models

    def rank(*extra: str) -> list[float]:
        assert main(["rank", str(text_csv), "--candidates", f"hf:{tiny_bert},random:hf:{tiny_bert}", "--json",
                     "--no-cache", *extra, *CPU]) == 0
        return [r["score"] for r in json.loads(capsys.readouterr().out)["ranking"]]

    assert rank("--pooling", "max", "--max-length", "6") != rank()  # other features, other scores
    # The race fine-tunes text candidates too, their backbone options passed on.
    assert main(["rank", str(text_csv), "--candidates", f"hf:{tiny_bert},random:hf:{tiny_bert}", "--json",
                 "--race", "--race-lrs", "1e-3", "--race-epochs", "1,1", "--race-folds", "2", "--max-length", "6",
                 "--race-state", str(tmp_path / "race.json"), *CPU]) == 0
    raced = json.loads(capsys.readouterr().out)
    assert raced["race"]["candidates"] == 2 and all(0 <= r["race_accuracy"] <= 1 for r in raced["ranking"])
    assert len(json.loads((tmp_path / "race.json").read_text())["runs"]) == 4  # 2 candidates x 2 folds
    code = main(["curve", str(text_csv), "--backbone", f"hf:{tiny_bert}", "--per-class", "3", "--seeds", "1",
                 "--min-steps", "1", "--scratch-epochs", "1", "--test-fraction", "0.25", "--pooling", "cls",
                 "--max-length", "6", "--json", "--out", str(tmp_path / "curve"), *CPU])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["config"]["backbone_options"] == {"pooling": "cls", "max_length": 6}
    models = _models(CurveConfig(backbone=f"hf:{tiny_bert}", baseline="arch",
                                 backbone_options={"pooling": "cls", "max_length": 6}), 6, 0, "text")
    transfer, scratch = models["transfer"].backbone, models["scratch"].backbone
    assert transfer.weights.pretrained and not scratch.weights.pretrained
    assert transfer.preprocessing.pooling == scratch.preprocessing.pooling == "cls"
    assert transfer.encoder.max_length == scratch.encoder.max_length == 6


def test_cli_pretrain_takes_the_options(tiny_bert: Path, text_csv: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "source"
    code = main(["pretrain", str(text_csv), "--arch", f"hf:{tiny_bert}", "--pooling", "max", "--max-length", "10",
                 "--epochs", "1", "--out", str(out), *CPU])
    assert code == 0
    assert meta(out)["preprocessing"]["pooling"] == "max" and meta(out)["preprocessing"]["max_length"] == 10
    assert create_backbone(f"bundle:{out}").trunk.pooling == "max"


def test_options_that_do_not_apply_are_one_line_errors(tiny_bert: Path, text_csv: Path, image_folder: Path,
                                                       word_vectors: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    image = ["--backbone", "timm:test_efficientnet", "--random-init"]
    for data, extra, message in (
        (image_folder, [*image, "--pooling", "cls"], "--pooling applies to text backbones"),
        (image_folder, [*image, "--max-length", "9"], "Drop --max-length"),
        (text_csv, ["--backbone", f"hf:{tiny_bert}", "--pooling", "sif"], "sif weighs word vectors (vectors:<file>"),
        (text_csv, ["--backbone", f"vectors:{word_vectors}", "--pooling", "cls"],
         "must be one of mean, sif. Got 'cls' instead; cls pooling needs token vectors of a transformer"),
        (text_csv, ["--backbone", f"vectors:{word_vectors}", "--max-length", "9"],
         "--max-length applies to transformer backbones"),
    ):
        code = main(["fit", str(data), *extra, "--no-baseline", "--out", str(tmp_path / "bad"), *CPU])
        assert code == 2 and message in error_line(capsys)
    code = main(["rank", str(text_csv), "--candidates", "timm:test_efficientnet", "--pooling", "mean", *CPU])
    assert code == 2 and "reads image. Drop --pooling" in error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:  # argparse: not a positive integer
        main(["fit", str(text_csv), "--max-length", "0", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "positive integer" in error_line(capsys)
    with pytest.raises(tk.TransferkitError, match="^max_length must be a positive integer"):
        create_backbone(f"hf:{tiny_bert}", max_length=0)


@pytest.mark.slow
def test_packaged_text_backbones_take_the_options() -> None:
    minilm = create_backbone("packaged:all-minilm-l6-v2", pooling="cls", max_length=32)
    assert minilm.trunk.pooling == "cls" and minilm.encoder.max_length == 32
    glove = create_backbone("packaged:glove-6b-50d", pooling="sif")
    assert glove.preprocessing.pooling == "sif"
    with pytest.raises(tk.TransferkitError, match="^max_length applies to transformer backbones"):
        create_backbone("packaged:glove-6b-50d", max_length=32)
    with pytest.raises(tk.TransferkitError, match="^pooling applies to text backbones"):
        create_backbone("packaged:efficientnet_lite0", pooling="mean")
