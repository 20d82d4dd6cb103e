"""Batch JPEG decoding (the GPU extraction path), checked on the CPU against the PIL path."""

import numpy as np
import pytest
import torch

import transferkit as tk

from .conftest import COLORS, cosine, jpeg_folder_of, make_image, tiny_backbone


@pytest.fixture
def jpeg_folder(tmp_path):
    return jpeg_folder_of(tmp_path / "jpegs", 40)


def test_batch_decode_gives_the_same_features_as_pil(jpeg_folder):
    bb = tiny_backbone(64)
    ds = tk.from_folder(jpeg_folder)
    pil = tk.extract_features(bb, ds, cache=False, progress=False, device="cpu", gpu_decode=False)
    batch = tk.extract_features(bb, ds, cache=False, progress=False, device="cpu", gpu_decode=True)
    assert np.array_equal(pil.index, batch.index)
    assert cosine(pil.features, batch.features).min() > 0.99


def test_batch_decode_skips_corrupt_jpegs(jpeg_folder):
    bad = jpeg_folder / "red" / "0.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    out = tk.extract_features(tiny_backbone(), tk.from_folder(jpeg_folder), cache=False, progress=False,
                              device="cpu", gpu_decode=True)
    assert [s[0] for s in out.skipped] == [str(bad)]
    assert len(out.index) == 11


def test_batch_decode_resizes_like_pil_for_a_non_square_input_size(tmp_path):
    import dataclasses

    from PIL import Image
    from torchvision.io import decode_jpeg

    from transferkit.data import build_transform
    from transferkit.features.jpeg_decode import preprocess_decoded

    path = tmp_path / "wide.jpg"
    make_image(COLORS["red"], seed=3, size=40).resize((90, 40)).save(path, quality=95)
    pre = dataclasses.replace(tiny_backbone().preprocessing, input_size=(3, 48, 64))
    pil = build_transform(pre)(Image.open(path))
    pil = pil * torch.tensor(pre.std)[:, None, None] + torch.tensor(pre.mean)[:, None, None]
    batch = preprocess_decoded(decode_jpeg(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)), pre)
    assert batch.shape == pil.shape == (3, 48, 64)
    assert (batch.float() / 255 - pil).abs().mean() < 0.02  # one stretches both sides; keeping the aspect would not
