"""Tuned heads: their strength and standardisation chosen by cross-validation, and the exact row-span fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import transferkit as tk
from transferkit.heads import TunedHead, make_head
from transferkit.heads.tuned import PRIOR, _lifted_logistic, cross_validate


def test_the_row_span_fit_is_the_full_fit():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 200)) * 3, np.arange(30) % 3
    lifted = _lifted_logistic(x, y, False, 0.1, 0)
    direct = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit(x, y)
    probe = rng.normal(size=(50, 200)) * 3
    np.testing.assert_allclose(lifted.predict_proba(probe), direct.predict_proba(probe), atol=1e-4)


def test_standardisation_is_chosen_when_the_signal_hides_in_a_tiny_feature():
    rng = np.random.default_rng(1)
    y = np.arange(200) % 2
    x = rng.normal(size=(200, 40))
    x[:, 0] = (y + 0.3 * rng.normal(size=200)) * 1e-3  # the only informative feature, 1000x smaller than the noise
    choice = cross_validate("logistic", x, y)
    assert choice["standardize"] and not choice["default_kept"], choice["cv_accuracy"]
    assert choice["cv_accuracy"] > 0.9
    fitted = TunedHead().fit(x[:150], y[:150])
    raw = LogisticRegression(C=PRIOR["logistic"][1], max_iter=2000).fit(x[:150], y[:150])
    assert np.mean(fitted.predict(x[150:]) == y[150:]) > 0.8 > 0.7 > np.mean(raw.predict(x[150:]) == y[150:])


def test_a_class_with_one_item_falls_back_to_the_prior():
    x, y = np.random.default_rng(2).normal(size=(7, 5)), np.array([0, 0, 0, 1, 1, 1, 2])
    choice = cross_validate("logistic", x, y)
    assert choice["folds"] is None and (choice["standardize"], choice["C"]) == PRIOR["logistic"]
    assert make_head("logistic").fit(x, y).predict(x).shape == (7,)


@pytest.mark.parametrize("per_class", [2, 3, 5])
def test_the_svm_head_is_sane_with_a_few_items_per_class(per_class):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(2, 64)) * 3
    y = np.arange(2 * per_class) % 2
    x = centres[y] + rng.normal(size=(len(y), 64))
    test_y = np.arange(200) % 2
    test_x = centres[test_y] + rng.normal(size=(200, 64))
    head = make_head("svm").fit(x, y)
    proba = head.predict_proba(test_x)
    assert np.allclose(proba.sum(1), 1) and np.array_equal(proba.argmax(1), head.predict(test_x))
    assert np.mean(head.predict(test_x) == test_y) > 0.9  # CalibratedClassifierCV(cv=3) fell to chance at 8/class


def test_the_choice_is_in_fit_info_and_the_bundle(tmp_path, arrays):
    from .conftest import TINY

    images, labels = arrays
    clf = tk.FeatureExtractionClassifier(f"random:{TINY}", cache=False, progress=False).fit(images, labels)
    head = clf.fit_info_["head"]
    assert head["name"] == "logistic" and head["estimator"] in ("LogisticRegression", "Pipeline")
    assert {"standardize", "C", "folds", "cv_accuracy"} <= set(head["choice"])
    assert "grid" not in head["choice"]
    clf.save(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "transferkit.json").read_text())["fit"]["head"] == json.loads(
        json.dumps(head))
    np.testing.assert_allclose(tk.load_bundle(tmp_path / "b", progress=False).predict_proba(images),
                               clf.predict_proba(images), atol=1e-5)
