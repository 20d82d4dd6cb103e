"""The transfer verdict: paired intervals, the three outcomes, advice, and its place in ``fit`` and bundles."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

import transferkit as tk
from transferkit.cli import main
from transferkit.cli.fit import render_verdict
from transferkit.verdict import classify, crossed_bootstrap, gain_interval, paired_bootstrap, transfer_verdict

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


def test_seeds_that_agree_do_not_make_the_interval_vanish():
    # 2 seeds, 20 validation images, transfer right on one image more than scratch with both seeds: a t-interval over
    # the two per-seed gains would be [+0.05, +0.05], "positive"; one image is no evidence
    scratch = np.zeros((2, 20), bool)
    scratch[:, :12] = True
    transfer = scratch.copy()
    transfer[:, 12] = True
    gain, lo, hi = gain_interval(transfer, scratch)
    assert gain == pytest.approx(0.05) and lo <= 0 < hi and classify(lo, hi) == "neutral"
    # identical seeds: resampling them changes nothing, the interval is the images' own
    one = paired_bootstrap(transfer[0], scratch[0], seed=3)
    assert crossed_bootstrap(np.repeat(transfer[:1], 4, 0), np.repeat(scratch[:1], 4, 0), seed=3) == pytest.approx(one)


def test_seeds_that_disagree_widen_the_interval():
    rng = np.random.default_rng(0)
    scratch = rng.random((2, 2000)) < 0.6
    transfer = scratch.copy()
    transfer[0, rng.choice(np.flatnonzero(~scratch[0]), 300, replace=False)] = True  # seed 0: +15 points
    transfer[1, rng.choice(np.flatnonzero(scratch[1]), 300, replace=False)] = False  # seed 1: -15 points
    gain, lo, hi = crossed_bootstrap(transfer, scratch)
    _, lo0, hi0 = paired_bootstrap(transfer[0], scratch[0])
    assert lo < -0.1 and hi > 0.1 and hi - lo > 5 * (hi0 - lo0)


def _crossed_experiment(rng, seeds=5, images=200, seed_sd=0.03):
    """Models of several seeds scored on the same images: some images are easier for everyone, some gain more from
    pretraining than others, and each seed has its own luck (bench/verdict_coverage.py measures more settings)."""
    base = rng.uniform(0.3, 0.9, images)
    image_gain = rng.normal(0.05, 0.5, images)
    transfer = np.clip(base + image_gain + rng.normal(0, seed_sd, (seeds, 1)), 0, 1)
    scratch = np.clip(base + rng.normal(0, seed_sd, (seeds, 1)), 0, 1)
    return rng.random((seeds, images)) < transfer, rng.random((seeds, images)) < scratch


@pytest.mark.parametrize("seeds, seed_sd", [
    (5, 0.03),  # the images decide: a t-interval over the 5 per-seed gains covers 0.84 (bench/verdict_coverage.py)
    (2, 0.08),  # two seeds that disagree a lot: the crossed bootstrap alone covers 0.84
])
def test_the_verdict_interval_covers_the_gain_on_new_images_and_new_seeds(seeds, seed_sd):
    # the truth: the expected gain over images and seeds never seen, estimated on many of both
    truth = np.mean([a.mean() - b.mean() for a, b in (_crossed_experiment(np.random.default_rng(1000 + i), 50, 4000,
                                                                          seed_sd) for i in range(20))])
    rng = np.random.default_rng(seeds)
    covered = []
    for i in range(300):
        _, lo, hi = gain_interval(*_crossed_experiment(rng, seeds, 200, seed_sd), n_resamples=400, seed=i)
        covered.append(lo <= truth <= hi)
    assert np.mean(covered) >= 0.92  # nominal 0.95; measured 0.96 and 0.97


def test_several_seeds_take_the_wider_interval():
    rng = np.random.default_rng(5)
    transfer, scratch = rng.random((3, 300)) < 0.7, rng.random((3, 300)) < 0.6
    gain, lo, hi = gain_interval(transfer, scratch)
    _, b_lo, b_hi = crossed_bootstrap(transfer, scratch)
    gains = transfer.mean(1) - scratch.mean(1)
    half = 4.302652729911275 * gains.std(ddof=1) / np.sqrt(3)  # t(0.975, df=2)
    assert (lo, hi) == pytest.approx((min(b_lo, gains.mean() - half), max(b_hi, gains.mean() + half)))
    assert gain_interval(transfer[:1], scratch[:1]) == crossed_bootstrap(transfer[:1], scratch[:1])
    # two seeds far apart: the t quantile (12.7) reaches past what an accuracy difference can be
    far = np.zeros((2, 10), bool), np.zeros((2, 10), bool)
    far[0][0], far[1][1] = True, True  # seed 0: transfer right on every image, scratch on none; seed 1 the reverse
    assert gain_interval(*far)[1:] == (-1.0, 1.0)


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
    assert seeds.seeds == 3 and "crossed" in seeds.method and seeds.ci[0] > 0


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
            "--baseline-epochs", "1", "--baseline-image-size", "32", "--baseline", "arch", "--verdict-protocol",
            "holdout", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    verdict = result["verdict"]
    assert verdict["verdict"] in ("positive", "neutral", "negative")
    assert verdict["ci"][0] <= verdict["gain"] <= verdict["ci"][1] and verdict["images"] == result["val_images"]
    assert verdict["transfer_accuracy"] == pytest.approx(result["accuracy"])
    assert verdict["baseline"] == {"strategy": "scratch", "arch": "timm:test_efficientnet", "image_size": 32,
                                   "name": "the same architecture (timm:test_efficientnet) trained from scratch at 32 px",
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


def test_resume_with_several_seeds_trains_only_the_runs_that_had_not_finished(image_folder, tmp_path, capsys):
    out = tmp_path / "b"
    args = ["fit", str(image_folder), "--backbone", TINY, "--random-init", "--strategy", "fine-tune", "--epochs", "1",
            "--image-size", "32", "--val-fraction", "0.34", "--no-progress", "--baseline-epochs", "1",
            "--baseline-image-size", "32", "--baseline-seeds", "2", "--baseline", "arch", "--verdict-protocol", "holdout",
            "--out", str(out), "--json"]
    assert main(args) == 0
    verdict = json.loads(capsys.readouterr().out)["verdict"]
    assert verdict["seeds"] == 2 and "crossed" in verdict["method"]
    logs = {p: p.read_text() for p in [out / "baseline" / "metrics.jsonl", out / "seed1" / "transfer" / "metrics.jsonl",
                                       out / "seed1" / "baseline" / "metrics.jsonl"]}

    def interrupt(finished: list[str]) -> None:
        """As if killed after these runs: the pending verdict keeps their marks, the others left nothing."""
        meta = json.loads((out / "transferkit.json").read_text())
        runs = {name: "0" * verdict["images"] for name in finished}  # not what they scored: shows they were kept
        meta["verdict"] = {"status": "pending", "key": key, "runs": runs}
        (out / "transferkit.json").write_text(json.dumps(meta))
        for log in logs:
            log.unlink(missing_ok=True)

    from transferkit.jobs.baseline import _verdict_key
    from transferkit.jobs.fit import FitConfig, prepare_data

    cfg = FitConfig(data=str(image_folder), backbone=TINY, random_init=True, strategy="fine-tune", epochs=1,
                    image_size=32, val_fraction=0.34, progress=False, baseline_epochs=1, baseline_image_size=32,
                    baseline_seeds=2, baseline_model="arch", verdict_protocol="holdout", out=str(out))
    key = _verdict_key(cfg, prepare_data(cfg)[2], "holdout", None)
    interrupt(["transfer-0", "scratch-0", "transfer-1"])
    assert main([*args, "--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)["verdict"]
    assert [p.is_file() for p in logs] == [False, False, True]  # only seed 1's baseline trained again
    assert resumed["transfer_accuracy"] == 0  # the kept marks, not re-scored models
    interrupt([])  # nothing finished: everything trains again and reproduces the verdict
    assert main([*args, "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == verdict
    assert all(p.is_file() for p in logs)


def test_macro_f1_averages_the_classes_that_occur(val):
    # a model with more classes than this data shows: perfect on the data's classes
    n = len(val)
    model = Oracle(val, np.ones(n, bool))
    model.classes_ = np.asarray([*val.classes, "never-seen", "nor-this"])
    model._proba = np.hstack([model._proba, np.zeros((n, 2))])
    result = tk.evaluate(model, val)
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0
    assert set(result["per_class"]) >= {"never-seen", "nor-this"}  # still listed, with support 0


def test_a_small_validation_split_is_judged_by_cross_fitting_against_the_small_cnn(image_folder, tmp_path, capsys):
    # 24 images, 5 of them validation: 5/5 against 3/5 would be "neutral, CI [0, 1]"; every item is scored instead
    out = tmp_path / "b"
    assert main(["fit", str(image_folder), "--backbone", TINY, "--random-init", "--no-progress", "--json",
                 "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    verdict = result["verdict"]
    assert result["val_images"] < 10
    assert verdict["protocol"] == "cross-fit" and verdict["folds"] == 5
    assert verdict["images"] == result["train_images"] + result["val_images"] == 24  # out-of-fold, every item
    assert "5-fold cross-fit" in verdict["method"]
    assert verdict["baseline"]["strategy"] == "small-cnn" and verdict["baseline"]["input_size"] == [24, 24]
    assert verdict["baseline_name"] == "a small CNN trained from scratch at 24x24 px"
    stored = json.loads((out / "transferkit.json").read_text())["verdict"]
    assert stored["protocol"] == "cross-fit" and stored["verdict"] == verdict["verdict"]


def test_holdout_protocol_and_arch_baseline_on_request(image_folder, tmp_path, capsys):
    common = ["fit", str(image_folder), "--backbone", TINY, "--random-init", "--no-progress", "--json"]
    assert main([*common, "--verdict-protocol", "holdout", "--out", str(tmp_path / "h")]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["verdict"]["protocol"] == "holdout" and held["verdict"]["images"] == held["val_images"]
    assert main([*common, "--baseline", "arch", "--baseline-epochs", "1", "--baseline-image-size", "32",
                 "--out", str(tmp_path / "a")]) == 0
    arch = json.loads(capsys.readouterr().out)["verdict"]
    assert arch["baseline"]["strategy"] == "scratch" and arch["protocol"] == "cross-fit"
    assert arch["baseline_name"].startswith("the same architecture (timm:test_efficientnet)")


@pytest.mark.parametrize("bad, message", [
    (["--baseline", "tfidf"], r"tfidf baseline reads texts but DATA holds images"),
    (["--baseline-image-size", "32"], r"--baseline-image-size applies to --baseline arch"),
])
def test_a_baseline_that_cannot_run_fails_before_training(image_folder, tmp_path, capsys, bad, message):
    code = main(["fit", str(image_folder), "--backbone", TINY, "--random-init", "--no-progress", *bad,
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_the_verdict_is_negative_when_a_small_cnn_beats_transfer(tmp_path):
    """Random-init features cannot tell where a dot is; a CNN trained on the pixels can: the honest verdict is
    negative (it was positive against the big architecture at chance)."""
    from transferkit.jobs.baseline import baseline_verdict
    from transferkit.jobs.fit import FitConfig, make_strategy, prepare_data

    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, size=(60, 16, 16, 3)).astype(np.uint8)
    labels = np.arange(60) % 3
    for i, c in enumerate(labels):  # a bright 4x4 patch: left, middle or right
        images[i, 6:10, 1 + 5 * c: 5 + 5 * c] = 255
    root = tmp_path / "dots"
    for i, (img, c) in enumerate(zip(images, labels, strict=True)):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    cfg = FitConfig(data=str(root), out=str(tmp_path / "b"), backbone=TINY, random_init=True, layer="blocks.0",
                    progress=False, cache=False)
    data, train, val = prepare_data(cfg)
    estimator = make_strategy(cfg).fit(train)
    tk.save_bundle(estimator, tmp_path / "b", extra={"verdict": {"status": "pending"}})
    verdict = baseline_verdict(cfg, estimator, data, train, val)
    assert verdict["protocol"] == "cross-fit" and verdict["baseline"]["strategy"] == "small-cnn"
    assert verdict["scratch_accuracy"] > 0.9 and verdict["verdict"] == "negative", verdict


def test_without_a_disk_cache_the_fold_models_share_their_features_in_memory(image_folder, tmp_path, monkeypatch):
    """Cross-fitting fits k feature-extraction models on overlapping items: with ``cache`` off each item still goes
    through the backbone once, and nothing is written to the cache folder."""
    from transferkit.jobs.baseline import MemoryFeatureCache, _model
    from transferkit.jobs.fit import FitConfig, make_strategy, prepare_data

    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "disk-cache"))
    cfg = FitConfig(data=str(image_folder), out=str(tmp_path / "b"), backbone=TINY, random_init=True, progress=False,
                    cache=False)
    data, train, val = prepare_data(cfg)
    estimator = make_strategy(cfg).fit(train)
    shared: dict = {}
    first = _model(cfg, estimator, "transfer", 0, None, shared, progress=False)
    assert isinstance(first.cache, MemoryFeatureCache)
    assert first.backbone is estimator.backbone_  # the frozen backbone is loaded once, not once more per fold
    first.fit(data.subset(np.arange(0, len(data), 2)))
    second = _model(cfg, estimator, "transfer", 0, None, shared, progress=False).fit(data)
    assert second.cache is first.cache
    extraction = second.fit_info_["extraction"]
    assert extraction["cached"] == len(data) - extraction["computed"] == first.fit_info_["train_images"]
    # the same features as computed afresh: the same model
    fresh = make_strategy(cfg).fit(data)
    np.testing.assert_allclose(second.predict_proba(data), fresh.predict_proba(data), atol=1e-6)
    assert not (tmp_path / "disk-cache").exists()
