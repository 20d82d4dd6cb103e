"""Saving scikit-learn heads without pickle: skops' JSON + arrays format, loaded with a type allow-list.

Only types from the scikit-learn and numpy namespaces are ever instantiated on load; anything else in a
file is refused, so a bundle from someone else cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import skops.io as sio

from .._errors import BundleError
from .._utils import atomic_path

ALLOWED_PREFIXES = ("sklearn.", "numpy.")


def save_sklearn_head(head: Any, path: Path) -> None:
    """Write ``head`` with skops; refuses heads that could not be loaded back safely."""
    data = sio.dumps(head)
    refused = [t for t in sio.get_untrusted_types(data=data) if not t.startswith(ALLOWED_PREFIXES)]
    if refused:
        raise BundleError(
            f"The head contains {refused[0]}, which cannot be stored without pickle; use scikit-learn estimators."
        )
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def load_sklearn_head(path: Path) -> Any:
    try:
        data = path.read_bytes()
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as e:  # skops raises assorted errors on damaged files
        raise BundleError(f"Head file {str(path)!r} is unreadable ({type(e).__name__}); re-create the bundle.") from None
    refused = [t for t in untrusted if not t.startswith(ALLOWED_PREFIXES)]
    if refused:
        raise BundleError(
            f"Head file {str(path)!r} contains types outside scikit-learn/numpy ({refused[0]}); refusing to load it."
        )
    head = sio.loads(data, trusted=untrusted)
    # skops trusts some builtins and collections by default: the object itself must be a scikit-learn classifier
    if not (type(head).__module__.startswith("sklearn.") and hasattr(head, "predict_proba")):
        raise BundleError(
            f"Head file {str(path)!r} holds a {type(head).__name__}, not a scikit-learn classifier; refusing to load it."
        )
    return head
