"""Optional dependencies: imported where they are used, refused with the extra that installs them.

``import transferkit`` needs only the core install; text encoders, audio reading, PEFT and ONNX export come with
extras (``pip install 'transferkit[text]'``, ``[audio]``, ``[peft]``, ``[onnx]``, ``[all]``). A missing one fails at
the point of use with one line that names the extra (accelerate's ``utils/imports.py`` does the same).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import TransferkitError

EXTRAS = ("text", "audio", "peft", "onnx", "all")


def install_hint(extra: str) -> str:
    """The command that installs ``extra``: ``pip install 'transferkit[text]'``."""
    return f"pip install 'transferkit[{extra}]'"


def require(module: str, extra: str, what: str, *, package: str | None = None,
            error: type[TransferkitError] = TransferkitError) -> ModuleType:
    """Import ``module``, or raise ``error`` saying that ``what`` needs it and which extra installs it.

    Args:
        module: the import name, e.g. ``"transformers"`` or ``"pyarrow.parquet"``.
        extra: the transferkit extra that brings it (``text``, ``audio``, ``peft``, ``onnx``).
        what: what needs it, as the message's subject (``"hf: backbones"``, or a parameter in backticks:
            ``"`peft`"``, which the CLI spells as its flag).
        package: the distribution's name when it differs from the import name (default: its top-level module).
        error: the :class:`TransferkitError` subclass to raise (the one the caller raised before).

    Returns:
        The imported module.

    Raises:
        TransferkitError: (``error``) the module cannot be imported.

    Example:
        >>> peft = require("peft", "peft", "`peft`")
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        name = package or module.split(".")[0]
        raise error(f"{what} needs {name}, which is not installed; install it: {install_hint(extra)}") from None
