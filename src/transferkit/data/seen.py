"""Which items a model was trained on: 64-bit content digests kept in bundles and checked against new data.

A source model you trained yourself (``bundle:<dir>``) may have been trained on some of the very images you now rank
it on, race it on or validate it on. Its score, race accuracy and transfer verdict are then optimistic: on our
ranking benchmark a source trained on 600 images per class of the target's own classes came second in the race and
fine-tuned to 4 points less than its out-of-fold estimate (bench/README.md, ``race.py``). So a bundle keeps the first
64 bits of every training item's content hash (the feature cache's key: file bytes, array bytes, text), 8 bytes per
item, and ``rank``, ``fit``, ``evaluate`` and ``curve`` count how many of their items those weights have seen.

No item can be rebuilt from a digest, but whoever holds the bundle can test whether a given image was among its
training items; ``fit``/``pretrain --no-training-items`` (``save_bundle(..., training_items=False)``) leave
them out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

#: what a digest is, recorded next to the digests in a bundle
DIGEST = "first 64 bits of the sha256 content key (file bytes, array bytes or text), as int64"


def digests(keys: Sequence[str]) -> np.ndarray:
    """One int64 digest per content key (``content_key`` of any dataset), in order."""
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        if len(key) < 16 or not all(c in "0123456789abcdef" for c in key[:16]):  # e.g. "unreadable:<path>"
            key = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        out[i] = int.from_bytes(bytes.fromhex(key[:16]), "big", signed=True)
    return out


def item_digests(data: Any) -> np.ndarray:
    """One int64 digest per item of ``data`` (any dataset with ``content_key``), in order."""
    return digests([data.content_key(i) for i in range(len(data))])


def training_digests(data: Any = None, *, keys: Sequence[str] | None = None) -> np.ndarray:
    """The sorted, unique digests of ``data`` (or of content ``keys`` already computed)."""
    return np.unique(digests(keys) if keys is not None else item_digests(data))


def first_copies(keys: Sequence[str], labels: Any) -> np.ndarray:
    """Positions of the first item of each (content key, label) pair, in order.

    A file copied under the same label is one observation seen twice: scoring it twice inflates LogME when the
    features outnumber the images, and splitting it into folds puts one copy on each side.
    """
    first: dict[tuple[str, Any], int] = {}
    for i, (key, label) in enumerate(zip(keys, np.asarray(labels).tolist(), strict=True)):
        first.setdefault((key, label), i)
    return np.fromiter(first.values(), dtype=np.int64, count=len(first))


def count_seen(seen: np.ndarray | None, data: Any = None, *, keys: Sequence[str] | None = None) -> int | None:
    """How many items of ``data`` (or content ``keys`` already computed) are among ``seen``; None when ``seen`` is
    unknown, without reading any item."""
    if seen is None:
        return None
    return int(np.isin(digests(keys) if keys is not None else item_digests(data), seen).sum())


def spec_items(spec: str) -> np.ndarray | None:
    """The digests a ``bundle:<dir>`` backbone spec's weights were trained on, read without building the model;
    None for other specs and for bundles that do not keep them."""
    if not spec.startswith("bundle:"):
        return None
    from ..bundle_format import read_meta, read_training_items

    directory = spec.removeprefix("bundle:")
    return read_training_items(directory, read_meta(directory), "backbone")


def seen_warnings(who: str, seen: int | None, total: int, what: str, consequence: str, fix: str) -> list[str]:
    """``["<who> was trained on <seen> of the <total> <what>: <consequence>; <fix>."]``, or ``[]`` when nothing
    was seen."""
    return [f"{who} was trained on {seen} of the {total} {what}: {consequence}; {fix}."] if seen else []
