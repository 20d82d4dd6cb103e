"""The verdict's cheap baselines: a small CNN at the images' native resolution, and TF-IDF + logistic regression."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

import transferkit as tk
from transferkit.strategies import SmallCNNClassifier, TfidfClassifier
from transferkit.strategies.small_cnn import CONVERGED_EPOCHS, loss_floor, planned_epochs
from transferkit.verdict import marks

# a few cheap steps on a few channels: enough for the synthetic tasks below, a second or two per fit on a CPU
FAST = {"width": 8, "steps": 60, "batch_size": 16, "progress": False}


def squares(n_per_class: int, seed: int, size: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Grey ``(N, size, size)`` uint8 noise with a bright 6-px square in one of 4 quadrants: the quadrant is the class."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    half = size // 2
    for c in range(4):
        for _ in range(n_per_class):
            a = rng.normal(60, 20, (size, size))
            top, left = (c // 2) * half + rng.integers(0, half - 6), (c % 2) * half + rng.integers(0, half - 6)
            a[top:top + 6, left:left + 6] = 230
            images.append(np.clip(a, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels)


def write_pngs(root: Path, images: np.ndarray, labels: np.ndarray, mode: str = "L", size: tuple[int, int] | None = None,
               ) -> Path:
    """``root/<class>/<i>.png``, resized to ``size`` (width, height) and saved as ``mode``."""
    for i, (a, c) in enumerate(zip(images, labels, strict=True)):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(a).convert(mode)
        (img.resize(size, Image.Resampling.NEAREST) if size else img).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def square_task() -> tuple[tk.ImageDataset, tk.ImageDataset]:
    return tk.from_arrays(*squares(12, seed=1)), tk.from_arrays(*squares(10, seed=2))


@pytest.fixture(scope="module")
def fitted(square_task) -> SmallCNNClassifier:
    return SmallCNNClassifier(seed=0, **FAST).fit(square_task[0])


def test_small_cnn_learns_where_the_square_is(square_task, fitted):
    train, test = square_task
    assert fitted.score(test) > 0.8  # chance is 0.25
    info = fitted.fit_info_
    assert info["input_size"] == [20, 20] and info["channels"] == 1  # native resolution, grey
    assert info["planned_epochs"] * math.ceil(len(train) / info["batch_size"]) >= FAST["steps"]
    assert info["epochs"] == len(info["history"]) <= info["planned_epochs"]
    assert info["epochs"] * info["batch_size"] >= len(train)
    assert info["parameters"] == sum(p.numel() for p in fitted.model_.parameters())
    assert info["seconds"] > 0 and info["skipped"] == []
    assert 0 < info["mean"][0] < 1 and info["std"][0] > 0  # the training set's own statistics
    assert fitted.classes_.tolist() == ["0", "1", "2", "3"]  # a dataset's class names


def test_small_cnn_is_deterministic_for_a_seed(square_task, fitted):
    train, test = square_task
    again = SmallCNNClassifier(seed=0, **FAST).fit(train)
    np.testing.assert_array_equal(again.predict_proba(test), fitted.predict_proba(test))
    other = SmallCNNClassifier(seed=1, **FAST).fit(train)
    assert not np.allclose(other.predict_proba(test), fitted.predict_proba(test))


def test_small_cnn_fits_the_same_beside_others_in_threads(square_task, fitted):
    """The verdict trains its folds' CNNs side by side: a fit must not depend on torch's global generator or on what
    trains in the next thread."""
    import torch

    from transferkit.jobs.baseline import _side_by_side

    train, test = square_task
    torch.manual_seed(123)  # the global generator is not what a fit draws from
    jobs = [(f"job{i}", SmallCNNClassifier(seed=0 if i == 0 else i, **FAST), {"train": train, "val": test})
            for i in range(3)]
    with _side_by_side(jobs) as results:
        got = dict(results())
    assert sorted(got) == ["job0", "job1", "job2"]
    assert got["job0"] == marks(fitted, test)  # the same model as the one fitted alone
    # up to float rounding: a core's share trains as one stacked network (tests/test_small_cnn_folds.py)
    np.testing.assert_allclose(jobs[0][1].predict_proba(test), fitted.predict_proba(test), atol=0.01)
    assert not np.allclose(jobs[1][1].predict_proba(test), fitted.predict_proba(test))  # a seed of its own


def test_the_step_budget_follows_the_data_size():
    # 200 steps: one epoch each for 16 images would be 200 epochs; the cap keeps tiny sets at 50
    assert planned_epochs(16, 16, 200, 50) == 50
    assert planned_epochs(50, 16, 200, 50) == 50  # 4 steps per epoch: the smallest tuned setting, unchanged
    assert planned_epochs(300, 16, 200, 50) == 11  # 19 steps per epoch
    assert planned_epochs(1000, 16, 200, 50) == 4
    assert SmallCNNClassifier().max_epochs == 50


def test_loss_floor_is_the_least_label_smoothed_cross_entropy():
    import torch

    for k, eps in ((2, 0.1), (10, 0.1), (3, 0.3)):
        target = torch.full((1, k), eps / k)
        target[0, 0] += 1 - eps
        best = torch.nn.functional.cross_entropy(target.log(), torch.tensor([0]), label_smoothing=eps)
        assert loss_floor(k, eps) == pytest.approx(float(best), abs=1e-6)
        worse = torch.nn.functional.cross_entropy((target + 0.1).log(), torch.tensor([0]), label_smoothing=eps)
        assert float(worse) > loss_floor(k, eps)
    assert loss_floor(4, 0.0) == 0.0


def test_small_cnn_stops_once_the_training_set_is_fitted(square_task):
    train, test = square_task
    settings = {**FAST, "steps": 600, "max_epochs": 200}  # 200 epochs planned: far more than this task needs
    early = SmallCNNClassifier(seed=0, converged_loss=0.3, **settings).fit(train)
    info = early.fit_info_
    assert info["planned_epochs"] == 200 and info["converged_at"] == info["epochs"] == len(info["history"]) < 200
    floor = loss_floor(4, early.label_smoothing)
    fitted = "".join("1" if e["train_accuracy"] == 1.0 and e["loss"] <= floor + 0.3 else "0" for e in info["history"])
    assert fitted.find("1" * CONVERGED_EPOCHS) == len(fitted) - CONVERGED_EPOCHS  # stopped at the first such run
    assert early.score(test) > 0.8
    # off: every planned epoch runs
    full = SmallCNNClassifier(seed=0, converged_loss=None, **{**settings, "steps": 30, "max_epochs": 10}).fit(train)
    assert full.fit_info_["epochs"] == full.fit_info_["planned_epochs"] == 10 and full.fit_info_["converged_at"] is None


def test_small_cnn_caps_large_files_and_keeps_their_aspect(tmp_path):
    images, labels = squares(4, seed=3)
    root = write_pngs(tmp_path / "wide", images, labels, mode="RGB", size=(100, 50))  # grey content saved as RGB
    clf = SmallCNNClassifier(seed=0, **{**FAST, "steps": 4}).fit(tk.from_folder(root))
    assert clf.fit_info_["input_size"] == [16, 32]  # (height, width): longest side capped at max_size=32
    assert clf.fit_info_["channels"] == 1  # R = G = B everywhere: one channel is enough
    small = SmallCNNClassifier(max_size=20, seed=0, **{**FAST, "steps": 4}).fit(tk.from_folder(root))
    assert small.fit_info_["input_size"] == [10, 20]


def test_small_cnn_keeps_colour_when_there_is_colour(square_task):
    images, labels = squares(4, seed=4)
    rgb = np.stack([images, images // 2, 255 - images], axis=-1)
    clf = SmallCNNClassifier(seed=0, **{**FAST, "steps": 4}).fit(rgb, labels)
    assert clf.fit_info_["channels"] == 3 and clf.fit_info_["input_size"] == [20, 20]
    assert clf.classes_.tolist() == [0, 1, 2, 3]  # integer labels as y give integer classes
    assert clf.predict_proba(rgb[:5]).shape == (5, 4)


def test_small_cnn_skips_and_reports_unreadable_files(tmp_path):
    images, labels = squares(6, seed=5)
    root = write_pngs(tmp_path / "data", images, labels)
    bad = root / "c0" / "broken.png"
    bad.write_bytes(b"not a png")
    clf = SmallCNNClassifier(seed=0, **{**FAST, "steps": 4}).fit(tk.from_folder(root))
    assert clf.fit_info_["train_images"] == 24
    assert [Path(p).name for p, _ in clf.fit_info_["skipped"]] == ["broken.png"]
    paths = [root / "c1" / "6.png", bad, root / "c2" / "12.png"]
    proba, index, skipped = clf.predict_proba_details(paths)
    assert proba.shape == (2, 4) and index.tolist() == [0, 2]
    assert skipped[0][0] == str(bad) and "Pillow" in skipped[0][1]
    with pytest.raises(tk.DataError, match="broken.png"):
        clf.predict(paths)


def test_small_cnn_is_a_scikit_learn_estimator(fitted):
    params = fitted.get_params()
    assert params["width"] == 8 and params["max_size"] == 32 and params["flip"] is False
    copy = clone(fitted)
    assert copy.get_params() == params and not hasattr(copy, "classes_")
    with pytest.raises(tk.NotFittedError):
        copy.predict(np.zeros((1, 20, 20), np.uint8))
    assert copy.set_params(width=4).width == 4


def test_small_cnn_refuses_bad_parameters_and_saving(square_task, fitted, tmp_path):
    with pytest.raises(tk.TransferkitError, match="crop_padding"):
        SmallCNNClassifier(crop_padding=0.7).fit(square_task[0])
    with pytest.raises(tk.TransferkitError, match="'width'"):
        SmallCNNClassifier(width=0).fit(square_task[0])
    with pytest.raises(tk.TransferkitError, match="converged_loss"):
        SmallCNNClassifier(converged_loss=0).fit(square_task[0])
    with pytest.raises(tk.TransferkitError, match="baseline"):
        fitted.save(tmp_path / "bundle")


def test_small_cnn_flip_and_fixed_epochs(square_task):
    clf = SmallCNNClassifier(seed=0, epochs=3, flip=True, crop_padding=0, **FAST).fit(square_task[0])
    assert clf.fit_info_["epochs"] == 3 and len(clf.fit_info_["history"]) == 3


def test_small_cnn_trains_on_one_thread_and_restores_the_count(square_task):
    import torch

    before = torch.get_num_threads()
    clf = SmallCNNClassifier(seed=0, **{**FAST, "steps": 2}).fit(square_task[0])
    assert torch.get_num_threads() == before and clf.get_params()["threads"] == 1


def test_marks_reads_the_small_cnn(square_task, fitted):
    _, test = square_task
    m = marks(fitted, test)
    assert len(m) == len(test) and set(m) <= {"0", "1"}
    assert m.count("1") / len(m) == pytest.approx(fitted.score(test))


TOPICS = {"sport": "football", "cooking": "recipe", "music": "guitar"}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "with", "as", "this", "by", "at",
          "from", "or", "an", "be"]


def keyword_texts(n_per_class: int, seed: int, filler: int = 4) -> tk.TextDataset:
    """``filler`` random common words and one topic keyword per text: the keyword is the class."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for topic, word in TOPICS.items():
        for _ in range(n_per_class):
            words = list(rng.choice(FILLER, filler))
            words.insert(int(rng.integers(0, filler + 1)), word)
            texts.append(" ".join(words))
            labels.append(topic)
    return tk.from_texts(texts, labels)


