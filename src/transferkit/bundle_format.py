"""The bundle directory format: ``model.safetensors`` + ``transferkit.json`` (+ ``head.skops`` for sklearn heads).

No pickle anywhere. The JSON records everything needed to rebuild and to trust the model: backbone spec and
architecture, weights checksum and licence, layer, head, label names, preprocessing, metrics and versions.

This module knows the files only — their names, how each is written and checked, and the staged save that replaces
a bundle without ever leaving half of one. What goes into them is each strategy's business
(:meth:`transferkit.strategies.TransferClassifier.save`); :mod:`transferkit.bundle` is the face over both.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._errors import BundleError
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
    import sys
    from importlib.metadata import PackageNotFoundError, version

    def installed(distribution: str) -> str:
        # the package metadata, whether or not the module was imported (importing timm only to read its version
        # costs seconds), so a run that never imported it records the same versions as one that did
        try:
            return version(distribution)
        except PackageNotFoundError:
            return "not installed"

    versions = {"transferkit": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "torchvision": installed("torchvision"), "timm": installed("timm"),
                "scikit-learn": installed("scikit-learn"), "numpy": np.__version__,
                "safetensors": installed("safetensors")}

    if "transformers" in sys.modules:  # only when a text backbone was used
        versions["transformers"] = sys.modules["transformers"].__version__
    return versions


# -- writing -------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def staged(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """The staging folder a new bundle of ``directory`` is written into, moved over the old bundle on success.

    ``directory`` is created if needed. A save killed midway leaves the old bundle, or (killed while moving) the
    new one, which the next :func:`read_meta` finishes moving in. Write the JSON last (:func:`write_meta`): a
    staging folder with a JSON is complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stage = directory / STAGING_DIR
    shutil.rmtree(stage, ignore_errors=True)  # what a save killed before its JSON left
    stage.mkdir()
    yield stage
    commit(stage, directory)


def prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as the bundle keeps it: names under ``<prefix>.``, tensors detached, on the CPU, contiguous."""
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in state.items()}


def unprefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of the bundle named ``<prefix>.*``, with that prefix removed."""
    return {k.removeprefix(f"{prefix}."): v for k, v in tensors.items() if k.startswith(f"{prefix}.")}


def write_weights(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": BUNDLE_FORMAT})


def write_training_items(directory: Path, model: np.ndarray, backbone: np.ndarray, digest: str) -> dict[str, Any]:
    """Write the digests of the items the ``model`` and its ``backbone`` were trained on; the JSON's record of them.

    ``digest`` says what a digest is (:data:`transferkit.data.seen.DIGEST`)."""
    from safetensors.numpy import save_file as save_arrays

    with atomic_path(directory / TRAINING_ITEMS_FILE) as tmp:
        save_arrays({"model": model, "backbone": backbone}, str(tmp), metadata={"format": BUNDLE_FORMAT})
    return {"file": TRAINING_ITEMS_FILE, "model": int(len(model)), "backbone": int(len(backbone)), "digest": digest}


def write_assets(directory: Path, export: Callable[[Path], str | None]) -> dict[str, str] | None:
    """Let ``export`` (a text backbone's ``export_assets``) write its tokenizer/vocabulary into ``ASSETS_DIR`` of the
    (staging) ``directory``; None when it has none (:func:`commit` swaps the folder in with the rest)."""
    target = directory / ASSETS_DIR
    target.mkdir()
    prefix = export(target)
    if prefix is None:
        shutil.rmtree(target)
        return None
    return {"source": prefix, "dir": ASSETS_DIR}


def write_meta(directory: Path, fields: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the JSON of the bundle staged in ``directory``, last: the format, ``fields``, the library versions, the
    checksums of every file written before it, then ``extra``."""
    meta = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **fields,
        "versions": library_versions(),
        "files": _checksums(directory),
        **(extra or {}),
    }
    write_json_atomic(directory / META_FILE, meta)  # last: a staging folder with a JSON is complete
    return meta


def _checksums(directory: Path) -> dict[str, str]:
    files = {WEIGHTS_FILE: sha256_file(directory / WEIGHTS_FILE)}
    if (directory / TRAINING_ITEMS_FILE).exists():
        files[TRAINING_ITEMS_FILE] = sha256_file(directory / TRAINING_ITEMS_FILE)
    if (directory / ASSETS_DIR).is_dir():
        files.update({p.relative_to(directory).as_posix(): sha256_file(p)
                      for p in sorted((directory / ASSETS_DIR).rglob("*")) if p.is_file()})
    if (directory / SKLEARN_HEAD_FILE).exists():
        files[SKLEARN_HEAD_FILE] = sha256_file(directory / SKLEARN_HEAD_FILE)
    return files


def commit(stage: Path, directory: Path) -> None:
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


def settle(directory: Path) -> None:
    """Settle what a run killed while writing into the bundle folder ``directory`` left: a complete staged save is
    moved in (as :func:`read_meta` would), an unfinished one and atomic-write temporaries are deleted."""
    stage = directory / STAGING_DIR
    if (stage / META_FILE).is_file():
        commit(stage, directory)
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(directory / f".{ASSETS_DIR}.old", ignore_errors=True)  # left by a commit killed at its end
    remove_stale_temporaries(directory)


def update_bundle_meta(directory: str | os.PathLike[str], **fields: Any) -> dict[str, Any]:
    """Replace top-level ``fields`` of a bundle's JSON (atomically), e.g. the transfer verdict once it is known."""
    meta = read_meta(directory)
    meta.update(fields)
    write_json_atomic(Path(directory) / META_FILE, meta)
    return meta


# -- reading -------------------------------------------------------------------------------------------------

def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's JSON, validated: exists, parses, right format, a version this library reads."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"Bundle {str(directory)!r} does not exist; create one with `transferkit fit ... --out DIR`.")
    if (directory / STAGING_DIR / META_FILE).is_file():  # a save killed while moving its files in: finish it
        commit(directory / STAGING_DIR, directory)
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


def checked_file(directory: Path, meta: dict[str, Any], name: str) -> Path:
    """The path of the bundle's file ``name``, once it is known to exist and to match its recorded checksum."""
    path = directory / name
    if not path.is_file():
        raise BundleError(f"Bundle {str(directory)!r} is missing {path.name}; re-create it.")
    expected = meta.get("files", {}).get(path.name)
    if expected and sha256_file(path) != expected:
        raise BundleError(f"{str(path)!r} does not match its recorded checksum; the bundle is damaged, re-create it.")
    return path


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
