"""Data layer: any image mode and size in, the backbone's ``(C, H, W)`` out; bad inputs named, never fatal."""

from __future__ import annotations

import csv
import gzip
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import Image

from transferkit import DataError, TransferkitError
from transferkit.backbones.weights import Preprocessing
from transferkit.data import (
    BadImage,
    ImageDataset,
    build_transform,
    check_trainable,
    drop_unreadable,
    from_arrays,
    from_csv,
    from_folder,
    load_embedded,
    load_fashion_mnist,
    open_dataset,
    open_image,
    per_class,
    stratified_split,
    to_mode,
)
from transferkit.data.loader import image_loader

from .conftest import COLORS, HIDDEN_FILES, bad_files, make_image, small_set

RGB_32 = Preprocessing(input_size=(3, 32, 32), crop_pct=0.875)
GRAY_28 = Preprocessing(
    input_size=(1, 28, 28), mean=(0.5,), std=(0.5,), interpolation="bicubic", crop_pct=1.0
)


def _saved(img: Image.Image, path: Path, **save_kwargs) -> Image.Image:
    """Write ``img`` to ``path`` and read it back the way the library does."""
    img.save(path, **save_kwargs)
    return open_image(path)


def _reason(path: Path) -> str:
    with pytest.raises(BadImage) as info:
        open_image(path)
    return info.value.reason


# -- image modes --------------------------------------------------------------------------------------


def test_grayscale_becomes_three_equal_channels_or_stays_l(tmp_path: Path):
    img = _saved(Image.new("L", (4, 3), 77), tmp_path / "g.png")
    rgb = to_mode(img, 3)
    assert rgb.mode == "RGB" and rgb.size == (4, 3)
    assert rgb.getpixel((0, 0)) == (77, 77, 77)
    assert to_mode(img, 1).mode == "L" and to_mode(img, 1).getpixel((2, 2)) == 77


def test_rgba_transparency_is_composited_over_white(tmp_path: Path):
    a = np.zeros((2, 2, 4), dtype=np.uint8)
    a[0, 0] = (0, 0, 0, 0)  # fully transparent black: must become white, not black
    a[0, 1] = (200, 10, 10, 255)  # opaque: unchanged
    a[1, 0] = (0, 0, 0, 128)  # half-transparent black: mid grey
    img = _saved(Image.fromarray(a, "RGBA"), tmp_path / "a.png")
    out = np.asarray(to_mode(img, 3)).astype(int)
    assert to_mode(img, 3).mode == "RGB"
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [200, 10, 10]
    assert np.all(np.abs(out[1, 0] - 127) <= 1)
    assert to_mode(img, 1).getpixel((0, 0)) == 255


def test_la_transparency_is_composited_over_white():
    img = Image.fromarray(np.array([[[0, 0], [30, 255]]], dtype=np.uint8), "LA")
    assert np.asarray(to_mode(img, 1)).tolist() == [[255, 30]]


def _palette_image() -> Image.Image:
    p = Image.new("P", (2, 2), 0)
    p.putpalette([10, 20, 30, 0, 200, 0] + [0] * (256 * 3 - 6))
    p.putpixel((1, 0), 1)
    return p


def test_palette_without_transparency_keeps_its_colours(tmp_path: Path):
    img = _saved(_palette_image(), tmp_path / "p.png")
    out = np.asarray(to_mode(img, 3))
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [0, 200, 0]


def test_palette_with_transparency_becomes_white_where_transparent(tmp_path: Path):
    img = _saved(_palette_image(), tmp_path / "pt.png", transparency=0)
    out = np.asarray(to_mode(img, 3))
    assert out[0, 0].tolist() == [255, 255, 255]  # index 0 is the transparent one
    assert out[0, 1].tolist() == [0, 200, 0]