def test_tfidf_learns_the_keyword_and_chooses_C_by_cross_validation():
    train, test = keyword_texts(15, seed=0), keyword_texts(20, seed=1)
    clf = TfidfClassifier().fit(train)
    assert clf.score(test) > 0.9  # chance is 1/3
    info = clf.fit_info_
    assert info["chosen_by"] == "5-fold stratified cross-validation" and info["C"] == clf.C_
    assert set(info["cv_accuracy"]) == {str(c) for c in clf.Cs} and info["features"] > 0
    assert clf.predict(["we played football today"]).tolist() == ["sport"]
    assert marks(clf, test).count("1") / len(test) == pytest.approx(clf.score(test))


def test_tfidf_folds_follow_the_smallest_class_and_fall_back_to_a_fixed_C():
    texts, labels = ["football a", "football b", "recipe a", "recipe b", "recipe c", "guitar a"], \
        ["sport", "sport", "cooking", "cooking", "cooking", "music"]
    clf = TfidfClassifier().fit(texts, labels)
    assert clf.fit_info_["chosen_by"].startswith("fixed") and clf.C_ == 10.0
    two = TfidfClassifier().fit(texts[:5], labels[:5])
    assert two.fit_info_["chosen_by"] == "2-fold stratified cross-validation"
    given = TfidfClassifier(C=3.0).fit(texts, labels)
    assert given.C_ == 3.0 and given.fit_info_["chosen_by"] == "given"


