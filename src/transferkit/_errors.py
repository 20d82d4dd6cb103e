"""One base exception for everything a user can get wrong, and a few subclasses.

Messages follow one wording: what is wrong, the value received, and what to do.
The CLI turns any ``TransferkitError`` into one red line on stderr and exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TransferkitError(Exception):
    """Base class of every error caused by user input or environment."""


class DataError(TransferkitError):
    """The dataset cannot be used as given."""


class BackboneError(TransferkitError):
    """The backbone spec is unknown, ambiguous or cannot be loaded."""


class OfflineError(BackboneError):
    """Weights had to come from a hub that cannot be reached."""


class BundleError(TransferkitError):
    """A bundle is missing, unreadable or from an incompatible version."""


class NotFittedError(TransferkitError, AttributeError):
    """A strategy was used before ``fit``. Subclasses AttributeError like scikit-learn's."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""
