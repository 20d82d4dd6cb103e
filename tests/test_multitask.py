"""Several tasks at once: tables with several label columns, the masked multi-task loss (equal and Kendall
uncertainty weighting), multi-task feature extraction and fine-tuning, their bundles, and fit/predict/evaluate."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

import transferkit as tk
from transferkit.data import MISSING
from transferkit.heads import MultiTaskHead, MultiTaskLoss

from .conftest import COLORS, TINY, bad_files, make_image, tiny_backbone
from .test_cli import assert_user_error, cli, one_json

FIT_TINY = ["--backbone", TINY, "--random-init", "--no-progress", "--val-fraction", "0.34"]
FAST_HEAD = LogisticRegression(max_iter=500)  # the tuned default cross-validates 160 fits per task: seconds each


def bar_side(image) -> str:
    """Where make_image's bright bar is: a second task that depends on the image, not on its colour."""
    rows = np.flatnonzero((np.asarray(image) == 255).all(axis=(1, 2)))
    return "top" if rows.min() < np.asarray(image).shape[0] / 2 else "bottom"


@pytest.fixture
def task_table(tmp_path: Path) -> Path:
    """``items.csv``: ``path,colour,bar`` for 3 colours x 8 images; every 4th ``bar`` cell empty, one row with no
    label at all."""
    root = tmp_path / "items"
    root.mkdir()
    lines = ["path,colour,bar"]
    for c, (name, color) in enumerate(COLORS.items()):
        for i in range(8):
            image = make_image(color, seed=100 * c + i)
            image.save(root / f"{name}{i}.png")
            lines.append(f"{name}{i}.png,{name},{'' if i % 4 == 3 else bar_side(image)}")
    make_image(COLORS["red"], seed=999).save(root / "unlabelled.png")
    lines.append("unlabelled.png,,")
    (root / "items.csv").write_text("\n".join(lines) + "\n")
    return root / "items.csv"


def task_arrays() -> tuple[np.ndarray, dict[str, list]]:
    images, colours, bars = [], [], []
    for c, (name, color) in enumerate(COLORS.items()):
        for i in range(10):
            image = make_image(color, seed=500 + 100 * c + i)
            images.append(np.asarray(image))
            colours.append(name)
            bars.append(None if i % 5 == 4 else bar_side(image))
    return np.stack(images), {"colour": colours, "bar": bars}


# -- data --------------------------------------------------------------------------------------------------------

def test_a_table_with_several_label_columns_is_one_task_per_column(task_table):
    ds = tk.read_multitask_table(task_table, targets="colour,bar")
    assert ds.tasks == ["colour", "bar"] and len(ds) == 24 and ds.modality == "image"
    assert ds.classes == [["blue", "green", "red"], ["bottom", "top"]]
    assert [s[1] for s in ds.skipped] == ["no label for any task"]
    assert (ds.labels[:, 0] != MISSING).all() and (ds.labels[:, 1] == MISSING).sum() == 6  # empty cells kept
    bar = ds.task("bar")  # an ordinary single-task dataset of the items labelled for it
    assert isinstance(bar, tk.ImageDataset) and len(bar) == 18 and bar.classes == ["bottom", "top"]
    assert [p.name for p in bar.items[:3]] == ["red0.png", "red1.png", "red2.png"]
    assert ds.summary()["labelled"] == {"colour": 24, "bar": 18}


