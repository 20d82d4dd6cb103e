"""Bundles: identical predictions after a round trip, no pickle anywhere, and clear refusals of bad bundles."""

from __future__ import annotations

import collections
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import torch
from sklearn.tree import DecisionTreeClassifier

from transferkit import (
    BundleError,
    FeatureExtractionClassifier,
    FineTuneClassifier,
    create_backbone,
    from_folder,
    load_bundle,
    save_bundle,
)
from transferkit._utils import sha256_file

from .conftest import TINY, tiny_backbone

META_KEYS = {"format_version", "backbone", "head", "classes", "preprocessing", "metrics", "licence", "versions"}


def fit_feature_extraction(image_folder: Path, head: str = "logistic") -> FeatureExtractionClassifier:
    return FeatureExtractionClassifier(tiny_backbone(), head=head, progress=False).fit(from_folder(image_folder))


def fit_fine_tune(image_folder: Path) -> FineTuneClassifier:
    return FineTuneClassifier(tiny_backbone(), head_epochs=1, epochs=1, lr_backbone=1e-2, batch_size=12,
                              progress=False).fit(from_folder(image_folder))


def assert_no_pickle(directory: Path) -> None:
    for f in directory.iterdir():
        data = f.read_bytes()
        assert not data.startswith(b"\x80"), f"{f.name} looks like a pickle"
        if f.suffix == ".safetensors":
            (n,) = struct.unpack("<Q", data[:8])
            assert json.loads(data[8:8 + n])  # a safetensors header: JSON, then raw tensor bytes
        elif f.suffix == ".json":
            json.loads(data)
        elif f.suffix == ".skops":
            with zipfile.ZipFile(f) as z:
                assert "schema.json" in z.namelist()
                assert not [n for n in z.namelist() if n.endswith((".pkl", ".pickle"))]
        else:
            pytest.fail(f"unexpected file in bundle: {f.name}")


@pytest.mark.parametrize(("head", "files"), [
    ("logistic", ["model.safetensors", "training_items.safetensors", "transferkit.json"]),
    ("random-forest", ["head.skops", "model.safetensors", "training_items.safetensors", "transferkit.json"]),
])
def test_feature_extraction_round_trip(head, files, image_folder, tmp_path):
    clf = fit_feature_extraction(image_folder, head)
    ds = from_folder(image_folder)
    out = save_bundle(clf, tmp_path / "bundle", metrics={"accuracy": 1.0})
    assert sorted(p.name for p in out.iterdir()) == files  # nothing else, no leftover temporary files
    assert_no_pickle(out)
    # cache=False: the loaded backbone really recomputes the features instead of finding the cached ones
    loaded = load_bundle(out, cache=False, progress=False)
    assert type(loaded) is FeatureExtractionClassifier
    np.testing.assert_allclose(loaded.predict_proba(ds), clf.predict_proba(ds), atol=1e-6)
    assert list(loaded.classes_) == list(clf.classes_)
    assert loaded.backbone_.preprocessing == clf.backbone_.preprocessing


def test_bundle_json_records_what_is_needed_to_trust_the_model(image_folder, tmp_path):
    clf = fit_feature_extraction(image_folder)
    out = save_bundle(clf, tmp_path / "b", metrics={"accuracy": 0.5}, data={"name": "images"})
    meta = json.loads((out / "transferkit.json").read_text())
    assert set(meta) >= META_KEYS
    assert meta["format_version"] == 1
    bb = meta["backbone"]
    assert bb["spec"] == TINY and bb["arch_spec"] == TINY and bb["layer"] == "pre_logits"
    assert len(bb["weights"]["checksum"]) == 64 and bb["weights"]["licence"]
    assert meta["head"]["type"] == "linear" and meta["head"]["name"] == "logistic"
    assert meta["classes"] == ["blue", "green", "red"]
    assert meta["preprocessing"]["input_size"] == [3, 32, 32]
    assert meta["metrics"] == {"accuracy": 0.5}
    assert meta["licence"] == clf.backbone_.weights.licence
    assert {"transferkit", "torch", "scikit-learn"} <= set(meta["versions"])
    assert meta["files"]["model.safetensors"] == sha256_file(out / "model.safetensors")


