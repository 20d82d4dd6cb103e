"""What the jobs that load a bundle share: how their runtime settings reach :func:`~transferkit.load_bundle`."""

from __future__ import annotations

from typing import Any, Protocol


class RuntimeSettings(Protocol):
    device: str
    batch_size: int | None
    num_workers: int
    progress: bool


def load_options(cfg: RuntimeSettings) -> dict[str, Any]:
    """The runtime settings of a config (``device``, ``batch_size``, ...) as :func:`~transferkit.load_bundle`
    keyword arguments; a ``batch_size`` left out keeps the bundle's own."""
    options: dict[str, Any] = {"device": cfg.device, "num_workers": cfg.num_workers, "progress": cfg.progress}
    if cfg.batch_size:
        options["batch_size"] = cfg.batch_size
    return options