def test_a_text_table_reads_the_same_way(tmp_path):
    path = tmp_path / "tickets.jsonl"
    rows = [{"text": "refund my order", "topic": "billing", "urgent": "yes"},
            {"text": "the app is down", "topic": "outage"}, {"text": "invoice again", "topic": "billing",
                                                              "urgent": "no"}, {"text": "", "topic": "x"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = tk.open_dataset(path, targets=["topic", "urgent"])
    assert ds.modality == "text" and ds.items == ["refund my order", "the app is down", "invoice again"]
    assert ds.labels.tolist() == [[0, 1], [1, MISSING], [0, 0]] and ds.skipped[0][1] == "empty text"


def test_column_mistakes_name_the_columns(task_table):
    with pytest.raises(tk.DataError, match=r"no label column 'colur' for targets; its columns are: colour, bar\. "
                                           r"Did you mean: colour\?"):
        tk.read_multitask_table(task_table, targets=["colur", "bar"])
    with pytest.raises(tk.DataError, match="two or more distinct label columns"):
        tk.read_multitask_table(task_table, targets=["colour"])
    with pytest.raises(tk.DataError, match="two or more distinct"):
        tk.read_multitask_table(task_table, targets=["colour", "colour"])


def test_the_split_gives_every_task_both_sides_and_every_class_a_training_item(task_table):
    ds = tk.read_multitask_table(task_table, targets="colour,bar")
    train, val = tk.multitask_split(ds, 0.34, seed=1)
    assert len(train) + len(val) == len(ds) and not set(map(str, train.items)) & set(map(str, val.items))
    for t in range(2):
        assert set(np.unique(train.labels[train.labelled(t), t])) == set(range(len(ds.classes[t])))
        assert len(val.labelled(t))


def test_unreadable_images_leave_every_task(task_table):
    name, data = bad_files()["truncated PNG"]
    (task_table.parent / name).write_bytes(data)
    with task_table.open("a") as f:
        f.write(f"{name},red,top\n")
    ds = tk.drop_unreadable(tk.read_multitask_table(task_table, targets="colour,bar"))
    assert len(ds) == 24 and ds.skipped[-1][0].endswith(name)


# -- the loss ----------------------------------------------------------------------------------------------------

def two_task_head(weighting: str | None = None) -> MultiTaskHead:
    return MultiTaskHead([torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)], [3, 2], weighting)


def test_equal_weighting_is_the_sum_of_each_tasks_cross_entropy_over_its_labelled_items():
    head = two_task_head()
    logits = torch.randn(5, 5)
    labels = torch.tensor([[0, 1], [2, MISSING], [1, 0], [MISSING, 1], [0, MISSING]])
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits[[0, 1, 2, 4], :3], labels[[0, 1, 2, 4], 0]) + ce(logits[[0, 2, 3], 3:], labels[[0, 2, 3], 1])
    assert float(MultiTaskLoss(head)(logits, labels)) == pytest.approx(float(expected), rel=1e-6)
    loss_sum, correct, count = MultiTaskLoss(head).validation_sums(logits, labels)
    assert count == 7 and loss_sum == pytest.approx(float(ce(logits[[0, 1, 2, 4], :3], labels[[0, 1, 2, 4], 0],
                                                                reduction="sum") + ce(logits[[0, 2, 3], 3:],
                                                                                      labels[[0, 2, 3], 1],
                                                                                      reduction="sum")), rel=1e-6)


def test_an_item_without_a_label_sends_no_gradient_into_that_tasks_head():
    head = two_task_head()
    x = torch.randn(3, 4)
    labels = torch.tensor([[0, MISSING], [1, MISSING], [2, MISSING]])  # no item labelled for the second task
    loss = MultiTaskLoss(head)(head(x), labels)
    loss.backward()
    assert torch.isfinite(loss)
    second = head.heads[1]
    assert second.weight.grad is not None and not second.weight.grad.any()  # a zero gradient, not a missing one
    assert head.heads[0].weight.grad.abs().sum() > 0
    logits = torch.randn(2, 5, requires_grad=True)
    MultiTaskLoss(head)(logits, torch.tensor([[0, MISSING], [1, 0]])).backward()
    assert not logits.grad[0, 3:].any() and logits.grad[1, 3:].abs().sum() > 0  # item 0 has no second label
    assert logits.grad[0, :3].abs().sum() > 0


def test_uncertainty_weighting_is_kendalls_and_learns_the_log_variances():
    head = two_task_head("uncertainty")
    with torch.no_grad():
        head.log_vars.copy_(torch.tensor([0.5, -1.0]))
    logits = torch.randn(4, 5)
    labels = torch.tensor([[0, 1], [1, 0], [2, 1], [0, MISSING]])
    ce = torch.nn.functional.cross_entropy
    l1, l2 = ce(logits[:, :3], labels[:, 0]), ce(logits[:3, 3:], labels[:3, 1])
    s = head.log_vars.detach()
    expected = torch.exp(-s[0]) * l1 + s[0] / 2 + torch.exp(-s[1]) * l2 + s[1] / 2
    loss = MultiTaskLoss(head)(logits, labels)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()  # d/ds_t = -exp(-s_t) L_t + 1/2
    assert head.log_vars.grad.tolist() == pytest.approx([float(-torch.exp(-s[0]) * l1 + 0.5),
                                                         float(-torch.exp(-s[1]) * l2 + 0.5)], rel=1e-5)
    assert two_task_head("equal").log_vars is None and head.task_weights()[1]["weight"] == pytest.approx(np.e)


# -- feature extraction ------------------------------------------------------------------------------------------

