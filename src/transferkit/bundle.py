"""Bundles: a directory with ``model.safetensors`` + ``transferkit.json`` (+ ``head.skops`` for sklearn heads).

No pickle anywhere. The JSON records everything needed to rebuild and to trust the model: backbone spec and
architecture, weights checksum and licence, layer, head, label names, preprocessing, metrics and versions.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._errors import BundleError, TransferkitError
from ._utils import atomic_path, remove_stale_temporaries, sha256_file, write_json_atomic
from ._version import __version__

BUNDLE_FORMAT = "transferkit.bundle"
BUNDLE_FORMAT_VERSION = 1
META_FILE = "transferkit.json"
WEIGHTS_FILE = "model.safetensors"
SKLEARN_HEAD_FILE = "head.skops"
# Content digests of the items the model was trained on (transferkit.data.seen): "model" (anything it learnt from,
# its source's items included) and "backbone" (what the backbone weights saw: for feature extraction, only the source's).
TRAINING_ITEMS_FILE = "training_items.safetensors"
# Text backbones keep their tokenizer or vocabulary here (plain files: tokenizer.json, vocab, options as JSON),
# so a bundle rebuilds its architecture offline without the package or hub it came from.
ASSETS_DIR = "backbone_assets"
STAGING_DIR = ".saving"  # a new bundle is written here in full, then moved over the old one


def library_versions() -> dict[str, str]:
    import safetensors
    import sklearn
    import timm
    import torchvision

    versions = {"transferkit": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "timm": timm.__version__, "scikit-learn": sklearn.__version__,
                "numpy": np.__version__, "safetensors": safetensors.__version__}
    import sys

    if "transformers" in sys.modules:  # only when a text backbone was used
        versions["transformers"] = sys.modules["transformers"].__version__
    return versions


def save_bundle(model: Any, directory: str | os.PathLike[str], *, metrics: dict[str, Any] | None = None,
                data: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                training_items: bool = True) -> Path:
    """Write a fitted strategy as a bundle.

    Args:
        model: a fitted :class:`~transferkit.strategies.TransferClassifier`.
        directory: created if needed. The new bundle is written in full into a staging folder first and then moved
            over the old one; a save killed midway leaves the old bundle, or (killed while moving) the new one.
        metrics: validation metrics to record (e.g. from :func:`transferkit.evaluate`).
        data: a description of the training data (name, sizes, skipped files).
        extra: any other JSON-ready facts to keep (e.g. the baseline comparison).
        training_items: keep 64-bit content digests of the training items (``training_items.safetensors``), so
            ranking, fitting or evaluating on images this model was trained on is flagged as optimistic
            (:mod:`transferkit.data.seen`). False leaves them out: nobody holding the bundle can then test whether
            an image was among them.

    Returns:
        The bundle directory.
    """
    model._check_fitted()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stage = directory / STAGING_DIR
    shutil.rmtree(stage, ignore_errors=True)  # what a save killed before its JSON left
    stage.mkdir()
    _write_bundle(model, stage, metrics=metrics, data=data, extra=extra, training_items=training_items)
    _commit(stage, directory)
    return directory


def _write_bundle(model: Any, directory: Path, *, metrics: dict[str, Any] | None, data: dict[str, Any] | None,
                  extra: dict[str, Any] | None, training_items: bool) -> None:
    """Every file of the bundle into ``directory`` (an empty staging folder), the JSON last."""
    from .bundle_io import head_record

    backbone = model.backbone_
    tensors = {f"backbone.{k}": v.detach().cpu().contiguous() for k, v in backbone.trunk.state_dict().items()}
    head = head_record(model, directory)
    if head.get("module") is not None:
        tensors.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in head.pop("module").state_dict().items()})
    else:
        head.pop("module", None)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": BUNDLE_FORMAT})
    assets = _write_assets(backbone, directory)
    items = _write_training_items(model, directory) if training_items else None
    meta = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "strategy": model.strategy_name,
        "params": _json_params(model),
        "backbone": {**backbone.describe(), "layer": model.layer_, "modality": backbone.modality,
                     **({"assets": assets} if assets else {})},
        "head": head,
        "classes": [str(c) for c in model.classes_],
        "classes_are_integers": bool(np.asarray(model.classes_).dtype.kind in "iu"),
        "head_classes": [int(c) for c in model.head_classes_],
        "preprocessing": backbone.preprocessing.to_dict(),
        "licence": backbone.weights.licence,
        "metrics": metrics or {},
        "data": data or {},
        "fit": getattr(model, "fit_info_", {}),
        "training_items": items,
        "versions": library_versions(),
        "files": {WEIGHTS_FILE: sha256_file(directory / WEIGHTS_FILE)},
        **(extra or {}),
    }
    if items is not None:
        meta["files"][TRAINING_ITEMS_FILE] = sha256_file(directory / TRAINING_ITEMS_FILE)
    if assets:
        meta["files"].update({p.relative_to(directory).as_posix(): sha256_file(p)
                              for p in sorted((directory / ASSETS_DIR).rglob("*")) if p.is_file()})
    if (directory / SKLEARN_HEAD_FILE).exists() and head["type"] == "sklearn":
        meta["files"][SKLEARN_HEAD_FILE] = sha256_file(directory / SKLEARN_HEAD_FILE)
    write_json_atomic(directory / META_FILE, meta)  # last: a staging folder with a JSON is complete


def _commit(stage: Path, directory: Path) -> None:
    """Move a complete staged bundle over ``directory``'s bundle files, the JSON last, and drop the old ones it does
    not have. Only renames, so the window in which a kill leaves a mix is tiny; and a staged bundle left complete by
    such a kill is moved in by the next :func:`read_meta` (roll forward), so the new bundle is never lost."""
    for name in (WEIGHTS_FILE, SKLEARN_HEAD_FILE, TRAINING_ITEMS_FILE):
        if (stage / name).exists():
            os.replace(stage / name, directory / name)
        else:
            (directory / name).unlink(missing_ok=True)
    old = directory / f".{ASSETS_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if (directory / ASSETS_DIR).exists():
        (directory / ASSETS_DIR).rename(old)
    if (stage / ASSETS_DIR).exists():
        (stage / ASSETS_DIR).rename(directory / ASSETS_DIR)
    os.replace(stage / META_FILE, directory / META_FILE)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def output_folder(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """The folder a run writes its bundle (and its checkpoints) into, for the length of the run.

    On entry, what a run killed while writing left is settled: a complete staged save is moved in (as
    :func:`read_meta` would), an unfinished one and atomic-write temporaries are deleted. If the block then fails
    with a :class:`~transferkit.TransferkitError` and the folder did not exist before, the folder (and any parent
    the run made for it) is removed: a failed run leaves no partial bundle. A folder that existed is never removed,
    nor one an interruption left with checkpoints to resume from.

    Example:
        >>> with output_folder("runs/pets"):
        ...     save_bundle(model, "runs/pets")
    """
    from ._dist import is_main_process
    from .training import Interrupted

    directory = Path(directory)
    created = next((p for p in reversed([directory, *directory.parents]) if not os.path.lexists(p)), None)
    if created is None and directory.is_dir() and is_main_process():
        stage = directory / STAGING_DIR
        if (stage / META_FILE).is_file():
            _commit(stage, directory)
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(directory / f".{ASSETS_DIR}.old", ignore_errors=True)  # left by a commit killed at its end
        remove_stale_temporaries(directory)
    try:
        yield directory
    except TransferkitError as e:
        if created is not None and not isinstance(e, Interrupted) and is_main_process():
            shutil.rmtree(created, ignore_errors=True)
        raise


def _write_training_items(model: Any, directory: Path) -> dict[str, Any] | None:
    """Write the model's and its backbone's training-item digests; None when the model knows none."""
    own = getattr(model, "train_items_", None)
    upstream = getattr(model.backbone_, "source_items", None)  # what a bundle: backbone had seen before this fit
    if own is None and upstream is None:
        return None
    union = np.unique(np.concatenate([a for a in (own, upstream) if a is not None])).astype(np.int64)
    backbone_items = union if model.trains_backbone else np.array(upstream if upstream is not None else [], np.int64)
    from safetensors.numpy import save_file as save_arrays

    with atomic_path(directory / TRAINING_ITEMS_FILE) as tmp:
        save_arrays({"model": union, "backbone": backbone_items}, str(tmp), metadata={"format": BUNDLE_FORMAT})
    from .data.seen import DIGEST

    return {"file": TRAINING_ITEMS_FILE, "model": int(len(union)), "backbone": int(len(backbone_items)),
            "digest": DIGEST}


def read_training_items(directory: str | os.PathLike[str], meta: dict[str, Any], which: str = "model"
                        ) -> np.ndarray | None:
    """The sorted digests of the items the ``model`` (or its ``backbone``) was trained on; None when not kept."""
    record = meta.get("training_items")
    if not isinstance(record, dict):
        return None
    path = Path(directory) / record.get("file", TRAINING_ITEMS_FILE)
    expected = meta.get("files", {}).get(path.name)
    if not path.is_file() or (expected and sha256_file(path) != expected):
        raise BundleError(f"{str(path)!r} is missing or does not match its recorded checksum; the bundle is damaged, "
                          "re-create it.")
    from safetensors.numpy import load_file as load_arrays

    try:
        return load_arrays(str(path))[which]
    except (SafetensorError, OSError, KeyError) as e:
        raise BundleError(f"{str(path)!r} is unreadable ({e}); re-create the bundle.") from None


def _write_assets(backbone: Any, directory: Path) -> dict[str, str] | None:
    """Export a text backbone's tokenizer/vocabulary into ``ASSETS_DIR`` of the (staging) ``directory``; None when
    the backbone has none (:func:`_commit` swaps the folder in with the rest)."""
    target = directory / ASSETS_DIR
    target.mkdir()
    prefix = backbone.export_assets(target)
    if prefix is None:
        shutil.rmtree(target)
        return None
    return {"source": prefix, "dir": ASSETS_DIR}


def update_bundle_meta(directory: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """Replace top-level ``fields`` of a bundle's JSON (atomically), e.g. the transfer verdict once it is known."""
    meta = read_meta(directory)
    meta.update(fields)
    write_json_atomic(Path(directory) / META_FILE, meta)
    return meta