def test_16bit_png_is_scaled_to_8bit(tmp_path: Path):
    a = np.array([[0, 65535, 257 * 100]], dtype=np.uint16)
    img = _saved(Image.fromarray(a), tmp_path / "16.png")
    assert img.mode.startswith("I")
    assert np.asarray(to_mode(img, 1)).tolist() == [[0, 255, 100]]
    assert to_mode(img, 3).getpixel((1, 0)) == (255, 255, 255)


def test_dark_16bit_png_stays_dark(tmp_path: Path):
    # every value <= 255 out of 65535: nearly black, not the bright 8-bit image the same numbers would mean
    img = _saved(Image.fromarray(np.array([[0, 200, 255]], dtype=np.uint16)), tmp_path / "dark16.png")
    assert np.asarray(to_mode(img, 1)).max() <= 1


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path):
    img = _saved(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=95)
    assert img.mode == "CMYK"
    r, g, b = to_mode(img, 3).getpixel((4, 4))
    assert r > 230 and g < 30 and b < 30


def test_one_bit_image_is_black_and_white(tmp_path: Path):
    bits = Image.new("1", (4, 4), 0)
    bits.putpixel((1, 1), 1)
    img = _saved(bits, tmp_path / "b.png")
    out = np.asarray(to_mode(img, 3))
    assert out[1, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]
    assert to_mode(img, 1).mode == "L"


# -- any size to the preprocessing's exact shape --------------------------------------------------------


@pytest.mark.parametrize("size", [(5, 300), (300, 5), (1, 1), (17, 23), (64, 64)])
@pytest.mark.parametrize("pre", [RGB_32, GRAY_28], ids=["rgb", "gray"])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16"])
def test_any_size_and_mode_gives_exact_chw(size: tuple[int, int], pre: Preprocessing, mode: str):
    img = Image.new(mode, size)
    out = build_transform(pre)(img)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (pre.channels, *pre.image_size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("pre", [RGB_32, GRAY_28], ids=["rgb", "gray"])
def test_transform_normalises_with_the_preprocessing_mean_std(pre: Preprocessing):
    out = build_transform(pre)(Image.new("RGB", (40, 30), (255, 255, 255)))
    expected = [(1.0 - m) / s for m, s in zip(pre.mean, pre.std, strict=True)]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4)


@pytest.mark.parametrize("preset", ["none", "light", "medium", "strong"])
def test_augmentation_presets_keep_the_shape_and_unknown_ones_are_refused(preset: str):
    from transferkit.training import train_transform

    img = make_image((10, 200, 10), seed=1, size=50)
    assert tuple(train_transform(RGB_32, preset)(img).shape) == (3, 32, 32)
    assert tuple(train_transform(GRAY_28, preset)(img.convert("L")).shape) == (1, 28, 28)
    with pytest.raises(TransferkitError, match="augment must be"):
        train_transform(RGB_32, "heavy")


# -- unusable files ---------------------------------------------------------------------------------


def test_unusable_files_give_distinct_reasons(tmp_path: Path):
    good = make_image((200, 30, 30), seed=0, size=48)
    good.save(tmp_path / "full.png")
    good.save(tmp_path / "full.jpg", quality=90)
    for name in ("full.png", "full.jpg"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"half-{name}").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("these are not pixels\n")

    reasons = {
        "zero": _reason(tmp_path / "empty.png"),
        "png": _reason(tmp_path / "half-full.png"),
        "jpg": _reason(tmp_path / "half-full.jpg"),
        "text": _reason(tmp_path / "notes.png"),
        "missing": _reason(tmp_path / "missing.png"),
    }
    assert "zero-byte" in reasons["zero"]
    assert "truncated" in reasons["png"] and "truncated" in reasons["jpg"]
    assert "not an image" in reasons["text"]
    assert "not found" in reasons["missing"]
    assert len({reasons["zero"], reasons["png"], reasons["text"], reasons["missing"]}) == 4
    assert open_image(tmp_path / "full.png").size == (48, 48)  # the intact originals still open


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    Image.new("RGB", (40, 30)).save(tmp_path / "bomb.png")  # 1,200 px
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")  # 400 px
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    reason = _reason(tmp_path / "bomb.png")
    assert "decompression bomb" in reason and "1000" in reason
    assert open_image(tmp_path / "small.png").size == (20, 20)
    # more than twice the limit: Pillow raises its error rather than its warning
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 500)
    assert "decompression bomb" in _reason(tmp_path / "bomb.png")


