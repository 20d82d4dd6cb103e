"""``--strategy auto``: the rule table, the measurements behind it, and its choices on real situations."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit as tk
from transferkit.cli import main
from transferkit.selection.auto import choose_strategy, decide, similarity_of
from transferkit.transferability.shift import batchnorm_shift, gaussian_jeffreys

from .conftest import TINY

LAYERS = {"blocks.2": -0.2, "blocks.4": -0.1, "pre_logits": 0.1}


def shift(value: float) -> dict:
    return {"overall": value, "early": value, "middle": value, "late": value, "layers": {}, "images": 10}


@pytest.mark.parametrize(("per_class", "shift_value", "strategy", "train"), [
    (5, 0.05, "feature-extraction", {}),
    (5, 0.4, "feature-extraction", {}),
    (50, 0.05, "fine-tune", {"schedule": "two-stage", "unfreeze_top": 2}),
    (50, 0.4, "fine-tune", {"schedule": "two-stage"}),
    (500, 0.05, "fine-tune", {"schedule": "two-stage"}),
    (500, 2.0, "fine-tune", {"schedule": "two-stage", "lr_backbone": 1e-3}),
])
def test_rule_table(per_class, shift_value, strategy, train):
    d = decide(per_class, shift(shift_value), LAYERS, groups=8)
    assert (d.strategy, d.train, d.layer) == (strategy, train, None)
    assert d.reasons and str(per_class) in d.reasons[0] and f"{shift_value:.2f}" in d.reasons[1]


def test_few_labels_on_a_different_target_use_a_shallower_layer_when_it_scores_better():
    scores = {"blocks.2": -0.2, "blocks.4": 0.3, "pre_logits": 0.1}
    d = decide(5, shift(2.0), scores, groups=8)
    assert d.strategy == "feature-extraction" and d.layer == "blocks.4" and d.similarity == "different"
    assert "shallower layer blocks.4" in d.summary()
    # on a similar target a shallower layer must beat the last one clearly
    assert decide(5, shift(0.05), {"blocks.4": 0.12, "pre_logits": 0.1}, groups=8).layer is None
    assert decide(5, shift(0.05), {"blocks.4": 0.3, "pre_logits": 0.1}, groups=8).layer == "blocks.4"


def test_without_batchnorm_statistics_similarity_comes_from_logme():
    assert similarity_of(None, {"blocks.4": 0.3, "pre_logits": 0.1}) == "different"
    assert similarity_of(None, {"blocks.4": 0.1, "pre_logits": 0.3}) == "unknown"
    # enough labels and nothing to tell similarity by: the reasons say so, not "similar"
    d = decide(50, None, {"blocks.4": 0.1, "pre_logits": 0.3}, groups=8)
    assert d.strategy == "fine-tune" and "no measure of how close the target is" in d.summary()
    assert "similar to the source" not in d.summary()


def test_jeffreys_divergence():
    assert gaussian_jeffreys(np.array([0.0]), np.array([1.0]), np.array([0.0]), np.array([1.0]))[0] == 0.0
    # KL(N(0,1)||N(1,1)) = 0.5 both ways; KL(N(0,1)||N(0,4)) = log 2 + 1/8 - 1/2, KL(N(0,4)||N(0,1)) = -log 2 + 2 - 1/2
    assert gaussian_jeffreys(np.array([0.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]))[0] == 0.5
    expected = ((np.log(2) + 1 / 8 - 0.5) + (-np.log(2) + 2 - 0.5)) / 2
    assert gaussian_jeffreys(np.zeros(1), np.ones(1), np.zeros(1), 4 * np.ones(1))[0] == pytest.approx(expected)


def gratings(per_class: int, seed: int = 0) -> tk.ImageDataset:
    """A target unrelated to photographs: noisy sine gratings whose class is the spatial frequency."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, 64)
    images, labels = [], []
    for label in range(4):
        for _ in range(per_class):
            wave = np.sin(2 * np.pi * ((2 + 3 * label + rng.random()) * x + rng.random()))
            a = wave[None, :] * np.ones((64, 1)) + 0.3 * rng.normal(size=(64, 64))
            images.append(np.repeat(np.clip((a + 1) * 100, 0, 255).astype(np.uint8)[..., None], 3, -1))
            labels.append(label)
    return tk.from_arrays(np.stack(images), np.array(labels))


