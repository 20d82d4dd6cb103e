"""One base exception for everything a user can get wrong, and a few subclasses.

Messages follow one wording: what is wrong, the value received, and what to do.
The CLI turns any ``TransferkitError`` into one red line on stderr and exit code 2.

A message names the parameters it is about the way Python spells them, between backticks: `` `image_size` ``, or
with a value (a Python literal) `` `baseline_model='arch'` ``. ``str(error)`` shows them without the backticks
(``image_size``, ``baseline_model='arch'``); the CLI spells each one as its flag instead (``--image-size``,
``--baseline arch``) through :func:`spell_parameters`, so one message serves both.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable

#: a parameter named in a message: `name` or `name=value`, value a Python literal
PARAMETER = re.compile(r"`([a-z_][a-z0-9_]*)(?:=([^`]+))?`")


class TransferkitError(Exception):
    """Base class of every error caused by user input or environment.

    Example:
        >>> str(TransferkitError("`baseline_image_size` applies to `baseline_model='arch'`."))
        "baseline_image_size applies to baseline_model='arch'."
    """

    def __str__(self) -> str:
        return spell_parameters(super().__str__(), python_spelling)


class DataError(TransferkitError):
    """The dataset cannot be used as given."""


class BackboneError(TransferkitError):
    """The backbone spec is unknown, ambiguous or cannot be loaded."""


class OfflineError(BackboneError):
    """Weights had to come from a hub that cannot be reached."""


class BundleError(TransferkitError):
    """A bundle is missing, unreadable or from an incompatible version."""


class LicenceError(TransferkitError):
    """The weights' licence does not allow the use asked for (``commercial``), or is unknown."""


class NotFittedError(TransferkitError, AttributeError):
    """A strategy was used before ``fit``. Subclasses AttributeError like scikit-learn's."""


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def python_spelling(name: str, value: str | None) -> str:
    """How the Python API spells a parameter of a message: ``name`` or ``name=value``."""
    return name if value is None else f"{name}={value}"


def spell_parameters(message: str, spell: Callable[[str, str | None], str | None]) -> str:
    """``message`` with each `` `name` `` / `` `name=value` `` replaced by ``spell(name, value)``.

    ``value`` is the literal as written (``'arch'``, ``True``); where ``spell`` returns None, the Python spelling
    stays. Backticked text that is not one identifier (a command such as `` `transferkit backbones` ``) is left as
    it is.

    Example:
        >>> spell_parameters("`image_size` needs `strategy='fine-tune'`", lambda n, v: "--" + n.replace("_", "-"))
        '--image-size needs --strategy'
    """
    def replace(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        return spell(name, value) or python_spelling(name, value)

    return PARAMETER.sub(replace, message)
