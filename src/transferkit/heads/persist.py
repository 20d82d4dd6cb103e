"""Heads in bundles: torch heads as a config + tensors, scikit-learn heads without pickle — skops' JSON + arrays
format, loaded with a type allow-list.

skops itself trusts scikit-learn's estimators, numpy's arrays and dtypes and numpy's ufuncs. Beyond those, a file
may name only *classes* of scikit-learn's own modules (tree structures, calibrators, distance metrics): never a
function, and nothing from another package. A function would be called with the features at predict time — a
``FunctionTransformer(numpy.savetxt, ...)`` step writes any file it is told to — so a bundle from someone else
could otherwise write files, and through them run code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import BundleError
from .._utils import atomic_path
from ..bundle_format import SKLEARN_HEAD_FILE, checked_file, prefixed, unprefixed
from .modules import build_head_module


def _refused(untrusted: list[str]) -> list[str]:
    """The entries beyond skops' own trusted set that are not classes of scikit-learn."""
    return [name for name in untrusted if not (name.startswith("sklearn.") and _is_class(name))]


def _is_class(name: str) -> bool:
    """Whether the dotted ``name`` is a class (imports only scikit-learn modules, which are installed anyway)."""
    module, _, attr = name.rpartition(".")
    while module:
        try:
            obj: Any = importlib.import_module(module)
        except ImportError:
            module, _, parent = module.rpartition(".")
            attr = f"{parent}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        return isinstance(obj, type)
    return False


def save_sklearn_head(head: Any, path: Path) -> None:
    """Write ``head`` with skops; refuses heads that could not be loaded back safely."""
    import skops.io as sio  # lazily: importing skops costs ~2 s (it walks scikit-learn), and most heads are torch modules

    data = sio.dumps(head)
    refused = _refused(sio.get_untrusted_types(data=data))
    if refused:
        raise BundleError(
            f"The head contains {refused[0]}, which a bundle cannot hold safely (only scikit-learn classes, no "
            f"functions); use scikit-learn estimators without function arguments."
        )
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def load_sklearn_head(path: Path) -> Any:
    import skops.io as sio

    try:
        data = path.read_bytes()
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as e:  # skops raises assorted errors on damaged files
        raise BundleError(f"Head file {str(path)!r} is unreadable ({type(e).__name__}); re-create the bundle.") from None
    refused = _refused(untrusted)
    if refused:
        raise BundleError(
            f"Head file {str(path)!r} contains {refused[0]}, not a scikit-learn class; refusing to load it (it could "
            f"run code). Re-create the bundle from data you trust."
        )
    head = sio.loads(data, trusted=untrusted)
    # skops trusts some builtins and collections by default: the object itself must be a scikit-learn classifier
    if not (type(head).__module__.startswith("sklearn.") and hasattr(head, "predict_proba")):
        raise BundleError(
            f"Head file {str(path)!r} holds a {type(head).__name__}, not a scikit-learn classifier; refusing to load it."
        )
    return head


# -- a head's part of a bundle (the ``head`` record of its JSON, and its tensors or file) ------------------------

def module_head_state(module: nn.Module, config: dict[str, Any], name: str
                      ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A torch head's ``head`` record (``config`` rebuilds it, see :func:`build_head_module`) and its tensors, named
    ``head.*`` in the bundle's weights."""
    return {"type": config["type"], "name": name, "config": config}, prefixed("head", module.state_dict())


def sklearn_head_state(head: Any, name: str, directory: Path) -> dict[str, Any]:
    """Write a scikit-learn head into the (staging) bundle ``directory``; its ``head`` record."""
    save_sklearn_head(head, directory / SKLEARN_HEAD_FILE)
    return {"type": "sklearn", "name": name, "estimator": type(head).__name__, "file": SKLEARN_HEAD_FILE}


def restore_module_head(directory: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
                        ) -> tuple[nn.Module, dict[str, Any]]:
    """The torch head of a bundle, in eval mode, and its config."""
    config = meta.get("head", {}).get("config")
    if not config:
        raise BundleError(f"Bundle {str(directory)!r} does not describe its head; re-create it.")
    module = build_head_module(config)
    try:
        module.load_state_dict(unprefixed("head", tensors))
    except RuntimeError:
        raise BundleError(f"Bundle {str(directory)!r} head weights do not match its description.") from None
    return module.eval(), config


def restore_sklearn_head(directory: Path, meta: dict[str, Any]) -> Any:
    """The scikit-learn head of a bundle, from its checked ``head.skops``."""
    return load_sklearn_head(checked_file(directory, meta, meta.get("head", {}).get("file", SKLEARN_HEAD_FILE)))
