"""Saving scikit-learn heads without pickle: skops' JSON + arrays format, loaded with a type allow-list.

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

import skops.io as sio

from .._errors import BundleError
from .._utils import atomic_path


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