def test_batchnorm_shift_orders_real_photos_clothing_and_gratings():
    import skimage.data

    bb = tk.create_backbone("packaged:efficientnet_lite0")
    photos = tk.from_arrays(np.stack([np.asarray(tk.data.array_to_image(getattr(skimage.data, n)()).resize((96, 96)))
                                      for n in ("astronaut", "chelsea", "coffee", "rocket")]))
    clothing = tk.per_class(tk.load_embedded(), 2)
    values = [batchnorm_shift(bb, ds, sample=20)["overall"] for ds in (photos, clothing, gratings(3))]
    assert values == sorted(values), values  # ImageNet-like < Fashion-MNIST < sine gratings
    assert batchnorm_shift(tk.create_backbone(f"random:{TINY}"), clothing) is None  # no source statistics


def test_fit_auto_explains_and_stores_its_choice(capsys, tmp_path):
    out = tmp_path / "auto"
    code = main(["fit", "embedded", "--strategy", "auto", "--per-class", "5", "--no-baseline", "--no-progress",
                 "--val-fraction", "0.4", "--out", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "feature-extraction" and result["auto"]["strategy"] == "feature-extraction"
    assert result["auto"]["labels_per_class"] == 3 and result["auto"]["size"] == "few"
    assert set(result["auto"]["layer_scores"]) == set(tk.create_backbone("packaged:efficientnet_lite0").layers)
    meta = json.loads((out / "transferkit.json").read_text())
    assert meta["auto"] == result["auto"] and meta["strategy"] == "feature-extraction"
    assert main(["fit", "embedded", "--strategy", "auto", "--random-init", "--out", str(tmp_path / "x")]) == 2
    assert "drop --random-init" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(("situation", "similarity", "strategy"), [
    ("fashion-mnist, 5 per class", {"related"}, "feature-extraction"),
    ("fashion-mnist, 500 per class", {"related"}, "fine-tune"),
    # the table says fine-tune; its cross-check measured 28% for that fine-tune and 100% for feature extraction
    ("sine gratings, 30 per class", {"different"}, "feature-extraction"),
    ("sine gratings, 5 per class", {"different"}, "feature-extraction"),
])
def test_auto_on_real_situations(situation, similarity, strategy):
    if situation.startswith("fashion"):
        data = tk.per_class(tk.load_fashion_mnist("train"), int(situation.split(", ")[1].split()[0]), seed=0)
    else:
        data = gratings(int(situation.split(", ")[1].split()[0]))
    decision = choose_strategy(data, "packaged:efficientnet_lite0", cache=False)
    assert decision.similarity in similarity and decision.strategy == strategy, decision.summary()
    if decision.estimates is not None:  # a checked choice follows its measurement
        ft, fe = decision.estimates["fine_tune"], decision.estimates["feature_extraction"]
        assert decision.strategy == ("fine-tune" if ft >= fe else "feature-extraction")
    if strategy == "fine-tune":
        assert decision.train.get("unfreeze_top") is None  # not similar: every layer adapts


def test_a_fine_tune_choice_is_kept_only_when_it_measures_at_least_as_well_as_feature_extraction():
    from transferkit.selection.auto import prefer_measured

    chosen = decide(50, shift(2.0), LAYERS, groups=8)
    assert chosen.strategy == "fine-tune"
    worse = prefer_measured(chosen, {"fine_tune": 0.45, "feature_extraction": 0.74, "images": 120, "folds": 3},
                            "blocks.4", last="pre_logits")
    assert (worse.strategy, worse.layer, worse.train) == ("feature-extraction", "blocks.4", {})
    assert "fine-tuning 45.0%, feature extraction 74.0%" in worse.summary() and worse.estimates["folds"] == 3
    better = prefer_measured(chosen, {"fine_tune": 0.8, "feature_extraction": 0.74, "images": 120, "folds": 3},
                             "pre_logits", last="pre_logits")
    assert (better.strategy, better.train) == ("fine-tune", chosen.train) and "fine-tuning stays" in better.summary()


def test_choose_strategy_cross_checks_a_fine_tune_choice_on_its_sample():
    data = gratings(21)
    decision = choose_strategy(data, f"random:{TINY}", sample=48, cache=False, device="cpu")
    assert decision.size == "some" and decision.estimates is not None
    est = decision.estimates
    assert est["images"] == 48 and est["folds"] == 3
    assert 0 <= est["fine_tune"] <= 1 and 0 <= est["feature_extraction"] <= 1
    assert decision.strategy == ("fine-tune" if est["fine_tune"] >= est["feature_extraction"] else "feature-extraction")
    assert choose_strategy(data, f"random:{TINY}", sample=48, cache=False, device="cpu", check=False).estimates is None


def test_the_cross_check_fine_tunes_with_the_settings_the_run_will_use(monkeypatch):
    """A user's fine-tune options (fewer epochs, a layer) change the fine-tune that runs: the check must measure that
    one, not auto's defaults."""
    import transferkit.strategies.fine_tune as fine_tune

    made: list[dict] = []

    class Recorded(fine_tune.FineTuneClassifier):
        def fit(self, *args, **kwargs):
            made.append(self.get_params(deep=False))
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(fine_tune, "FineTuneClassifier", Recorded)
    data = gratings(21)
    decision = choose_strategy(data, f"random:{TINY}", sample=48, cache=False, device="cpu",
                               fine_tune_options={"epochs": 1, "head_epochs": 1, "image_size": 32})
    assert decision.estimates is not None and len(made) == decision.estimates["folds"] == 3
    assert all(p["epochs"] == 1 and p["head_epochs"] == 1 and p["image_size"] == 32 for p in made)
    assert all(p["schedule"] == "two-stage" for p in made)  # auto's own settings stay where the user set none


def test_a_fine_tune_that_is_not_cross_checked_says_so():
    many = tk.from_arrays(np.zeros((800, 8, 8, 3), np.uint8), np.arange(800) % 4)  # 200 per class
    decision = choose_strategy(many, f"random:{TINY}", sample=16, cache=False, device="cpu")
    assert decision.strategy == "fine-tune" and decision.size == "many" and decision.estimates is None
    assert "Not cross-checked against feature extraction" in decision.summary()
    some = choose_strategy(gratings(21), f"random:{TINY}", sample=16, cache=False, device="cpu", check=False)
    if some.strategy == "fine-tune":
        assert "the check was turned off" in some.summary()


def test_fit_auto_gives_its_fine_tune_options_to_the_cross_check(monkeypatch, tmp_path):
    import transferkit.selection.auto as auto
    from transferkit.jobs.fit import FitConfig, resolve_auto

    seen: dict = {}

    def fake(train, backbone, **kwargs):
        seen.update(kwargs["fine_tune_options"])
        return auto.decide(50, shift(0.4), LAYERS, groups=8)

    monkeypatch.setattr(auto, "choose_strategy", fake)
    cfg = FitConfig(data="embedded", out=str(tmp_path / "x"), strategy="auto", epochs=2, layer="blocks.4",
                    train={"lr_head": 0.01})
    resolved, _ = resolve_auto(cfg, tk.load_embedded())
    assert seen == {"epochs": 2, "layer": "blocks.4", "lr_head": 0.01}
    assert resolved.strategy == "fine-tune" and resolved.train == {"schedule": "two-stage", "lr_head": 0.01}