def _json_params(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in model.get_params(deep=False).items():
        if isinstance(v, (str, int, float, bool, type(None))):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = list(v)  # e.g. zero-shot labels: restored as given
        elif hasattr(v, "spec"):
            out[k] = v.spec
        else:
            out[k] = repr(v)
    return out


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's JSON, validated: exists, parses, right format, a version this library reads."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"Bundle {str(directory)!r} does not exist; create one with `transferkit fit ... --out DIR`.")
    if (directory / STAGING_DIR / META_FILE).is_file():  # a save killed while moving its files in: finish it
        _commit(directory / STAGING_DIR, directory)
    path = directory / META_FILE
    if not path.is_file():
        raise BundleError(f"{str(directory)!r} is not a transferkit bundle (no {META_FILE}).")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{str(path)!r} is not valid JSON ({e}); the bundle is damaged, re-create it.") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{str(path)!r} is not a transferkit bundle description.")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{str(path)!r} has format_version {version!r}, not a number; the bundle is damaged, "
                          f"re-create it.")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"Bundle {str(directory)!r} has format version {version}, newer than this transferkit "
            f"({__version__}) reads (<= {BUNDLE_FORMAT_VERSION}); upgrade: pip install -U transferkit."
        )
    # the fields every loader reads, with the shapes it reads them in: a damaged file fails here, in one line
    shapes = {"files": dict, "backbone": dict, "classes": list, "strategy": str}
    wrong = [k for k, kind in shapes.items() if k in meta and not isinstance(meta[k], kind)]
    missing = [k for k in ("classes", "strategy") if k not in meta]
    if wrong or missing:
        what = f"{wrong[0]!r} is not a {shapes[wrong[0]].__name__}" if wrong else f"{missing[0]!r} is missing"
        raise BundleError(f"{str(path)!r}: {what}; the bundle is damaged, re-create it.")
    return meta


def read_weights(directory: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise BundleError(f"Bundle {str(directory)!r} has no {WEIGHTS_FILE}; re-create it.")
    expected = meta.get("files", {}).get(WEIGHTS_FILE)
    if expected and sha256_file(path) != expected:
        raise BundleError(f"{str(path)!r} does not match its recorded checksum; the bundle is damaged, re-create it.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise BundleError(f"{str(path)!r} is unreadable ({e}); re-create the bundle.") from None


def load_bundle(directory: str | os.PathLike[str], **overrides: Any) -> Any:
    """Load a bundle as a fitted strategy ready for ``predict``/``predict_proba``/``score``.

    Args:
        directory: the bundle directory.
        **overrides: runtime settings such as ``device``, ``batch_size``, ``progress``, ``cache``.

    Example:
        >>> clf = load_bundle("runs/quickstart")
        >>> clf.predict(["shoe.png"])
    """
    from .bundle_io import restore

    directory = Path(directory)
    meta = read_meta(directory)
    return restore(directory, meta, read_weights(directory, meta), overrides)
