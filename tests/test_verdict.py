"""The transfer verdict: paired intervals, the three outcomes, advice, and its place in ``fit`` and bundles."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

import transferkit as tk
from transferkit.cli import main
from transferkit.cli.fit import render_verdict
from transferkit.verdict import classify, paired_bootstrap, seeds_interval, transfer_verdict

from .conftest import TINY


class Oracle:
    """A fitted-model stand-in that classifies a chosen set of images correctly."""

    def __init__(self, ds: tk.ImageDataset, right: np.ndarray):
        self.classes_ = np.asarray(ds.classes)
        proba = np.zeros((len(ds), len(ds.classes)))
        wrong = (ds.labels + 1) % len(ds.classes)
        proba[np.arange(len(ds)), np.where(right, ds.labels, wrong)] = 1.0
        self._proba = proba

    def predict_proba_details(self, ds):
        return self._proba, np.arange(len(ds)), []


@pytest.fixture
def val(arrays) -> tk.ImageDataset:
    return tk.from_arrays(*arrays)


def test_classify_reads_the_interval():
    assert classify(0.01, 0.2) == "positive"
    assert classify(-0.2, -0.01) == "negative"
    assert classify(-0.05, 0.1) == "neutral"


def test_paired_bootstrap_interval_covers_the_gain_and_matches_a_direct_resampling():
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.8, rng.random(300) < 0.6
    gain, lo, hi = paired_bootstrap(a, b, n_resamples=4000, seed=1)
    assert gain == pytest.approx(a.mean() - b.mean())
    assert lo < gain < hi
    # independent check: resample image indices by hand, percentile interval of the paired difference
    idx = np.random.default_rng(7).integers(0, 300, size=(4000, 300))
    direct = (a[idx].mean(1) - b[idx].mean(1))
    assert lo == pytest.approx(np.percentile(direct, 2.5), abs=0.015)
    assert hi == pytest.approx(np.percentile(direct, 97.5), abs=0.015)


def test_pairing_makes_the_interval_narrower_than_independent_samples():
    rng = np.random.default_rng(3)
    a = rng.random(400) < 0.7
    b = a.copy()
    flip = rng.choice(400, 20, replace=False)
    b[flip] = ~b[flip]  # the two models agree on 95% of the images
    _, lo, hi = paired_bootstrap(a, b)
    unpaired = 2 * 1.96 * np.sqrt(a.var() / 400 + b.var() / 400)
    assert hi - lo < unpaired / 2


def test_seed_interval_is_a_student_t_interval():
    gains = [0.10, 0.14, 0.06, 0.12]
    mean, lo, hi = seeds_interval(gains)
    half = 3.182446305284263 * np.std(gains, ddof=1) / 2  # t(0.975, df=3)
    assert mean == pytest.approx(0.105) and hi - mean == pytest.approx(half) and mean - lo == pytest.approx(half)
    with pytest.raises(tk.DataError, match="at least 2 seeds"):
        seeds_interval([0.1])


def test_three_outcomes_and_advice(val):
    n = len(val)
    good, bad = np.ones(n, bool), np.zeros(n, bool)
    bad[: n // 4] = True
    context = {"strategy": "feature-extraction", "backbone": "packaged:efficientnet_lite0", "data": "photos/",
               "layer": "pre_logits", "layers": ["blocks.2", "blocks.4", "blocks.5", "pre_logits"]}
    pos = transfer_verdict(Oracle(val, good), Oracle(val, bad), val, context=context)
    assert pos.verdict == "positive" and pos.gain == pytest.approx(0.75, abs=0.01) and pos.ci[0] > 0
    assert pos.advice == [] and pos.images == n

    neg = transfer_verdict(Oracle(val, bad), Oracle(val, good), val, context=context)
    assert neg.verdict == "negative" and neg.ci[1] < 0
    tips = " ".join(neg.advice)
    assert "transferkit rank photos/" in tips and "--layer blocks.4" in tips and "--strategy scratch" in tips

    same = transfer_verdict(Oracle(val, good), Oracle(val, good), val, context=context)
    assert same.verdict == "neutral" and same.ci == (0.0, 0.0)
    assert "--baseline-seeds" in " ".join(same.advice)

    seeds = transfer_verdict([Oracle(val, good)] * 3, [Oracle(val, bad)] * 3, val)
    assert seeds.seeds == 3 and "Student-t" in seeds.method


def test_negative_transfer_is_printed_loudly(val):
    n = len(val)
    bad = np.zeros(n, bool)
    v = transfer_verdict(Oracle(val, bad), Oracle(val, np.ones(n, bool)), val,
                         context={"strategy": "fine-tune", "backbone": "x", "layers": []})
    buffer = io.StringIO()
    render_verdict(Console(file=buffer, width=200), v.to_dict())
    text = buffer.getvalue()
    assert text.startswith("NEGATIVE TRANSFER") and "-100.0 points" in text and "--lr-backbone" in text


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fit_stores_the_verdict_and_resume_trains_only_the_baseline(image_folder, tmp_path, capsys):
    out = tmp_path / "b"
    args = ["fit", str(image_folder), "--backbone", TINY, "--random-init", "--val-fraction", "0.34", "--no-progress",
            "--baseline-epochs", "1", "--baseline-image-size", "32", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    verdict = result["verdict"]
    assert verdict["verdict"] in ("positive", "neutral", "negative")
    assert verdict["ci"][0] <= verdict["gain"] <= verdict["ci"][1] and verdict["images"] == result["val_images"]
    assert verdict["transfer_accuracy"] == pytest.approx(result["accuracy"])
    assert verdict["baseline"] == {"strategy": "scratch", "arch": "timm:test_efficientnet", "image_size": 32,
                                   "epochs": 1, "metrics_jsonl": str(out / "baseline" / "metrics.jsonl")}
    meta = json.loads((out / "transferkit.json").read_text())
    assert meta["verdict"] == verdict
    assert tk.load_bundle(out, progress=False).predict(tk.from_folder(image_folder)).shape == (24,)

    # a run killed while the baseline trained: the bundle is there, the verdict pending
    meta["verdict"] = {"status": "pending"}
    (out / "transferkit.json").write_text(json.dumps(meta))
    weights = _sha(out / "model.safetensors")
    assert main([*args, "--resume"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"(positive|neutral|negative) transfer: [+-]\d+\.\d points", text)
    assert _sha(out / "model.safetensors") == weights  # the transfer model was not retrained
    assert json.loads((out / "transferkit.json").read_text())["verdict"]["verdict"] == verdict["verdict"]


def test_no_baseline_and_scratch_have_no_verdict(image_folder, tmp_path, capsys):
    common = ["--backbone", TINY, "--random-init", "--val-fraction", "0.34", "--no-progress", "--json"]
    assert main(["fit", str(image_folder), *common, "--no-baseline", "--out", str(tmp_path / "a")]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] is None
    assert json.loads((tmp_path / "a" / "transferkit.json").read_text())["verdict"] is None
    assert main(["fit", str(image_folder), *common, "--strategy", "scratch", "--epochs", "1", "--image-size", "32",
                 "--out", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] is None
