"""On-disk feature cache: features computed once per (backbone weights, layer, preprocessing, image content).

Layout: ``<root>/<namespace>/`` holds ``key.json`` (what the namespace means, for humans) and shards
``shard-<uuid>.safetensors``, each one ``features`` tensor ``(n, D)`` with the images' content hashes in its
metadata. Shards are written to a temporary file and renamed, so an interrupted write is never read back; an
interrupted extraction keeps every shard already written (the next run resumes from there).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from .._utils import atomic_path, write_json_atomic

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$TRANSFERKIT_CACHE``, else ``$XDG_CACHE_HOME/transferkit``, else ``~/.cache/transferkit``."""
    if env := os.environ.get("TRANSFERKIT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "transferkit"


class FeatureStore:
    """The cached features of one namespace (one backbone weights + layer + preprocessing)."""

    def __init__(self, directory: Path, key: dict[str, Any]):
        self.directory = directory
        self.key = key
        self._index: dict[str, tuple[Path, int]] | None = None

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            index: dict[str, tuple[Path, int]] = {}
            for shard in sorted(self.directory.glob("shard-*.safetensors")):
                try:
                    with safe_open(shard, framework="numpy") as f:
                        keys = json.loads((f.metadata() or {}).get("keys", "[]"))
                except (SafetensorError, OSError, ValueError):
                    continue  # unreadable shard: its images are simply recomputed
                for row, k in enumerate(keys):
                    index.setdefault(k, (shard, row))
            self._index = index
        return self._index

    def __contains__(self, content_key: str) -> bool:
        return content_key in self._load_index()

    def __len__(self) -> int:
        return len(self._load_index())

    def get_many(self, content_keys: list[str]) -> dict[str, np.ndarray]:
        """Cached feature vectors for whichever of ``content_keys`` are present."""
        index = self._load_index()
        by_shard: dict[Path, list[tuple[str, int]]] = {}
        for k in content_keys:
            if k in index:
                shard, row = index[k]
                by_shard.setdefault(shard, []).append((k, row))
        found: dict[str, np.ndarray] = {}
        for shard, wanted in by_shard.items():
            try:
                with safe_open(shard, framework="numpy") as f:
                    features = f.get_tensor("features")
            except (SafetensorError, OSError):
                continue
            for k, row in wanted:
                found[k] = features[row]
        return found

    def add(self, content_keys: list[str], features: np.ndarray) -> None:
        """Write one new shard atomically."""
        if not content_keys:
            return
        features = np.ascontiguousarray(features, dtype=np.float32)
        if len(content_keys) != len(features):
            raise ValueError("content_keys and features must have the same length")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "key.json").exists():
            write_json_atomic(self.directory / "key.json", self.key)
        shard = self.directory / f"shard-{uuid.uuid4().hex}.safetensors"
        with atomic_path(shard) as tmp:
            save_file({"features": features}, str(tmp), metadata={"keys": json.dumps(content_keys)})
        if self._index is not None:
            for row, k in enumerate(content_keys):
                self._index.setdefault(k, (shard, row))


class FeatureCache:
    """Root of all feature stores. ``FeatureCache(None)`` uses :func:`default_cache_dir`.

    Example:
        >>> cache = FeatureCache("/tmp/tk-cache")
        >>> store = cache.store({"backbone": "...", "checksum": "...", "layer": "pre_logits"})
    """

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def store(self, key: dict[str, Any]) -> FeatureStore:
        full_key = {"cache_format": CACHE_FORMAT, **key}
        digest = hashlib.sha256(json.dumps(full_key, sort_keys=True).encode()).hexdigest()[:24]
        return FeatureStore(self.root / "features" / digest, full_key)
