"""Bundles remember what they were trained on; rank, fit and evaluate say when they meet those items again."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit as tk
from transferkit.bundle import TRAINING_ITEMS_FILE, read_meta
from transferkit.cli import main
from transferkit.curve import CurveConfig, learning_curve
from transferkit.data.seen import count_seen, item_digests, training_digests
from transferkit.selection.rank import rank_backbones

from .conftest import TINY
from .test_curve import FAST


def test_digests_follow_the_content_not_the_position(arrays):
    images, labels = arrays
    digests = item_digests(tk.from_arrays(images, labels))
    assert digests.dtype == np.int64 and len(np.unique(digests)) == len(images)
    shuffled = item_digests(tk.from_arrays(images[::-1].copy(), labels[::-1].copy()))
    assert np.array_equal(shuffled, digests[::-1])
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1  # one bit of one pixel
    assert item_digests(tk.from_arrays(changed, labels))[0] != digests[0]
    texts = tk.from_texts(["a cat", "a dog", "a cat"], [0, 1, 0])
    d = item_digests(texts)
    assert d[0] == d[2] != d[1] and len(training_digests(texts)) == 2
    assert count_seen(None, texts) is None and count_seen(training_digests(texts), texts) == 3


@pytest.fixture
def split_arrays(arrays):
    """(the first 8 images of each class, the other 4 of each class), as datasets."""
    images, labels = arrays
    first = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(3)])
    rest = np.setdiff1d(np.arange(len(labels)), first)
    return tk.from_arrays(images[first], labels[first]), tk.from_arrays(images[rest], labels[rest])


def test_bundle_keeps_training_items_and_rank_counts_them(split_arrays, tmp_path):
    seen, unseen = split_arrays
    clf = tk.ScratchClassifier(TINY, epochs=1, image_size=32, progress=False, augment="none").fit(seen)
    src = tk.save_bundle(clf, tmp_path / "src")
    meta = read_meta(src)
    assert meta["training_items"]["model"] == meta["training_items"]["backbone"] == 24
    assert TRAINING_ITEMS_FILE in meta["files"]
    assert len(tk.create_backbone(f"bundle:{src}").source_items) == 24

    both = tk.from_arrays(np.concatenate([seen.items, unseen.items]), np.concatenate([seen.labels, unseen.labels]))
    rows = rank_backbones(both, [f"bundle:{src}", f"random:{TINY}"], cache=False, progress=False)
    by_spec = {r["backbone"]: r["source_seen"] for r in rows}
    assert by_spec == {f"bundle:{src}": 24, f"random:{TINY}": None}
    (row,) = rank_backbones(unseen, [f"bundle:{src}"], cache=False, progress=False)
    assert row["source_seen"] == 0

    # feature extraction trains only the head: the model saw both sets, its backbone only the source's items
    fe = tk.FeatureExtractionClassifier(f"bundle:{src}", cache=False, progress=False).fit(unseen)
    fe_dir = tk.save_bundle(fe, tmp_path / "fe")
    items = read_meta(fe_dir)["training_items"]
    assert (items["model"], items["backbone"]) == (36, 24)
    assert len(tk.load_bundle(fe_dir).train_items_) == 36  # restored, so saving it again keeps them
    assert read_meta(tk.save_bundle(tk.load_bundle(fe_dir), tmp_path / "again"))["training_items"]["model"] == 36

    private = tk.save_bundle(clf, tmp_path / "src", training_items=False)  # over the first one: the file goes
    assert read_meta(private)["training_items"] is None and not (private / TRAINING_ITEMS_FILE).exists()
    assert tk.create_backbone(f"bundle:{private}").source_items is None


def test_a_damaged_training_items_file_is_refused(split_arrays, tmp_path):
    clf = tk.ScratchClassifier(TINY, epochs=1, image_size=32, progress=False, augment="none").fit(split_arrays[0])
    src = tk.save_bundle(clf, tmp_path / "src")
    (src / TRAINING_ITEMS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(tk.BundleError, match="training_items.safetensors.*re-create it"):
        tk.create_backbone(f"bundle:{src}")


def test_cli_warns_when_a_source_met_its_own_training_images(capsys, image_folder, tmp_path):
    src = tmp_path / "src"
    common = ["--image-size", "32", "--epochs", "1", "--no-progress", "--no-baseline"]
    assert main(["fit", str(image_folder), "--backbone", TINY, "--strategy", "scratch", "--out", str(src),
                 *common]) == 0
    trained = read_meta(src)["training_items"]["model"]
    assert 0 < trained < 24  # the training split of the 24 images
    capsys.readouterr()

    assert main(["rank", str(image_folder), "--candidates", f"bundle:{src}", "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"was trained on {trained} of the 24 ranked images: its score is optimistic" in out

    assert main(["evaluate", str(src), str(image_folder), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seen"] == trained and "the scores are optimistic" in result["warnings"][0]

    # another seed: another validation split, partly made of the source's training images
    assert main(["fit", str(image_folder), "--backbone", f"bundle:{src}", "--strategy", "feature-extraction",
                 "--seed", "3", "--out", str(tmp_path / "target"), "--json", "--no-progress", "--no-baseline"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["val_seen_by_source"] <= result["val_images"]
    assert "the accuracy is optimistic" in result["warnings"][0]
    assert read_meta(tmp_path / "target")["data"]["val_seen_by_source"] == result["val_seen_by_source"]
    assert main(["fit", str(image_folder), "--backbone", f"bundle:{src}", "--strategy", "feature-extraction",
                 "--out", str(tmp_path / "same-split"), "--json", "--no-progress", "--no-baseline"]) == 0
    result = json.loads(capsys.readouterr().out)  # the source's own seed: its validation images, never trained on
    assert result["val_seen_by_source"] == 0 and result["warnings"] == []


def test_cli_can_leave_the_training_items_out(capsys, image_folder, tmp_path):
    src = tmp_path / "src"
    assert main(["pretrain", str(image_folder), "--arch", TINY, "--image-size", "32", "--epochs", "1",
                 "--no-training-items", "--no-progress", "--out", str(src)]) == 0
    assert read_meta(src)["training_items"] is None and not (src / TRAINING_ITEMS_FILE).exists()
    capsys.readouterr()
    assert main(["rank", str(image_folder), "--candidates", f"bundle:{src}", "--json", "--no-progress"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["ranking"]
    assert row["source_seen"] is None  # unknown, not "none of them"


def test_curve_warns_when_the_source_saw_the_held_out_images(split_arrays, tmp_path):
    seen, unseen = split_arrays
    src = tk.save_bundle(tk.ScratchClassifier(TINY, epochs=1, image_size=32, progress=False,
                                              augment="none").fit(seen), tmp_path / "src")
    cfg = CurveConfig(per_class=[2], seeds=1, **{**FAST, "backbone": f"bundle:{src}"})
    doc = learning_curve(unseen, cfg, tmp_path / "leaky", test=seen)
    assert doc["test_seen_by_source"] == 24 and "the transfer accuracies are optimistic" in doc["warnings"][0]
    doc = learning_curve(seen, cfg, tmp_path / "fair", test=unseen)
    assert doc["test_seen_by_source"] == 0 and doc["warnings"] == []
