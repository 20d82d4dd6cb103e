"""Atomic training checkpoints: tensors in safetensors, everything else in JSON, never pickle.

A checkpoint is a directory ``<run>/checkpoints/step-<N>/`` holding ``state.safetensors`` and ``state.json``.
It is written under a temporary name and renamed into place, then ``<run>/checkpoints/latest`` (a text file
naming it) is replaced atomically; so ``kill -9`` at any moment leaves either the previous checkpoint or the new
one, never a half-written file that is read back.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._errors import TransferkitError
from .._utils import atomic_path, remove_stale_temporaries, sha256_file

KEEP = 2


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return None  # callables (e.g. LambdaLR's functions) are rebuilt from the config, not stored


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[Any, Any] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state: Any = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    py: Any = random.getstate()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(run_dir: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; keeps the last two."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
    meta = {**_jsonable(meta), "tensors_sha256": sha256_file(tmp / "state.safetensors")}
    (tmp / "state.json").write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    with atomic_path(root / "latest") as t:
        t.write_text(final.name)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial_writes(run_dir: Path) -> None:
    """Delete what a run killed while writing left in ``run_dir``: checkpoint folders still under their temporary
    name and atomic-write temporaries (of ``metrics.jsonl``, the curves, ``latest``). Call it as a run starts."""
    remove_stale_temporaries(run_dir)
    remove_stale_temporaries(run_dir / "checkpoints")
    for partial in (run_dir / "checkpoints").glob(".step-*.tmp"):
        shutil.rmtree(partial, ignore_errors=True)


def load_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The latest complete checkpoint of ``run_dir``, or None when there is none.

    ``latest`` names it; should that one be missing or damaged (a kill while a checkpoint of the same step was being
    replaced), the newest older one that verifies is used: resuming from it replays the steps in between exactly.
    """
    root = run_dir / "checkpoints"
    candidates = _newest_first(root)
    if not candidates:
        return None
    problem = ""
    for directory in candidates:
        try:
            meta = json.loads((directory / "state.json").read_text())
            if sha256_file(directory / "state.safetensors") != meta.get("tensors_sha256"):
                raise ValueError("checksum mismatch")
            return load_file(str(directory / "state.safetensors")), meta
        except (OSError, ValueError, SafetensorError) as e:
            problem = problem or f"{str(directory)!r} is damaged ({e})"
    raise TransferkitError(f"Checkpoint {problem}, and no older one is complete; delete {str(root)!r} to start over.")


def checkpoint_config(run_dir: Path) -> dict[str, Any] | None:
    """The training settings the run's checkpoints record, read without loading any tensor; None when none is
    readable (every checkpoint of one run records the same settings)."""
    for directory in _newest_first(run_dir / "checkpoints"):
        try:
            return dict(json.loads((directory / "state.json").read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _newest_first(root: Path) -> list[Path]:
    """The checkpoint ``latest`` names, then the older ones, newest first; [] when there is no ``latest``."""
    pointer = root / "latest"
    if not pointer.is_file():
        return []
    named = root / pointer.read_text().strip()
    return [named, *sorted((p for p in root.glob("step-*") if p.is_dir() and p != named), reverse=True)]