def test_tfidf_is_deterministic_and_a_scikit_learn_estimator():
    train, test = keyword_texts(5, seed=2), keyword_texts(5, seed=3)
    a = TfidfClassifier(char_ngrams=True, seed=4).fit(train)
    b = clone(a).fit(train)
    np.testing.assert_array_equal(a.predict_proba(test), b.predict_proba(test))
    assert a.get_params()["char_ngrams"] is True and a.modality_ == "text"
    with pytest.raises(tk.NotFittedError):
        TfidfClassifier().predict(["football"])
    with pytest.raises(tk.TransferkitError, match="positive"):
        TfidfClassifier(C=0).fit(train)
    with pytest.raises(tk.TransferkitError, match="baseline"):
        a.save("anywhere")


def test_tfidf_integer_labels_and_a_class_it_never_saw():
    texts = ["football x", "football y", "recipe x", "recipe y"]
    clf = TfidfClassifier().fit(tk.from_texts(texts, [0, 0, 2, 2], classes=["sport", "music", "cooking"]))
    proba = clf.predict_proba(["recipe z"])
    assert proba.shape == (1, 3) and proba[0, 1] == 0 and clf.predict(["recipe z"]).tolist() == ["cooking"]
    ints = TfidfClassifier().fit(texts, [0, 0, 1, 1])
    assert ints.classes_.tolist() == [0, 1] and ints.predict(["football z"]).tolist() == [0]