def test_feature_extraction_reads_features_once_and_each_tasks_head_is_the_single_task_head(tmp_path):
    images, labels = task_arrays()
    backbone = tiny_backbone()
    data = tk.from_task_labels(tk.from_arrays(images), labels)
    model = tk.FeatureExtractionClassifier(backbone, head=FAST_HEAD, progress=False, cache=str(tmp_path)).fit(data)
    assert model.tasks_ == ["colour", "bar"] and [list(c) for c in model.classes_] == [
        ["blue", "green", "red"], ["bottom", "top"]]
    assert model.fit_info_["extraction"]["computed"] == 30  # every image once, for both tasks
    predicted = model.predict(images[:4])
    assert predicted.shape == (4, 2) and set(predicted[:, 1]) <= {"bottom", "top"}
    proba = model.predict_proba(images)
    assert [p.shape for p in proba] == [(30, 3), (30, 2)] and np.allclose([p.sum(1) for p in proba], 1.0)
    single = tk.FeatureExtractionClassifier(backbone, head=FAST_HEAD, progress=False, cache=str(tmp_path)).fit(
        data.task("bar"))
    assert single.fit_info_["extraction"]["computed"] == 0  # the cache had them: same features
    np.testing.assert_allclose(single.predict_proba(images), proba[1], rtol=0, atol=1e-6)
    predicted = model.predict(images)
    has_bar = np.array([b is not None for b in labels["bar"]])
    colour = np.mean(predicted[:, 0] == np.array(labels["colour"]))
    bar = np.mean(predicted[has_bar, 1] == np.array(labels["bar"], dtype=object)[has_bar])
    assert model.score(data) == pytest.approx((colour + bar) / 2)  # each task on the items labelled for it


