"""Streaming feature extraction through the on-disk cache.

Features are computed in batches and flushed to the cache in shards, so memory does not grow with the
dataset; images already in the cache (same content, same weights, layer and preprocessing) are not recomputed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._dist import all_gather_objects, barrier, rank_and_world
from .._progress import progress_bar
from .._utils import autocast, move_to, resolve_device
from ..backbones._base import Backbone
from ..data import ImageDataset
from ..data._dataset import check_bad_fraction
from ..data.loader import backbone_batches, prefetched
from .cache import FeatureCache
from .jpeg_decode import all_jpeg, decode_jpeg_batch, raw_jpeg_loader

DEFAULT_MAX_BAD_FRACTION = 0.1


@dataclass
class ExtractedFeatures:
    """Result of :func:`extract_features`.

    Attributes:
        features: ``(n_good, D)`` float32, in dataset order (None when only the cache was populated).
        index: ``(n_good,)`` positions in the dataset of the usable images.
        skipped: ``(input, reason)`` for every unusable input.
        cached: how many images came from the cache; ``computed``: how many went through the backbone.
        inputs: what the backbone reports about the inputs (text: tokens, out-of-vocabulary fraction, truncated
            texts); empty for images.
        keys: the content keys of the usable images, aligned with ``index`` (what the cache is keyed on; also what
            :mod:`transferkit.data.seen` digests, so nothing reads the images twice for it).
    """

    features: np.ndarray | None
    index: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0
    computed: int = 0
    seconds: float = 0.0
    inputs: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {"images": int(len(self.index)), "cached": self.cached, "computed": self.computed,
               "skipped": [list(s) for s in self.skipped], "seconds": round(self.seconds, 3)}
        if self.inputs:
            out["inputs"] = self.inputs
        return out


# Raised whenever this library's code starts computing different features from the same weights and inputs (2: word
# vectors count clitics, 2026-11-30), so no cache written by an older version is ever read.
FEATURES_VERSION = 2


def cache_key(backbone: Backbone, layer: str | None, device: torch.device | None = None) -> dict[str, Any]:
    """What makes two feature vectors interchangeable: exact weights, layer, preprocessing and the precision of the
    forward pass (bf16 autocast on CUDA, fp32 elsewhere: features that differ by more than a cache should hide)."""
    return {
        "arch": backbone.arch_spec,
        # The weights as they are now (not the file they came from): a fine-tuned backbone gets new features.
        "state": backbone.trunk_checksum(),
        "layer": backbone._check_layer(layer),
        "preprocessing": backbone.preprocessing.to_dict(),
        "precision": "bf16" if device is not None and device.type == "cuda" else "fp32",
        "version": FEATURES_VERSION,
    }


def extract_features(
    backbone: Backbone,
    dataset: ImageDataset,
    *,
    layer: str | None = None,
    cache: FeatureCache | str | bool | None = True,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    shard_size: int = 2048,
    return_features: bool = True,
    gpu_decode: bool | None = None,
    shard: bool = True,
) -> ExtractedFeatures:
    """Pooled features of every usable image at ``layer``, through the feature cache.

    Args:
        backbone: any :class:`Backbone`; used frozen, in eval mode, without gradients.
        dataset: the images; unusable ones are skipped and listed in ``skipped``.
        layer: a name from ``backbone.layers`` (default ``pre_logits``).
        cache: True (default location), a directory or :class:`FeatureCache`, or False/None for no cache.
        batch_size, num_workers: DataLoader settings for decoding.
        device: ``auto|cpu|cuda``; on CUDA the forward runs in bf16 with channels_last and pinned memory.
        max_bad_fraction: fail with a :class:`DataError` when more inputs than this are unusable.
        shard_size: rows per cache shard; also the most features held in memory before a flush.
        return_features: False only fills the cache (constant memory), e.g. ahead of a run.
        gpu_decode: decode JPEG files in batches on ``device`` (nvJPEG on CUDA) instead of PIL in the loader;
            default: on when the device is CUDA and every image to compute is a JPEG file.
        shard: under torchrun/accelerate, split the work over the processes and gather it (a collective call:
            every rank must make it); False computes everything in this process.

    Returns:
        :class:`ExtractedFeatures` with ``features`` of shape ``(n_good, layer_dim)``.

    Example:
        >>> out = extract_features(create_backbone("packaged:efficientnet_lite0"), load_embedded())
        >>> out.features.shape
        (400, 1280)
    """
    start = time.perf_counter()
    dev = resolve_device(device)
    layer_name = backbone._check_layer(layer)
    if cache is True:
        cache = FeatureCache()
    elif isinstance(cache, str):
        cache = FeatureCache(cache)
    if backbone.modality != "image":
        gpu_decode = False
    if gpu_decode is None:
        gpu_decode = dev.type == "cuda" and all_jpeg(dataset, list(range(len(dataset))))
    key = cache_key(backbone, layer_name, dev)
    if gpu_decode:  # batch-decoded pixels differ slightly from PIL's (cosine ~0.9999): a cache of their own
        key["decoder"] = "torchvision.io.decode_jpeg"
    store = cache.store(key) if isinstance(cache, FeatureCache) else None

    keys = [dataset.content_key(i) for i in range(len(dataset))]
    found = store.get_many(keys) if (store is not None and return_features) else {}
    if store is not None and not return_features:
        found = {k: np.empty(0) for k in keys if k in store}
    missing = np.array([i for i, k in enumerate(keys) if k not in found], dtype=np.int64)
    # One preallocated result, filled from the cache and then batch by batch: no second copy of the features.
    out = np.empty((len(dataset), backbone.layer_dim(layer_name)), dtype=np.float32) if return_features else None
    if out is not None:
        for i, k in enumerate(keys):
            if k in found:
                out[i] = found[k]
    found = {}
    skipped: list[tuple[str, str]] = []
    bad: set[int] = set()
    rank, world = rank_and_world() if shard else (0, 1)
    progress = progress and rank == 0
    total_missing = len(missing)
    mine: list[tuple[np.ndarray, np.ndarray]] = []  # (indices, features) this rank computed, for the gather
    writer = store
    if world > 1:  # under torchrun/accelerate: each rank extracts every world-th missing image
        missing = missing[rank::world]
        store = None  # rank 0 writes everything after the gather
    if len(missing):
        was_training = backbone.training
        # channels-last is faster for convolutions on CUDA and on CPU alike (measured: bench/results)
        backbone.eval().to(dev).to(memory_format=torch.channels_last)
        if gpu_decode:
            loader = raw_jpeg_loader(dataset, missing.tolist(), batch_size, num_workers)
        else:
            loader = backbone_batches(backbone, dataset, indices=missing, batch_size=batch_size,
                                      num_workers=num_workers, pin_memory=dev.type == "cuda")
        pending_keys: list[str] = []
        pending: list[np.ndarray] = []

        def flush() -> None:
            if store is not None and pending_keys:
                store.add(list(pending_keys), np.concatenate(pending))
            pending_keys.clear()
            pending.clear()

        try:
            with progress_bar(len(missing), f"features {backbone.spec} @ {layer_name}", progress) as advance, \
                    torch.inference_mode():
                # no worker processes: the next batch is decoded in a thread while this one runs the backbone
                for batch in (prefetched(loader) if num_workers == 0 else loader):
                    if gpu_decode:
                        images, kept, decode_bad = decode_jpeg_batch(
                            batch["raw"], batch["index"], backbone.preprocessing, dev)
                        batch = {"inputs": images, "index": torch.tensor(kept, dtype=torch.long),
                                 "bad": batch["bad"] + decode_bad}
                    skipped.extend((dataset.describe(i), reason) for i, reason in batch["bad"])
                    bad.update(i for i, _ in batch["bad"])
                    if len(batch["index"]):
                        x = move_to(batch["inputs"], dev)
                        with autocast(dev):
                            feats = backbone(x, layer_name)
                        feats_np = feats.float().cpu().numpy()
                        if out is not None:
                            out[batch["index"].numpy()] = feats_np
                        if world > 1:
                            mine.append((batch["index"].numpy(), feats_np))
                        pending_keys.extend(keys[i] for i in batch["index"].tolist())
                        pending.append(feats_np)
                        if len(pending_keys) >= shard_size:
                            flush()
                    advance(len(batch["index"]) + len(batch["bad"]))
        finally:
            try:
                flush()  # keep what was computed, even when interrupted
            finally:
                backbone.train(was_training)
    if world > 1:
        gathered = all_gather_objects((mine, skipped, sorted(bad)))
        skipped, bad = [], set()
        for rank_results, rank_skipped, rank_bad in gathered:
            skipped.extend(rank_skipped)
            bad.update(rank_bad)
            for idx, feats_np in rank_results:
                if out is not None:
                    out[idx] = feats_np
                if rank == 0 and writer is not None:
                    for start_row in range(0, len(idx), shard_size):
                        writer.add([keys[i] for i in idx[start_row:start_row + shard_size]],
                                   feats_np[start_row:start_row + shard_size])
        barrier()
    if total_missing:
        check_bad_fraction(len(skipped), len(dataset), max_bad_fraction, dataset.name or "the dataset", skipped)

    index = np.array([i for i in range(len(dataset)) if i not in bad], dtype=np.int64)
    features = out if (out is None or not bad) else out[index]
    return ExtractedFeatures(
        features=features, index=index, skipped=list(dataset.skipped) + skipped,
        cached=len(keys) - total_missing, computed=total_missing - len(skipped), seconds=time.perf_counter() - start,
        inputs=backbone.describe_inputs(dataset), keys=[keys[i] for i in index],
    )


def extract_layers(
    backbone: Backbone,
    dataset: ImageDataset,
    layers: list[str],
    *,
    cache: FeatureCache | str | bool | None = True,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    progress: bool = True,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> dict[str, ExtractedFeatures]:
    """:func:`extract_features` at several layers for the price of one forward pass per image.

    One pass with a hook on every requested layer fills each layer's cache entries; the per-layer results are then
    read from the cache (a temporary one when ``cache`` is off), so they are exactly what :func:`extract_features`
    returns for each layer alone.

    Returns:
        ``{layer: ExtractedFeatures}`` in the order of ``layers``.
    """
    import tempfile

    names = list(dict.fromkeys(backbone._check_layer(layer) for layer in layers))
    with tempfile.TemporaryDirectory(prefix="transferkit-layers-") as tmp:
        if cache is True:
            cache = FeatureCache()
        elif isinstance(cache, str):
            cache = FeatureCache(cache)
        elif not isinstance(cache, FeatureCache):
            cache = FeatureCache(tmp)
        several = len(names) > 1
        if several:  # one pass fills every layer's cache (PIL-decoded); each layer below then reads its own
            _fill_layers(backbone, dataset, names, cache, batch_size, resolve_device(device), progress)
        return {name: extract_features(backbone, dataset, layer=name, cache=cache, batch_size=batch_size,
                                       device=device, progress=progress, max_bad_fraction=max_bad_fraction,
                                       shard=False, gpu_decode=False if several else None)
                for name in names}


def _fill_layers(backbone: Backbone, dataset: ImageDataset, names: list[str], cache: FeatureCache, batch_size: int,
                 dev: torch.device, progress: bool) -> None:
    stores = {name: cache.store(cache_key(backbone, name, dev)) for name in names}
    keys = [dataset.content_key(i) for i in range(len(dataset))]
    missing = np.array([i for i, k in enumerate(keys) if any(k not in s for s in stores.values())], dtype=np.int64)
    if not len(missing):
        return
    was_training = backbone.training
    backbone.eval().to(dev).to(memory_format=torch.channels_last)
    loader = backbone_batches(backbone, dataset, indices=missing, batch_size=batch_size, pin_memory=dev.type == "cuda")
    pending_keys: list[str] = []
    pending: dict[str, list[np.ndarray]] = {name: [] for name in names}

    def flush() -> None:  # every layer's shard holds the same images; written together, kept when interrupted
        for name in names:
            if pending[name]:
                stores[name].add(list(pending_keys), np.concatenate(pending[name]))
            pending[name].clear()
        pending_keys.clear()

    try:
        with progress_bar(len(missing), f"features {backbone.spec} @ {len(names)} layers", progress) as advance, \
                torch.inference_mode():
            for batch in loader:
                if len(batch["index"]):
                    x = move_to(batch["inputs"], dev)
                    with autocast(dev):
                        feats = backbone.forward_layers(x, names)
                    pending_keys.extend(keys[i] for i in batch["index"].tolist())
                    for name, f in feats.items():
                        pending[name].append(f.float().cpu().numpy())
                    if len(pending_keys) >= 2048:
                        flush()
                advance(len(batch["index"]) + len(batch["bad"]))
    finally:
        try:
            flush()
        finally:
            backbone.train(was_training)
