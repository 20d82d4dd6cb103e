"""``python -m transferkit``: the CLI, also for launchers (``torchrun -m transferkit``, ``accelerate launch -m``)."""

from .cli import entrypoint

entrypoint()
