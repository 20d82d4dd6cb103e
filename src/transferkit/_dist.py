"""Multi-process runs on Hugging Face Accelerate (DDP under ``accelerate launch`` or ``torchrun``).

Nothing here is a distributed engine of our own: Accelerate sets up the process group and wraps models in
DDP; these helpers only answer "am I distributed, which rank, am I the one that writes" and move small Python
objects between ranks.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import torch
import torch.distributed as dist


def launched_distributed() -> bool:
    """True under ``torchrun``/``accelerate launch`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def accelerator() -> Any:
    """The process's Accelerator (created once; it initialises the process group: NCCL on GPUs, gloo on CPUs)."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def init_distributed() -> None:
    """Join the process group when launched by torchrun/accelerate; a no-op for a single process."""
    if launched_distributed():
        accelerator()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few numbers over ranks (float64 on CPU so gloo and NCCL-less runs agree)."""
    if rank_and_world()[1] == 1:
        return values
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    world = rank_and_world()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out