@pytest.mark.parametrize("head", [FAST_HEAD, "svm"])
def test_a_multitask_feature_extraction_bundle_predicts_as_the_fitted_model(head, tmp_path):
    images, labels = task_arrays()
    model = tk.FeatureExtractionClassifier(tiny_backbone(), head=head, progress=False).fit(
        tk.from_task_labels(tk.from_arrays(images), labels))
    model.save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "transferkit.json").read_text())
    assert [t["name"] for t in meta["tasks"]] == ["colour", "bar"]
    assert meta["classes"] == ["colour:blue", "colour:green", "colour:red", "bar:bottom", "bar:top"]
    assert (tmp_path / "b" / "head.skops").exists() == (head == "svm")  # svm: both heads in one skops file
    assert meta["head"]["type"] == ("sklearn" if head == "svm" else "multitask")
    loaded = tk.load_bundle(tmp_path / "b", progress=False)
    assert loaded.tasks_ == model.tasks_
    for a, b in zip(loaded.predict_proba(images), model.predict_proba(images), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert (loaded.predict(images) == model.predict(images)).all()


def test_scikit_learn_conventions_hold_for_several_tasks():
    images, labels = task_arrays()
    integers = np.stack([np.repeat([0, 1, 2], 10), np.tile([0, 1, -1, 1, 0], 6)], axis=1)  # -1: no label
    model = tk.FeatureExtractionClassifier(tiny_backbone(), head=FAST_HEAD, progress=False)
    with pytest.raises(tk.NotFittedError):
        model.predict(images)
    model.fit(images, integers)  # y as (N, T): tasks "0", "1", integer classes
    assert model.tasks_ == ["0", "1"] and model.predict(images).dtype.kind == "i"
    assert [c.tolist() for c in model.classes_] == [[0, 1, 2], [0, 1]]
    assert clone(model).get_params()["seed"] == 0 and not hasattr(clone(model), "tasks_")
    model.fit(images, integers[:, 0])  # refitted on one task: single-task behaviour again
    assert model.tasks_ is None and model.predict(images).shape == (30,)
    with pytest.raises(tk.DataError, match="label columns \\(tasks colour, bar\\); this strategy learns one task"):
        tk.SmallCNNClassifier(progress=False).fit(images, labels)


# -- fine-tuning -------------------------------------------------------------------------------------------------

def test_fine_tuning_trains_one_backbone_for_every_task_and_the_bundle_keeps_the_weights(tmp_path):
    images, labels = task_arrays()
    data = tk.from_task_labels(tk.from_arrays(images), labels)
    train, val = tk.multitask_split(data, 0.3, seed=0)
    model = tk.FineTuneClassifier(tiny_backbone(), head_epochs=1, epochs=1, task_weighting="uncertainty",
                                  progress=False, run_dir=str(tmp_path / "run")).fit(train, validation=val)
    head = model.head_module_
    assert isinstance(head, MultiTaskHead) and head.sizes == [3, 2] and len(head.heads) == 2
    assert head.log_vars is not None and head.log_vars.detach().abs().sum() > 0  # learnt with the head
    assert [r["stage"] for r in model.fit_info_["history"]] == ["head", "fine-tune"]
    assert {"val_accuracy", "val_loss"} <= set(model.fit_info_["history"][-1])
    assert len(model.fit_info_["task_weights"]) == 2
    model.save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "transferkit.json").read_text())
    assert meta["head"]["config"]["weighting"] == "uncertainty" and meta["params"]["task_weighting"] == "uncertainty"
    loaded = tk.load_bundle(tmp_path / "b", progress=False)
    assert torch.equal(loaded.model_.head.log_vars.detach(), head.log_vars.detach())
    for a, b in zip(loaded.predict_proba(images), model.predict_proba(images), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert 0.0 <= loaded.score(val) <= 1.0


def test_fine_tuning_refuses_what_needs_one_label_per_item():
    images, labels = task_arrays()
    with pytest.raises(tk.TransferkitError, match="augment='strong' mixes one label per item"):
        tk.FineTuneClassifier(tiny_backbone(), head_epochs=1, epochs=0, augment="strong", progress=False).fit(
            images, labels)
    with pytest.raises(tk.TransferkitError, match="task_weighting='uncertainty' weighs the losses of several"):
        tk.FineTuneClassifier(tiny_backbone(), task_weighting="uncertainty", progress=False).fit(
            images, labels["colour"])
    with pytest.raises(tk.TransferkitError, match="must be one of equal, uncertainty"):
        tk.FineTuneClassifier(tiny_backbone(), task_weighting="kendall", progress=False).fit(images, labels)
    data = tk.from_task_labels(tk.from_arrays(images), labels)
    with pytest.raises(tk.TransferkitError, match="validation must be labelled for the same tasks as X"):
        tk.FineTuneClassifier(tiny_backbone(), progress=False).fit(data, validation=data.task("bar"))


# -- the command line --------------------------------------------------------------------------------------------

def test_fit_with_targets_then_predict_and_evaluate_every_task(capsys, task_table, tmp_path):
    out = tmp_path / "mt"
    code, stdout, _ = cli(capsys, "fit", task_table, "--targets", "colour,bar", *FIT_TINY, "--out", out,
                          "--compare-single-task", "--json")
    assert code == 0
    r = one_json(stdout)
    assert r["tasks"] == ["colour", "bar"] and r["verdict"] is None and "no scratch baseline" in r["verdict_note"]
    assert r["train_images"] + r["val_images"] == 24 and r["skipped"][0]["reason"] == "no label for any task"
    for task, t in r["per_task"].items():
        assert 0.0 <= t["accuracy"] <= 1.0 and Path(t["confusion_png"]).name == f"confusion_matrix-{task}.png"
        # feature extraction: the same features and the same head for each task, so exactly the single-task model
        assert t["single_task"]["gain"] == 0.0 and t["single_task"]["accuracy"] == t["accuracy"]
    assert r["per_task"]["bar"]["train_items"] + r["per_task"]["bar"]["val_items"] == 18
    assert r["accuracy"] == pytest.approx(np.mean([t["accuracy"] for t in r["per_task"].values()]))
    meta = json.loads((out / "transferkit.json").read_text())
    assert meta["strategy"] == "feature-extraction" and meta["single_task"]["tasks"].keys() == {"colour", "bar"}

    image = task_table.parent / "red0.png"
    code, stdout, _ = cli(capsys, "predict", out, image, "--json", "--no-progress")
    p = one_json(stdout)
    assert code == 0 and p["tasks"] == ["colour", "bar"] and p["classes"]["bar"] == ["bottom", "top"]
    (row,) = p["predictions"]
    assert row["labels"]["colour"] in p["classes"]["colour"] and set(row["probabilities"]) == {"colour", "bar"}
    assert list(tk.load_bundle(out, progress=False).predict([image])[0]) == [row["labels"]["colour"],
                                                                             row["labels"]["bar"]]
    code, stdout, _ = cli(capsys, "evaluate", out, task_table, "--json", "--no-progress")
    e = one_json(stdout)
    assert code == 0 and e["tasks"]["colour"]["images"] == 24 and e["tasks"]["bar"]["images"] == 18
    assert e["seen"] == r["train_images"] and e["warnings"]  # evaluated on its own training images: flagged
    from transferkit.cli import evaluate as evaluate_cli
    from transferkit.cli import fit as fit_cli

    printed = io.StringIO()
    fit_cli.render(Console(file=printed, width=200), r)
    evaluate_cli.render(Console(file=printed, width=200), e)
    text = printed.getvalue()
    assert "per task" in text and "no scratch baseline" in text and "gain (95% CI)" in text and "+0.0 pts" in text
    assert "mean over tasks" in text and "confusion_matrix-bar.png" in text


def test_fit_with_targets_fine_tunes_with_uncertainty_weighting(capsys, task_table, tmp_path):
    code, stdout, _ = cli(capsys, "fit", task_table, "--targets", "colour,bar", *FIT_TINY, "--strategy",
                          "fine-tune", "--task-weighting", "uncertainty", "--head-epochs", "1", "--epochs", "1",
                          "--image-size", "32", "--out", tmp_path / "ft", "--json")
    assert code == 0
    r = one_json(stdout)
    assert r["task_weighting"] == "uncertainty" and r["epochs_run"] == 2 and r["single_task"] is None
    assert all(set(t["task_weight"]) == {"log_variance", "weight"} for t in r["per_task"].values())
    meta = json.loads((tmp_path / "ft" / "transferkit.json").read_text())
    assert meta["head"]["config"]["weighting"] == "uncertainty" and meta["verdict"] is None
    assert (tmp_path / "ft" / "training_curves.png").is_file() and not (tmp_path / "ft" / "checkpoints").exists()


def test_multitask_mistakes_are_one_line(capsys, task_table, tmp_path):
    out = tmp_path / "never"
    assert_user_error(cli(capsys, "fit", task_table, "--targets", "colour,bars", *FIT_TINY, "--out", out),
                      r"no label column 'bars' for --targets; its columns are: colour, bar\. Did you mean: bar\?")
    assert_user_error(cli(capsys, "fit", task_table, "--targets", "colour", *FIT_TINY, "--out", out),
                      "--targets names two or more")
    assert_user_error(cli(capsys, "fit", task_table, "--targets", "colour,bar", "--task-weighting", "uncertainty",
                          *FIT_TINY, "--out", out), "feature extraction fits each task's head on its own")
    assert_user_error(cli(capsys, "fit", task_table, "--task-weighting", "uncertainty", *FIT_TINY, "--out", out),
                      "--task-weighting applies to multi-task fits; name their label columns with --targets")
    assert_user_error(cli(capsys, "fit", task_table, "--targets", "colour,bar", "--strategy", "scratch", *FIT_TINY,
                          "--out", out), "train with feature-extraction or fine-tune")
    assert_user_error(cli(capsys, "fit", task_table, "--targets", "colour,bar", "--per-class", "3", *FIT_TINY,
                          "--out", out), "--per-class selects classes of one label column")
    assert not out.exists()


def test_texts_with_several_label_columns_fine_tune_and_predict(capsys, tmp_path):
    from .test_text import write_vectors

    vectors = write_vectors(tmp_path, "glove")
    lines = ["text,topic,negated"]
    for i in range(24):
        topic, word = ("fruit", "apple banana") if i % 2 else ("vehicle", "car car")
        negated = i % 3 == 0
        lines.append(f"{word}{' don' + chr(39) + 't' if negated else ''} {i},{topic},{'' if i % 4 == 1 else negated}")
    table = tmp_path / "texts.csv"
    table.write_text("\n".join(lines) + "\n")
    code, stdout, _ = cli(capsys, "fit", table, "--targets", "topic,negated", "--backbone", f"vectors:{vectors}",
                          "--strategy", "fine-tune", "--head-epochs", "1", "--epochs", "1", "--no-progress",
                          "--out", tmp_path / "t", "--json")
    assert code == 0
    r = one_json(stdout)
    assert r["modality"] == "text" and r["per_task"]["negated"]["classes"] == ["False", "True"]
    inputs = tmp_path / "new.txt"
    inputs.write_text("apple banana\ncar don't\n")
    code, stdout, _ = cli(capsys, "predict", tmp_path / "t", inputs, "--json", "--no-progress")
    p = one_json(stdout)
    assert code == 0 and [row["text"] for row in p["predictions"]] == ["apple banana", "car don't"]
    assert all(set(row["labels"]) == {"topic", "negated"} for row in p["predictions"])
