"""Fast-tier fixtures: tiny random backbones, small synthetic images, an isolated cache, no network."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY = "timm:test_efficientnet"
COLORS = {"red": (200, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 210)}


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path_factory.mktemp("cache")))


def tiny_backbone(size: int = 32):
    """A ~100k-parameter timm EfficientNet, random init (seeded), run at ``size`` px: fast on any CPU."""
    from transferkit import create_backbone

    bb = create_backbone(TINY, pretrained=False)
    bb.preprocessing = bb.preprocessing.with_image_size(size)
    return bb


@pytest.fixture
def backbone():
    return tiny_backbone()


def make_image(color: tuple[int, int, int], seed: int, size: int = 24) -> Image.Image:
    """A coloured square with noise and a random bright bar: classes differ by colour, images by details."""
    rng = np.random.default_rng(seed)
    a = np.clip(np.array(color)[None, None, :] + rng.normal(0, 25, (size, size, 3)), 0, 255)
    r = rng.integers(0, size - 4)
    a[r:r + 3, :, :] = 255
    return Image.fromarray(a.astype(np.uint8))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """``root/<class>/<n>.png``: 3 classes x 8 images."""
    root = tmp_path / "images"
    for c, (name, color) in enumerate(COLORS.items()):
        (root / name).mkdir(parents=True)
        for i in range(8):
            make_image(color, seed=100 * c + i).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    """(36, 24, 24, 3) uint8 images and labels 0..2, 12 per class."""
    images, labels = [], []
    for c, color in enumerate(COLORS.values()):
        for i in range(12):
            images.append(np.asarray(make_image(color, seed=1000 + 100 * c + i)))
            labels.append(c)
    return np.stack(images), np.array(labels)


def bad_files() -> dict[str, tuple[str, bytes]]:
    """What a folder of images can hold that no decoder reads, by kind: ``(file name, bytes)``."""
    png, jpeg = io.BytesIO(), io.BytesIO()
    make_image(COLORS["red"], seed=99, size=48).save(png, "PNG")
    make_image(COLORS["red"], seed=99, size=48).save(jpeg, "JPEG", quality=90)
    return {
        "corrupt bytes": ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20),
        "truncated PNG": ("cut.png", png.getvalue()[: len(png.getvalue()) // 2]),
        "truncated JPEG": ("cut.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2]),
        "zero-byte": ("empty.png", b""),
        "text named .png": ("notes.png", b"these are my notes, not pixels\n"),
    }


# what macOS leaves in a folder: Finder's view settings and AppleDouble resource forks ("._" + the file's name)
HIDDEN_FILES = {".DS_Store": b"\0\0\0\1Bud1" + b"\0" * 60, "._0.png": b"\0\5\26\7\0\2\0\0Mac OS X" + b"\0" * 60}


def jpeg_folder_of(root: Path, size: int) -> Path:
    """Four JPEG files (quality 95) of ``size`` px per colour class under ``root``."""
    for c, (name, color) in enumerate(COLORS.items()):
        (root / name).mkdir(parents=True)
        for i in range(4):
            make_image(color, seed=10 * c + i, size=size).save(root / name / f"{i}.jpg", quality=95)
    return root


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, d)`` arrays."""
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def small_set(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    """``root/{blue,red}/<n>.png``: 2 classes x 4 images, plus ``extra`` files (name: bytes) in ``red``."""
    for c, name in enumerate(("red", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            make_image(COLORS[name], seed=10 * c + i).save(root / name / f"{i}.png")
    for name, data in (extra or {}).items():
        (root / "red" / name).write_bytes(data)
    return root