def test_exif_orientation_is_applied(tmp_path: Path):
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :20] = (220, 20, 20)  # left half red
    a[:, 20:] = (20, 20, 220)  # right half blue
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = open_image(tmp_path / "rotated.jpg")
    assert out.size == (20, 40)  # (width, height) transposed
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # the left edge is now on top


# -- from_folder -------------------------------------------------------------------------------------


def test_from_folder_sorts_classes_and_ignores_hidden_files(tmp_path: Path):
    root = tmp_path / "data"
    for name in ("zebra", "apple", "mango"):
        (root / name).mkdir(parents=True)
        make_image((1, 2, 3), seed=0).save(root / name / "0.png")
    make_image((1, 2, 3), seed=1).save(root / "zebra" / "1.png")
    (root / "apple" / "nested").mkdir()
    make_image((1, 2, 3), seed=2).save(root / "apple" / "nested" / "deep.png")
    (root / "apple" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "apple" / ".thumbs").mkdir()
    make_image((1, 2, 3), seed=3).save(root / "apple" / ".thumbs" / "t.png")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "README.txt").write_text("not a class\n")

    ds = from_folder(root)
    assert ds.classes == ["apple", "mango", "zebra"]
    names = [
        (p.relative_to(root).as_posix(), ds.classes[label])
        for p, label in zip(ds.items, ds.labels, strict=True)
    ]
    assert sorted(names) == [
        ("apple/0.png", "apple"),
        ("apple/nested/deep.png", "apple"),
        ("mango/0.png", "mango"),
        ("zebra/0.png", "zebra"),
        ("zebra/1.png", "zebra"),
    ]
    assert ds.class_counts() == {"apple": 2, "mango": 1, "zebra": 2}


