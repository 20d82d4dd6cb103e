"""Start-up cost (issue 20): what a command does not use is not imported, and a feature-extraction re-fit whose
features are all cached builds no backbone yet writes the very bundle a cold fit writes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import transferkit as tk
from transferkit.backbones import _registry
from transferkit.features.backbone_cache import CachedBackbone, cached_backbone

from .conftest import TINY

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL_LIBRARIES = {"timm", "torchvision", "transformers"}


def _run(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter (this checkout's source first); the modules it had loaded at the end."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_transferkit_imports_neither_torch_nor_scikit_learn():
    loaded = _run("import transferkit")
    assert not {"torch", "sklearn", *MODEL_LIBRARIES} & loaded


def test_the_cli_and_its_help_import_no_model_library():
    loaded = _run("import transferkit.cli\nfrom transferkit.cli import build_parser\nbuild_parser()")
    assert not MODEL_LIBRARIES & loaded


def test_the_public_api_resolves_lazily():
    assert all(getattr(tk, name) is not None for name in tk.__all__)
    assert set(tk.__all__) <= set(dir(tk))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        tk.nothing_here  # noqa: B018


def _fit_args(data: Path, out: Path) -> list[str]:
    return ["fit", str(data), "--backbone", TINY, "--random-init", "--strategy", "feature-extraction",
            "--no-baseline", "--out", str(out), "--no-progress", "--json"]


def test_a_cached_refit_imports_no_model_library_and_writes_the_same_bundle(image_folder, tmp_path):
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    fit = "from transferkit.cli import main\nassert main({args!r}) == 0"
    assert "timm" in _run(fit.format(args=_fit_args(image_folder, cold)))  # the cold fit builds the model
    loaded = _run(fit.format(args=_fit_args(image_folder, warm)))
    assert not {*MODEL_LIBRARIES, "matplotlib"} & loaded  # the confusion PNG is drawn with PIL
    assert (warm / "confusion_matrix.png").is_file()
    assert (cold / "model.safetensors").read_bytes() == (warm / "model.safetensors").read_bytes()
    meta = json.loads((warm / "transferkit.json").read_text())
    assert meta["fit"]["extraction"]["computed"] == 0
    assert meta["backbone"] == json.loads((cold / "transferkit.json").read_text())["backbone"]


def _fit(arrays, cache):
    images, labels = arrays
    return tk.FeatureExtractionClassifier(TINY, pretrained=False, cache=str(cache), progress=False).fit(images, labels)


def test_a_cached_refit_builds_no_backbone_and_predicts_like_the_cold_fit(arrays, tmp_path, monkeypatch):
    cold = _fit(arrays, tmp_path / "cache")
    cold.save(tmp_path / "cold")
    with monkeypatch.context() as m:
        m.setitem(_registry._SOURCES, "timm", dataclasses.replace(
            _registry._SOURCES["timm"], create=lambda *a, **k: pytest.fail("the backbone was built")))
        warm = _fit(arrays, tmp_path / "cache")
        warm.save(tmp_path / "warm")
        assert isinstance(warm.backbone_, CachedBackbone) and not warm.backbone_._built
    assert warm.fit_info_["extraction"]["computed"] == 0
    assert (tmp_path / "cold/model.safetensors").read_bytes() == (tmp_path / "warm/model.safetensors").read_bytes()
    a, b = load_file(tmp_path / "cold/model.safetensors"), load_file(tmp_path / "warm/model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # new images: the cached backbone builds the network on demand, and it is the same network
    fresh = np.random.default_rng(7).integers(0, 255, (5, 24, 24, 3), dtype=np.uint8)
    np.testing.assert_allclose(warm.predict_proba(fresh), cold.predict_proba(fresh), atol=1e-6)
    assert warm.backbone_._built
    reloaded = tk.load_bundle(tmp_path / "warm", progress=False)
    np.testing.assert_allclose(reloaded.predict_proba(fresh), cold.predict_proba(fresh), atol=1e-6)


def test_a_damaged_copy_of_the_trunk_falls_back_to_the_network(arrays, tmp_path):
    cold = _fit(arrays, tmp_path / "cache")
    cold.save(tmp_path / "cold")
    (trunk,) = (tmp_path / "cache/backbones").glob("*/trunk.safetensors")
    trunk.write_bytes(b"not safetensors")
    warm = _fit(arrays, tmp_path / "cache")
    warm.save(tmp_path / "warm")
    assert (tmp_path / "cold/model.safetensors").read_bytes() == (tmp_path / "warm/model.safetensors").read_bytes()


def test_weights_without_a_known_file_take_no_part(tmp_path):
    assert cached_backbone(tk.FeatureCache(tmp_path), "timm:resnet18", pretrained=True) is None  # hub weights
    assert cached_backbone(tk.FeatureCache(tmp_path), TINY, pretrained=False) is None  # nothing kept yet


def test_the_confusion_png_shades_each_cell_by_its_count(tmp_path):
    from PIL import Image

    from transferkit.evaluation import save_confusion_png

    cm = np.array([[9, 0, 1], [0, 4, 0], [3, 0, 6]])
    image = np.asarray(Image.open(save_confusion_png(cm, ["a", "bb", "ccc"], tmp_path / "cm.png")).convert("RGB"))
    darkest = np.argwhere((np.abs(image.astype(int) - (8, 48, 107)) < 6).all(-1))  # the largest count's shade
    assert len(darkest) > 500
    assert np.ptp(darkest[:, 0]) < 50 and np.ptp(darkest[:, 1]) < 50  # one cell: 9, the only count at the peak
    empty = (np.abs(image.astype(int) - (247, 251, 255)) < 3).all(-1).sum()
    assert empty > 4 * len(darkest)  # the four zero cells


def test_a_cached_refit_decodes_only_the_images_the_cache_has_not_seen(image_folder, tmp_path, monkeypatch):
    from transferkit.data._dataset import ImageDataset
    from transferkit.jobs.fit import FitConfig, fit_bundle, prepare_data

    cfg = FitConfig(data=str(image_folder), out=str(tmp_path / "b"), backbone=TINY, random_init=True,
                    baseline=False, progress=False)
    fit_bundle(cfg)
    (image_folder / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    decoded: list[str] = []
    load = ImageDataset.load
    monkeypatch.setattr(ImageDataset, "load", lambda self, i: (decoded.append(str(self.items[i])), load(self, i))[1])
    data, _, _ = prepare_data(cfg)
    assert decoded == [str(image_folder / "red" / "broken.png")]  # the 24 cached images were not decoded again
    assert len(data) == 24 and [s[0] for s in data.skipped] == [str(image_folder / "red" / "broken.png")]


def test_a_cache_that_cannot_keep_the_trunk_still_fits(arrays, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "backbones").write_text("a file where the folder would go")  # mkdir fails, as read-only
    clf = _fit(arrays, tmp_path / "cache")
    assert clf.fit_info_["extraction"]["computed"] == len(arrays[1])
    assert not isinstance(_fit(arrays, tmp_path / "cache").backbone_, CachedBackbone)
