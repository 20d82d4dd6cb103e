"""Feature cache: computed once per (weights, layer, preprocessing, image content); a broken write never read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import transferkit.features.cache as cache_module
from transferkit import DataError
from transferkit.data import ImageDataset, build_transform, from_arrays, from_folder, open_image
from transferkit.features import FeatureCache, default_cache_dir, extract_features
from transferkit.features.extract import cache_key

from .conftest import make_image, tiny_backbone


def extract(backbone, ds: ImageDataset, **kwargs):
    kwargs.setdefault("batch_size", 8)
    return extract_features(backbone, ds, progress=False, **kwargs)


def cache_root() -> Path:
    return Path(os.environ["TRANSFERKIT_CACHE"])


def store_dir(backbone, layer: str | None = None) -> Path:
    return FeatureCache().store(cache_key(backbone, layer)).directory


def shards(directory: Path) -> list[Path]:
    return sorted(directory.glob("shard-*.safetensors"))


def by_path(ds: ImageDataset, out) -> dict[str, np.ndarray]:
    return {str(ds.items[i]): out.features[row] for row, i in enumerate(out.index)}


# -- hits and misses -----------------------------------------------------------------------------------


def test_second_call_is_served_from_the_cache_and_matches_a_direct_forward(backbone, image_folder: Path):
    ds = from_folder(image_folder)
    backbone.train()
    first = extract(backbone, ds)
    assert (first.computed, first.cached) == (24, 0)
    assert first.features.shape == (24, backbone.num_features) and first.features.dtype == np.float32
    assert first.index.tolist() == list(range(24)) and first.skipped == []
    assert backbone.training  # the caller's mode is restored
    assert cache_root() == default_cache_dir() and shards(store_dir(backbone))

    second = extract(backbone, ds)
    assert (second.computed, second.cached) == (0, 24)
    assert np.array_equal(second.features, first.features)

    transform = build_transform(backbone.preprocessing)
    picks = [0, 13, 23]
    x = torch.stack([transform(open_image(ds.items[i])) for i in picks])
    backbone.eval()
    with torch.no_grad():
        direct = backbone(x).numpy()
    np.testing.assert_allclose(second.features[picks], direct, atol=1e-5, rtol=0)
    assert not np.allclose(direct[0], direct[1])  # distinct images: a constant output would pass the above


def test_edited_file_is_recomputed_and_renamed_file_is_a_hit(backbone, image_folder: Path):
    first_ds = from_folder(image_folder)
    first = by_path(first_ds, extract(backbone, first_ds))
    edited = image_folder / "green" / "3.png"
    make_image((250, 250, 0), seed=999).save(edited)  # same path, new content

    ds = from_folder(image_folder)
    out = extract(backbone, ds)
    assert (out.computed, out.cached) == (1, 23)
    now = by_path(ds, out)
    assert not np.allclose(now[str(edited)], first[str(edited)])
    assert all(np.array_equal(now[p], first[p]) for p in first if p != str(edited))

    moved = image_folder / "red" / "renamed.png"
    shutil.move(image_folder / "red" / "5.png", moved)
    ds = from_folder(image_folder)
    out = extract(backbone, ds)
    assert (out.computed, out.cached) == (0, 24)
    assert np.array_equal(by_path(ds, out)[str(moved)], first[str(image_folder / "red" / "5.png")])


def test_arrays_are_keyed_on_content(backbone, arrays: tuple[np.ndarray, np.ndarray]):
    images, labels = arrays
    first = extract(backbone, from_arrays(images, labels))
    assert first.computed == 36
    changed = images.copy()
    changed[7, 0, 0, 0] ^= 0xFF  # one pixel of one image
    out = extract(backbone, from_arrays(changed, labels))
    assert (out.computed, out.cached) == (1, 35)
    assert np.array_equal(np.delete(out.features, 7, 0), np.delete(first.features, 7, 0))
    # the same bytes read as another dtype or shape are another image
    key = from_arrays(images, labels).content_key(0)
    assert from_arrays(images.view(np.int8), labels).content_key(0) != key
    assert from_arrays(images.reshape(36, 12, 48, 3), labels).content_key(0) != key


def test_another_layer_misses(backbone, image_folder: Path):
    ds = from_folder(image_folder)
    extract(backbone, ds)
    layer = backbone.layers[2]
    out = extract(backbone, ds, layer=layer)
    assert (out.computed, out.cached) == (24, 0)
    assert out.features.shape == (24, backbone.layer_dim(layer))
    assert extract(backbone, ds, layer=layer).computed == 0
    assert extract(backbone, ds).computed == 0  # both namespaces live side by side


def test_another_image_size_misses(backbone, image_folder: Path):
    ds = from_folder(image_folder)
    first = extract(backbone, ds)
    smaller = tiny_backbone(16)
    out = extract(smaller, ds)
    assert (out.computed, out.cached) == (24, 0)
    assert not np.allclose(out.features, first.features)


def test_gpu_features_have_a_cache_of_their_own(backbone):
    # bf16 autocast on CUDA changes the features more than a cache may hide; CPU runs never read them
    cpu, cuda = cache_key(backbone, None, torch.device("cpu")), cache_key(backbone, None, torch.device("cuda"))
    assert cpu == cache_key(backbone, None) and cpu["precision"] == "fp32" and cuda["precision"] == "bf16"
    assert FeatureCache().store(cpu).directory != FeatureCache().store(cuda).directory


def test_changed_weights_miss(backbone, image_folder: Path):
    ds = from_folder(image_folder)
    first = extract(backbone, ds)
    with torch.no_grad():
        next(backbone.trunk.parameters()).mul_(1.5)  # in place: same module, same spec, new weights
    out = extract(backbone, ds)
    assert (out.computed, out.cached) == (24, 0)
    assert not np.allclose(out.features, first.features)


# -- interrupted writes and runs ------------------------------------------------------------------------


def test_garbage_truncated_and_temporary_files_are_never_read(backbone, image_folder: Path):
    ds = from_folder(image_folder)
    reference = extract(backbone, ds, cache=False).features
    keys = [ds.content_key(i) for i in range(len(ds))]
    directory = store_dir(backbone)
    directory.mkdir(parents=True)
    # A complete, valid shard with the right keys but wrong features, under the temporary name atomic_path uses:
    wrong = np.zeros((len(keys), backbone.num_features), dtype=np.float32)
    save_file(
        {"features": wrong},
        str(directory / ".shard-aaaa.safetensors.k3j2.tmp"),
        metadata={"keys": json.dumps(keys)},
    )
    # The same, cut in half under a shard's name (a non-atomic write that died), and plain garbage:
    save_file({"features": wrong}, str(directory / "whole.bin"), metadata={"keys": json.dumps(keys)})
    data = (directory / "whole.bin").read_bytes()
    (directory / "shard-0000truncated.safetensors").write_bytes(data[: len(data) // 2])
    (directory / "whole.bin").unlink()
    (directory / "shard-0001garbage.safetensors").write_bytes(b"this is not a safetensors file\n" * 10)
    (directory / "shard-0002empty.safetensors").write_bytes(b"")

    out = extract(backbone, ds)
    assert (out.computed, out.cached) == (24, 0)
    np.testing.assert_allclose(out.features, reference, atol=1e-6, rtol=0)
    again = extract(backbone, ds)
    assert (again.computed, again.cached) == (0, 24)
    np.testing.assert_allclose(again.features, reference, atol=1e-6, rtol=0)


def test_a_failed_shard_write_leaves_nothing_behind(
    backbone, image_folder: Path, monkeypatch: pytest.MonkeyPatch
):
    ds = from_folder(image_folder)
    real_save = cache_module.save_file

    def dies_half_way(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "save_file", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        extract(backbone, ds)
    directory = store_dir(backbone)
    assert shards(directory) == []
    assert not list(directory.glob("*.tmp")) and not list(directory.glob(".*"))

    monkeypatch.setattr(cache_module, "save_file", real_save)
    assert extract(backbone, ds).computed == 24


@pytest.mark.parametrize("shard_size", [4, 1000], ids=["flushed-per-batch", "flushed-on-the-way-out"])
def test_an_interrupted_run_keeps_what_it_computed(
    backbone, image_folder: Path, monkeypatch: pytest.MonkeyPatch, shard_size: int
):
    ds = from_folder(image_folder)
    reference = extract(backbone, ds, cache=False).features
    real_forward = backbone.forward
    calls = {"n": 0, "fail": True}

    def flaky_forward(x, layer=None):
        calls["n"] += 1
        if calls["fail"] and calls["n"] == 3:
            raise RuntimeError("interrupted on the third batch")
        return real_forward(x, layer)

    monkeypatch.setattr(backbone, "forward", flaky_forward)
    with pytest.raises(RuntimeError, match="third batch"):
        extract(backbone, ds, batch_size=4, shard_size=shard_size)
    assert len(shards(store_dir(backbone))) == (2 if shard_size == 4 else 1)

    calls["fail"] = False
    resumed = extract(backbone, ds, batch_size=4, shard_size=shard_size)
    assert (resumed.computed, resumed.cached) == (16, 8)
    np.testing.assert_allclose(resumed.features, reference, atol=1e-6, rtol=0)


# -- bad inputs ----------------------------------------------------------------------------------------


def test_bad_files_are_skipped_and_listed(backbone, image_folder: Path):
    clean_ds = from_folder(image_folder)
    clean = by_path(clean_ds, extract(backbone, clean_ds))
    (image_folder / "red" / "empty.png").write_bytes(b"")
    (image_folder / "blue" / "notes.png").write_text("not pixels")
    ds = from_folder(image_folder)
    out = extract(backbone, ds)
    assert len(ds) == 26 and out.features.shape == (24, backbone.num_features)
    assert (out.computed, out.cached) == (0, 24)
    bad = {
        ds.items.index(image_folder / "red" / "empty.png"),
        ds.items.index(image_folder / "blue" / "notes.png"),
    }
    assert set(out.index.tolist()) == set(range(26)) - bad
    reasons = dict(out.skipped)
    assert reasons.keys() == {
        str(image_folder / "red" / "empty.png"),
        str(image_folder / "blue" / "notes.png"),
    }
    assert "zero-byte" in reasons[str(image_folder / "red" / "empty.png")]
    assert "not an image" in reasons[str(image_folder / "blue" / "notes.png")]
    now = by_path(ds, out)
    assert now.keys() == clean.keys()
    assert all(np.array_equal(now[p], clean[p]) for p in clean)


def test_too_many_bad_files_fail_but_keep_the_good_features(backbone, image_folder: Path):
    for name in ("a.png", "b.png", "c.png"):
        (image_folder / "green" / name).write_bytes(b"")
    ds = from_folder(image_folder)  # 3 bad of 27: 11% > the default 10%
    with pytest.raises(DataError, match="max_bad_fraction") as info:
        extract(backbone, ds)
    assert "3 of 27" in str(info.value)
    with pytest.raises(DataError, match="max_bad_fraction"):
        extract(backbone, ds, max_bad_fraction=0.05)
    out = extract(backbone, ds, max_bad_fraction=0.2)
    assert (out.computed, out.cached) == (0, 24) and len(out.skipped) == 3


# -- cache switches ------------------------------------------------------------------------------------


def test_cache_false_writes_nothing(backbone, image_folder: Path):
    ds = from_folder(image_folder)
    out = extract(backbone, ds, cache=False)
    assert (out.computed, out.cached) == (24, 0) and out.features.shape == (24, backbone.num_features)
    assert list(cache_root().rglob("*")) == []
    extract(backbone, ds)  # the default does write there: the check above can fail
    assert shards(store_dir(backbone))


def test_explicit_cache_directory(backbone, image_folder: Path, tmp_path: Path):
    ds = from_folder(image_folder)
    elsewhere = tmp_path / "my-cache"
    assert extract(backbone, ds, cache=str(elsewhere)).computed == 24
    assert extract(backbone, ds, cache=FeatureCache(elsewhere)).computed == 0
    assert list(elsewhere.rglob("shard-*.safetensors")) and list(cache_root().rglob("*")) == []


def test_return_features_false_only_fills_the_cache(backbone, image_folder: Path):
    ds = from_folder(image_folder)
    filled = extract(backbone, ds, return_features=False)
    assert filled.features is None
    assert (filled.computed, filled.cached) == (24, 0) and filled.index.tolist() == list(range(24))
    assert shards(store_dir(backbone))
    again = extract(backbone, ds, return_features=False)
    assert (again.computed, again.cached, again.features) == (0, 24, None)
    out = extract(backbone, ds)
    assert (out.computed, out.cached) == (0, 24)
    np.testing.assert_allclose(out.features, extract(backbone, ds, cache=False).features, atol=1e-6, rtol=0)