def test_from_folder_errors(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        from_folder(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is not a folder"):
        from_folder(tmp_path / "file.png")
    flat = tmp_path / "flat"
    flat.mkdir()
    make_image((1, 2, 3), seed=0).save(flat / "0.png")
    (flat / ".cache").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        from_folder(flat)
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "dog").mkdir()
    (empty / "dog" / ".hidden.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no files"):
        from_folder(empty)


# -- from_csv ----------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("path", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_from_csv_resolves_paths_against_the_csv_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "ds"
    (root / "img").mkdir(parents=True)
    make_image((1, 2, 3), seed=0).save(root / "img" / "a.png")
    make_image((1, 2, 3), seed=1).save(root / "b.png")
    csv_path = _write_csv(
        root / "labels.csv",
        [
            ["img/a.png", "dog"],
            [" b.png ", " cat "],
            ["img/../b.png", "cat"],
            [str(root / "img" / "a.png"), "dog"],
        ],
    )
    monkeypatch.chdir(tmp_path)  # a relative CSV path from elsewhere: images still resolve next to the CSV
    ds = from_csv(Path("ds") / "labels.csv")
    assert ds.classes == ["cat", "dog"]
    assert [p.relative_to(root.resolve()).as_posix() for p in ds.items] == [
        "img/a.png",
        "b.png",
        "b.png",
        "img/a.png",
    ]
    assert ds.labels.tolist() == [1, 0, 0, 1]
    assert all(p.is_absolute() for p in ds.items)
    assert ds.load(1).size == (24, 24)
    assert from_csv(csv_path).labels.tolist() == [1, 0, 0, 1]


def test_from_csv_with_a_bom_and_custom_columns(tmp_path: Path):
    make_image((1, 2, 3), seed=0).save(tmp_path / "a.png")
    (tmp_path / "x.csv").write_bytes("\ufefffile,kind\na.png,cat\na.png,dog\n".encode())
    ds = from_csv(tmp_path / "x.csv", path_column="file", label_column="kind")
    assert ds.classes == ["cat", "dog"] and len(ds) == 2


@pytest.mark.parametrize("where", ["../escape.png", "sub/../../escape.png", "absolute"])
def test_from_csv_refuses_paths_that_escape(tmp_path: Path, where: str):
    root = tmp_path / "ds"
    root.mkdir()
    make_image((1, 2, 3), seed=0).save(tmp_path / "escape.png")
    rel = str(tmp_path / "escape.png") if where == "absolute" else where
    with pytest.raises(DataError, match="escapes"):
        from_csv(_write_csv(root / "labels.csv", [[rel, "cat"]]))


def test_from_csv_errors(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        from_csv(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"found \['file', 'class'\]"):
        from_csv(_write_csv(tmp_path / "cols.csv", [["a.png", "cat"]], header=("file", "class")))
    with pytest.raises(DataError, match="line 3: empty 'path' or 'label'"):
        from_csv(_write_csv(tmp_path / "blank.csv", [["a.png", "cat"], ["b.png", ""]]))
    with pytest.raises(DataError, match="line 2: empty"):
        from_csv(_write_csv(tmp_path / "blank2.csv", [["", "cat"]]))
    (tmp_path / "latin1.csv").write_bytes("path,label\ncaf\u00e9.png,cat\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        from_csv(tmp_path / "latin1.csv")
    with pytest.raises(DataError, match="header but no rows"):
        from_csv(_write_csv(tmp_path / "header.csv", []))
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(DataError, match="needs columns"):
        from_csv(tmp_path / "zero.csv")


def test_from_csv_missing_image_is_bad_at_load_time(tmp_path: Path):
    make_image(COLORS["red"], 0).save(tmp_path / "here.png")
    ds = from_csv(_write_csv(tmp_path / "l.csv", [["gone.png", "cat"], ["here.png", "dog"]]))
    with pytest.raises(BadImage, match="not found"):
        ds.load(0)


def test_from_csv_with_no_path_that_exists_says_where_paths_are_read_from(tmp_path: Path):
    (tmp_path / "data").mkdir()
    csv_file = _write_csv(tmp_path / "data" / "l.csv", [["data/a.png", "cat"], ["data/b.png", "dog"]])
    with pytest.raises(DataError, match="relative to the CSV's own folder"):
        from_csv(csv_file)


def test_an_empty_class_folder_is_left_out_and_reported(tmp_path: Path):
    from transferkit.data import from_folder

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        make_image(COLORS["red"], 0).save(tmp_path / name / "0.png")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ".keep").write_text("")
    ds = from_folder(tmp_path)
    assert ds.classes == ["a", "b"] and ds.skipped == [(str(tmp_path / "c"), "empty class folder, left out")]


# -- unreadable files, before any split -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(bad_files()))
def test_an_unreadable_file_is_dropped_and_listed_before_the_split(tmp_path: Path, kind: str):
    name, data = bad_files()[kind]
    ds = from_folder(small_set(tmp_path, {name: data}))
    assert len(ds) == 9
    readable = drop_unreadable(ds, max_bad_fraction=0.2)
    assert readable.class_counts() == {"blue": 4, "red": 4}
    assert name not in {p.name for p in readable.items}
    ((listed, reason),) = readable.skipped
    assert Path(listed).name == name
    expected = {"zero-byte": "zero-byte", "text named .png": "not an image"}.get(kind, "corrupt or truncated")
    assert expected in reason
    assert all(readable.load(i) for i in range(len(readable)))  # what a split gets is all readable


def test_drop_unreadable_guards_the_fraction_and_leaves_out_unreadable_classes(tmp_path: Path, arrays):
    ds = from_folder(small_set(tmp_path / "one", {"empty.png": b""}))
    with pytest.raises(DataError, match=r"1 of 9 images .* \(11% > max_bad_fraction 10%\).*empty\.png \(zero-byte file\)"):
        drop_unreadable(ds, max_bad_fraction=0.1)

    root = small_set(tmp_path / "three")
    (root / "green").mkdir()
    for i in range(2):
        (root / "green" / f"{i}.png").write_bytes(b"")
    readable = drop_unreadable(from_folder(root))
    assert readable.classes == ["blue", "red"] and readable.class_counts() == {"blue": 4, "red": 4}
    assert [readable.classes[label] for label in readable.labels] == [p.parent.name for p in readable.items]
    assert ("green", "class left out: none of its images could be read") in readable.skipped

    in_memory = from_arrays(*arrays)
    assert drop_unreadable(in_memory) is in_memory  # arrays were checked when they were read


def test_hidden_files_in_a_class_folder_are_not_images(tmp_path: Path):
    ds = from_folder(small_set(tmp_path, HIDDEN_FILES))
    assert len(ds) == 8 and not any(p.name.startswith(".") for p in ds.items)
    assert drop_unreadable(ds, max_bad_fraction=0.0) is ds


# -- from_arrays ------------------------------------------------------------------------------------


def test_from_arrays_int_labels(arrays: tuple[np.ndarray, np.ndarray]):
    images, labels = arrays
    ds = from_arrays(images, labels)
    assert ds.is_array and len(ds) == 36
    assert ds.classes == ["0", "1", "2"]
    assert ds.class_counts() == {"0": 12, "1": 12, "2": 12}
    assert np.array_equal(np.asarray(ds.load(5)), images[5])
    named = from_arrays(images, labels, classes=["red", "green", "blue", "unused"])
    assert named.class_counts() == {"red": 12, "green": 12, "blue": 12, "unused": 0}
    with pytest.raises(DataError, match="must index into classes"):
        from_arrays(images, labels, classes=["red", "green"])
    with pytest.raises(DataError, match="must index into classes"):
        from_arrays(images, labels - 1)
    with pytest.raises(DataError, match="must match"):
        from_arrays(images, labels[:-1])


def test_from_arrays_string_labels(arrays: tuple[np.ndarray, np.ndarray]):
    images, _ = arrays
    names = ["dog", "cat", "emu"] * 12
    ds = from_arrays(images, names)
    assert ds.classes == ["cat", "dog", "emu"]
    assert [ds.classes[i] for i in ds.labels] == names
    fixed = from_arrays(images, names, classes=["emu", "dog", "cat"])
    assert fixed.labels[:3].tolist() == [1, 2, 0]
    with pytest.raises(DataError, match="'dog' is not one of classes"):
        from_arrays(images, names, classes=["cat", "emu"])


def test_from_arrays_float_and_uint16_images():
    floats = np.zeros((2, 3, 3, 3), dtype=np.float32)
    floats[0, 0, 0] = 1.0
    floats[0, 0, 1] = 0.5
    img = from_arrays(floats, [0, 1]).load(0)
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((1, 0)) == (128, 128, 128)
    wide = np.full((2, 4, 4), 65535, dtype=np.uint16)
    wide[0, 0, 0] = 257 * 7
    gray = from_arrays(wide, [0, 1]).load(0)
    assert gray.mode == "L" and gray.getpixel((0, 0)) == 7 and gray.getpixel((1, 1)) == 255
    single_channel = from_arrays(np.zeros((2, 5, 5, 1), dtype=np.uint8), [0, 1]).load(1)
    assert single_channel.mode == "L" and single_channel.size == (5, 5)


def test_from_arrays_bad_shapes():
    with pytest.raises(DataError, match=r"Got shape \(4, 5\)"):
        from_arrays(np.zeros((4, 5), dtype=np.uint8), [0, 1, 0, 1])
    with pytest.raises(DataError, match="shape"):
        from_arrays(np.zeros((2, 3, 4, 4, 3), dtype=np.uint8), [0, 1])
    two_channel = from_arrays(np.zeros((2, 4, 4, 2), dtype=np.uint8), [0, 1])
    with pytest.raises(BadImage, match="not an image"):
        two_channel.load(0)


def test_from_arrays_without_labels_is_not_trainable(arrays: tuple[np.ndarray, np.ndarray]):
    ds = from_arrays(arrays[0])
    assert ds.labels is None
    with pytest.raises(DataError, match="needs labels"):
        check_trainable(ds)
    with pytest.raises(DataError, match="only one class"):
        check_trainable(from_arrays(arrays[0][:4], [0, 0, 0, 0], classes=["a", "b"]))
    with pytest.raises(DataError, match="no images"):
        check_trainable(ImageDataset([], np.array([], dtype=np.int64), ["a", "b"]))
    check_trainable(from_arrays(*arrays))


# -- Fashion-MNIST and the embedded subset -------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    data = (
        struct.pack(">I", magic)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize(("split", "prefix", "compress"), [("train", "train", True), ("test", "t10k", False)])
def test_load_fashion_mnist_reads_idx_files(tmp_path: Path, split: str, prefix: str, compress: bool):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 7, 5), dtype=np.uint8)  # not square: the dims must come out in order
    labels = np.array([9, 0, 3, 3, 1, 2], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
    _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    ds = load_fashion_mnist(split, root=tmp_path)
    assert ds.name == f"fashion-mnist:{split}"
    assert np.array_equal(ds.items, images)
    assert ds.labels.tolist() == [9, 0, 3, 3, 1, 2] and ds.labels.dtype == np.int64
    assert len(ds.classes) == 10 and ds.classes[9] == "Ankle boot"
    assert ds.load(0).size == (5, 7)


def test_load_fashion_mnist_errors(tmp_path: Path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path / "nowhere")
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 3, 3), np.uint8), True)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)  # labels file missing
    with pytest.raises(DataError, match="'train' or 'test'"):
        load_fashion_mnist("validation", root=tmp_path)