def test_fine_tune_round_trip_and_bundle_as_a_backbone(image_folder, tmp_path):
    clf = fit_fine_tune(image_folder)
    ds = from_folder(image_folder)
    out = save_bundle(clf, tmp_path / "ft")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "training_items.safetensors", "transferkit.json"]
    assert_no_pickle(out)
    loaded = load_bundle(out, progress=False)
    assert type(loaded) is FineTuneClassifier
    np.testing.assert_allclose(loaded.predict_proba(ds), clf.predict_proba(ds), atol=1e-6)

    bb = create_backbone(f"bundle:{out}")
    assert bb.source_head is None and bb.spec == f"bundle:{out}" and bb.weights.source == "bundle"
    assert bb.preprocessing == clf.backbone_.preprocessing
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        features = bb(x)
        torch.testing.assert_close(features, clf.backbone_.eval()(x), atol=1e-6, rtol=0)
        # the fine-tuned weights were loaded, not just the architecture
        assert not torch.allclose(features, create_backbone(TINY, pretrained=False)(x), atol=1e-4)
    assert bb.weights.checksum != create_backbone(TINY, pretrained=False).weights.checksum


def test_resaving_replaces_a_bundle(image_folder, tmp_path):
    first = fit_feature_extraction(image_folder, "random-forest")
    second = fit_feature_extraction(image_folder, "logistic")
    ds = from_folder(image_folder)
    save_bundle(first, tmp_path / "b")
    save_bundle(second, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model.safetensors", "training_items.safetensors", "transferkit.json"]
    loaded = load_bundle(tmp_path / "b", cache=False, progress=False)
    assert loaded.head_module_ is not None
    np.testing.assert_allclose(loaded.predict_proba(ds), second.predict_proba(ds), atol=1e-6)


def test_a_killed_resave_loses_neither_bundle(image_folder, tmp_path, monkeypatch):
    import transferkit.bundle_format as bundle_format
    from transferkit.strategies import TransferClassifier

    first = fit_feature_extraction(image_folder, "random-forest")
    second = fit_feature_extraction(image_folder, "logistic")
    ds = from_folder(image_folder)
    save_bundle(first, tmp_path / "b")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    # killed while writing the new files (all in the staging folder): the old bundle is untouched; killed after
    # staging the new bundle completely, before or while moving it in: the next read finishes the move
    for owner, step, expected in ((TransferClassifier, "_write_bundle", first), (bundle_format, "commit", second)):
        monkeypatch.setattr(owner, step, killed)
        with pytest.raises(KeyboardInterrupt):
            save_bundle(second, tmp_path / "b")
        monkeypatch.undo()
        np.testing.assert_allclose(load_bundle(tmp_path / "b", cache=False, progress=False).predict_proba(ds),
                                   expected.predict_proba(ds), atol=1e-6)
    assert not (tmp_path / "b" / ".saving").exists()
    assert "head.skops" not in {p.name for p in (tmp_path / "b").iterdir()}  # the forest's head went with it


# -- refusals ------------------------------------------------------------------------------------------------

@pytest.fixture
def forest_bundle(image_folder, tmp_path) -> Path:
    """A bundle with a scikit-learn head in head.skops (a small tree: quick to fit and to dump)."""
    clf = FeatureExtractionClassifier(tiny_backbone(), head=DecisionTreeClassifier(max_depth=2), progress=False)
    return save_bundle(clf.fit(from_folder(image_folder)), tmp_path / "forest")


def edit_meta(directory: Path, **changes) -> None:
    path = directory / "transferkit.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_missing_bundle_directory(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_directory_without_description(tmp_path):
    with pytest.raises(BundleError, match="not a transferkit bundle"):
        load_bundle(tmp_path)


def test_a_bundle_naming_itself_as_its_architecture_is_refused(forest_bundle):
    meta = json.loads((forest_bundle / "transferkit.json").read_text())
    edit_meta(forest_bundle, backbone={**meta["backbone"], "arch_spec": f"bundle:{forest_bundle}"})
    with pytest.raises(BundleError, match="names a bundle .* as its architecture"):
        load_bundle(forest_bundle)
    with pytest.raises(BundleError, match="names a bundle"):
        create_backbone(f"bundle:{forest_bundle}")  # was endless recursion


def test_invalid_json(forest_bundle):
    (forest_bundle / "transferkit.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(forest_bundle)


def test_newer_format_version_asks_for_an_upgrade(forest_bundle):
    edit_meta(forest_bundle, format_version=99)
    with pytest.raises(BundleError, match=r"format version 99.*upgrade"):
        load_bundle(forest_bundle)
    with pytest.raises(BundleError, match="upgrade"):
        create_backbone(f"bundle:{forest_bundle}")


def test_tampered_weights_fail_the_checksum(forest_bundle):
    path = forest_bundle / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(forest_bundle)


def test_missing_sklearn_head(forest_bundle):
    (forest_bundle / "head.skops").unlink()
    with pytest.raises(BundleError, match=r"missing head\.skops"):
        load_bundle(forest_bundle)


def test_replaced_sklearn_head_fails_its_checksum(forest_bundle):
    (forest_bundle / "head.skops").write_bytes(sio.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(forest_bundle)


class NotAnEstimator:
    def __init__(self):
        self.payload = "anything"


@pytest.mark.parametrize("obj", [collections.OrderedDict(a=1), NotAnEstimator()], ids=["OrderedDict", "custom"])
def test_head_of_a_foreign_type_is_refused(obj, forest_bundle):
    """Someone rewrote head.skops and its recorded checksum: the type allow-list still refuses it."""
    head = forest_bundle / "head.skops"
    head.write_bytes(sio.dumps(obj))
    meta = json.loads((forest_bundle / "transferkit.json").read_text())
    edit_meta(forest_bundle, files={**meta["files"], "head.skops": sha256_file(head)})
    with pytest.raises(BundleError, match="refusing"):
        load_bundle(forest_bundle)


def test_damaged_sklearn_head_is_unreadable_not_a_crash(forest_bundle):
    head = forest_bundle / "head.skops"
    head.write_bytes(b"PK\x03\x04 truncated")
    meta = json.loads((forest_bundle / "transferkit.json").read_text())
    edit_meta(forest_bundle, files={**meta["files"], "head.skops": sha256_file(head)})
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(forest_bundle)


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path):
    import os

    from transferkit._utils import write_json_atomic

    mask = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(mask)
    # not the temporary file's owner-only 0600: a result a colleague or a web server could not read is a lost result
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_head_that_calls_functions_is_refused(tmp_path):
    # the shape of a real attack: predict_proba would write a file of the attacker's choosing
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from transferkit.heads import HEADS
    from transferkit.heads.persist import load_sklearn_head, save_sklearn_head

    target = tmp_path / "written-by-the-head"
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    evil = make_pipeline(FunctionTransformer(np.savetxt, kw_args={"fname": str(target)}, validate=False),
                         LogisticRegression())
    head_file = tmp_path / "head.skops"
    head_file.write_bytes(sio.dumps(evil))  # made with skops directly, as an attacker would
    with pytest.raises(BundleError, match="numpy.savetxt, not a scikit-learn class"):
        load_sklearn_head(head_file)
    with pytest.raises(BundleError, match="numpy.savetxt"):
        save_sklearn_head(evil, tmp_path / "mine.skops")
    assert not target.exists()
    # the library's own heads keep their internal classes (trees, calibrators) and load back
    forest = HEADS["random-forest"](0).set_params(n_estimators=3).fit(X, y)
    save_sklearn_head(forest, tmp_path / "forest.skops")
    assert (load_sklearn_head(tmp_path / "forest.skops").predict_proba(X) == forest.predict_proba(X)).all()


@pytest.mark.parametrize("field, value, message", [
    ("files", [], "'files' is not a dict"),
    ("backbone", "x", "'backbone' is not a dict"),
    ("format_version", "1", "format_version '1', not a number"),
    ("classes", None, "'classes' is missing"),
])
def test_a_damaged_bundle_description_is_one_line(image_folder, tmp_path, field, value, message):
    from transferkit.bundle_format import read_meta

    out = tmp_path / "b"
    FeatureExtractionClassifier(f"random:{TINY}", progress=False).fit(from_folder(image_folder)).save(out)
    meta = json.loads((out / "transferkit.json").read_text())
    if value is None:
        del meta[field]
    else:
        meta[field] = value
    (out / "transferkit.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=message):
        read_meta(out)


def test_saving_and_loading_import_only_downwards():
    """The bundle format sits below every package; what reads or writes bundles below strategies reads the format,
    never the high-level ``transferkit.bundle`` (which imports strategies)."""
    import ast

    src = Path(__import__("transferkit").__file__).parent

    def imported(rel: str) -> set[str]:
        path = src / rel
        package = ["transferkit", *path.relative_to(src).parent.parts]
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                names |= ({".".join([*base, node.module])} if node.module
                          else {".".join([*base, a.name]) for a in node.names})
        return names

    assert imported("bundle_format.py") <= {"transferkit._errors", "transferkit._utils", "transferkit._version"}
    for rel in ("strategies/_base.py", "data/seen.py", "backbones/bundle.py", "heads/persist.py"):
        assert not {n for n in imported(rel) if n == "transferkit.bundle" or n.startswith("transferkit.bundle.")}, rel