def test_load_embedded_is_the_licensed_subset():
    ds = load_embedded()
    assert len(ds) == 400 and ds.items.shape == (400, 28, 28) and ds.items.dtype == np.uint8
    assert len(ds.classes) == 10
    assert set(ds.class_counts().values()) == {40}
    assert ds.load(0).mode == "L"
    licence = resources.files("transferkit") / "assets" / "FASHION_MNIST_LICENSE"
    assert licence.is_file()
    text = licence.read_text()
    assert "Fashion-MNIST" in text and "MIT" in text


def test_open_dataset_dispatches(tmp_path: Path, image_folder: Path):
    assert len(open_dataset("embedded")) == 400
    assert open_dataset(image_folder).classes == sorted(COLORS)
    csv_path = _write_csv(image_folder / "l.csv", [["red/0.png", "r"], ["blue/0.png", "b"]])
    assert open_dataset(str(csv_path)).classes == ["b", "r"]
    with pytest.raises(DataError, match="is a file"):
        open_dataset(image_folder / "red" / "0.png")
    with pytest.raises(DataError, match="apt-get install"):
        load_fashion_mnist("test", root=tmp_path)


# -- splits ----------------------------------------------------------------------------------------


def _labelled(counts: tuple[int, ...]) -> ImageDataset:
    """Tiny images whose pixel value is their position in the dataset, ``counts[c]`` of class ``c``."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    positions = np.arange(len(labels), dtype=np.uint8)
    return from_arrays(np.broadcast_to(positions[:, None, None], (len(labels), 2, 2)).copy(), labels)


@pytest.mark.parametrize(
    ("counts", "fraction"),
    [((8, 8, 8), 0.25), ((100, 2, 2), 0.2), ((2, 2, 50), 0.9), ((30, 2), 0.2), ((3,) * 10, 0.1)],
)
def test_stratified_split_keeps_every_class_on_both_sides(counts: tuple[int, ...], fraction: float):
    ds = _labelled(counts)
    for seed in range(3):
        train, val = stratified_split(ds, fraction, seed=seed)
        assert all(n >= 1 for n in train.class_counts().values()), train.class_counts()
        assert all(n >= 1 for n in val.class_counts().values()), val.class_counts()
        train_ids, val_ids = set(train.items[:, 0, 0].tolist()), set(val.items[:, 0, 0].tolist())
        assert not train_ids & val_ids and len(train_ids | val_ids) == len(ds)
        assert train.classes == val.classes == ds.classes


def test_stratified_split_is_seeded_and_proportional(image_folder: Path):
    ds = from_folder(image_folder)
    train, val = stratified_split(ds, 0.25, seed=0)
    again_train, again_val = stratified_split(ds, 0.25, seed=0)
    assert train.items == again_train.items and val.items == again_val.items
    assert len(val) == 6 and val.class_counts() == {"blue": 2, "green": 2, "red": 2}
    others = {tuple(stratified_split(ds, 0.25, seed=s)[1].items) for s in range(1, 4)}
    assert others - {tuple(val.items)}


def test_stratified_split_refuses_what_it_cannot_split(arrays: tuple[np.ndarray, np.ndarray]):
    images, labels = arrays
    with pytest.raises(DataError, match="'3' has a single image"):
        stratified_split(from_arrays(images[:25], np.append(labels[:24], 3)))
    with pytest.raises(DataError, match=r"must be in \(0, 1\)"):
        stratified_split(from_arrays(images, labels), val_fraction=1.0)
    with pytest.raises(DataError, match="needs labels"):
        stratified_split(from_arrays(images))
    with pytest.raises(DataError, match="too few"):
        stratified_split(_labelled((2, 2, 2)), val_fraction=0.9)


def test_per_class_caps_counts_and_is_seeded():
    ds = _labelled((10, 3, 6))
    few = per_class(ds, 4, seed=0)
    assert few.class_counts() == {"0": 4, "1": 3, "2": 4}
    assert np.array_equal(few.items, per_class(ds, 4, seed=0).items)
    assert any(not np.array_equal(few.items, per_class(ds, 4, seed=s).items) for s in range(1, 4))
    picked = few.items[:, 0, 0]
    assert np.all(np.diff(picked.astype(int)) > 0)  # dataset order, no duplicates
    assert np.array_equal(ds.labels[picked], few.labels)
    with pytest.raises(DataError, match="positive integer"):
        per_class(ds, 0)


# -- loader ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 1])
def test_image_loader_lists_bad_items_instead_of_crashing(image_folder: Path, num_workers: int):
    (image_folder / "red" / "empty.png").write_bytes(b"")
    (image_folder / "blue" / "notes.png").write_text("text")
    ds = from_folder(image_folder)
    bad_paths = {
        image_folder / "red" / "empty.png": "zero-byte",
        image_folder / "blue" / "notes.png": "not an image",
    }
    expected_bad = {ds.items.index(p): reason for p, reason in bad_paths.items()}

    seen: list[int] = []
    bad: dict[int, str] = {}
    for batch in image_loader(ds, build_transform(RGB_32), batch_size=5, num_workers=num_workers):
        if len(batch["index"]):  # the last batch holds only a bad file: no images then
            assert batch["images"].shape == (len(batch["index"]), 3, 32, 32)
        seen.extend(batch["index"].tolist())
        bad.update(batch["bad"])
    assert seen == [i for i in range(len(ds)) if i not in expected_bad]  # dataset order
    assert bad.keys() == expected_bad.keys()
    for i, word in expected_bad.items():
        assert word in bad[i]


def test_image_loader_batch_of_only_bad_items(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.png").write_bytes(b"")
    make_image((1, 2, 3), seed=0).save(tmp_path / "a" / "1.png")
    ds = from_folder(tmp_path)
    batches = list(image_loader(ds, build_transform(GRAY_28), indices=np.array([0, 0, 1]), batch_size=2))
    assert batches[0]["images"].numel() == 0 and batches[0]["index"].tolist() == []
    assert [i for i, _ in batches[0]["bad"]] == [0, 0]
    assert batches[1]["images"].shape == (1, 1, 28, 28) and batches[1]["index"].tolist() == [1]


def test_folders_follow_symlinked_subfolders_and_skip_hidden_ones(tmp_path):
    from transferkit.data import from_folder
    from transferkit.data.sources import visible_files

    outside = tmp_path / "outside"
    outside.mkdir()
    make_image(COLORS["red"], 1).save(outside / "linked.png")
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        make_image(COLORS["blue"], 2).save(root / name / "1.png")
    (root / "a" / "more").symlink_to(outside)  # a symlinked subfolder of a class
    (root / "a" / "loop").symlink_to(root / "a")  # and a link back up the tree
    (root / "b" / ".ipynb_checkpoints").mkdir()
    make_image(COLORS["blue"], 3).save(root / "b" / ".ipynb_checkpoints" / "copy.png")
    ds = from_folder(root)
    names = sorted(str(p.relative_to(root)) for p in ds.items)
    assert names == ["a/1.png", "a/more/linked.png", "b/1.png"]
    assert visible_files(root / "b") == [root / "b" / "1.png"]  # predict on a folder: the same rule


def test_dataset_names_are_not_mistaken_for_builtin_ones(tmp_path, monkeypatch):
    from transferkit.data import open_dataset

    monkeypatch.chdir(tmp_path)
    for name in ("x", "y"):
        (tmp_path / "fashion-mnist-shoes" / name).mkdir(parents=True)
        make_image(COLORS["red"], 0).save(tmp_path / "fashion-mnist-shoes" / name / "0.png")
    ds = open_dataset("fashion-mnist-shoes")
    assert ds.classes == ["x", "y"] and len(ds) == 2
    with pytest.raises(DataError, match="encoding='no-such-codec' is not an encoding"):
        open_dataset("fashion-mnist-shoes", encoding="no-such-codec")


def test_csv_may_reach_images_through_a_symlink_inside_its_folder(tmp_path):
    from transferkit.data import from_csv

    real = tmp_path / "real"
    real.mkdir()
    make_image(COLORS["red"], 0).save(real / "0.png")
    project = tmp_path / "project"
    project.mkdir()
    (project / "imgs").symlink_to(real)
    (project / "labels.csv").write_text("path,label\nimgs/0.png,red\nimgs/0.png,blue\n")
    assert len(from_csv(project / "labels.csv")) == 2
    (project / "bad.csv").write_text("path,label\n../real/0.png,red\n")
    with pytest.raises(DataError, match="escapes the dataset root"):
        from_csv(project / "bad.csv")


def test_numbered_class_names_are_read_as_names():
    from transferkit.data import from_arrays, select_classes

    ds = from_arrays(np.zeros((6, 8, 8, 3), np.uint8), np.array([0, 0, 1, 1, 2, 2]), ["1", "10", "2"])
    assert select_classes(ds, "1,2").classes == ["1", "2"]
    with pytest.raises(DataError, match="class names here are numbers"):
        select_classes(ds, "0-1")


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path):
    from transferkit.data import read_text_table

    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "one\\u2028line", "label": "a"}\n{"text": "two", "label": "b"}\n'
                    .replace("\\u2028", "\u2028"), encoding="utf-8")
    ds = read_text_table(path)
    assert ds.items == ["one\u2028line", "two"]
    (tmp_path / "t.txt").write_text("page\x0cbreak\nsecond\n", encoding="utf-8")
    assert read_text_table(tmp_path / "t.txt", require_labels=False).items == ["page\x0cbreak", "second"]


def test_prefetched_keeps_order_and_raises_the_producers_error():
    from transferkit.data.loader import prefetched

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("broken batch")

    out = []
    with pytest.raises(ValueError, match="broken batch"):
        for x in prefetched(failing()):
            out.append(x)
    assert out == [1]


def test_prefetched_stops_its_thread_when_the_loop_ends_early():
    import threading

    from transferkit.data.loader import prefetched

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    for x in prefetched(endless(), depth=2):
        if x == 3:
            break
    assert not any(t.name == "transferkit-prefetch" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 3 + 1 + 2 + 1  # at most the queue's depth (and the one in hand) beyond what was used
