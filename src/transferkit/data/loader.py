"""DataLoaders over images, texts and clips that report unusable inputs instead of crashing the loader.

:func:`backbone_batches` gives the batches a backbone's ``forward`` accepts, by its ``modality``: images through
the weights' preprocessing (or an augmentation preset), texts through the backbone's tokenising ``encoder``, clips
resampled to the weights' rate and padded. Every batch is ``{"inputs", "index", "bad"}``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .._errors import BackboneError
from ..backbones import Backbone
from ..backbones._audio import AudioBackbone
from ..backbones._text import TextBackbone, TextEncoder
from ._dataset import BadImage, ImageDataset
from .audio import BadAudio, resample
from .augment import train_transform
from .transforms import build_transform

T = TypeVar("T")
_DONE = object()


def prefetched(batches: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``batches`` in order, the next ``depth`` prepared by a background thread while the caller uses the current one.

    Without DataLoader workers, decoding and the forward pass take turns; PIL's decoding and resizing and torch's
    tensor ops release the GIL, so one thread lets them overlap at no process cost. An exception in the thread is
    raised here; leaving the loop early stops the thread.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    thread = threading.Thread(target=produce, name="transferkit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class _Images(Dataset):
    def __init__(self, ds: ImageDataset, indices: np.ndarray, transform: Callable[[Image.Image], torch.Tensor]):
        self.ds, self.indices, self.transform = ds, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor | None, int, str]:
        i = int(self.indices[k])
        try:
            return self.transform(self.ds.load(i)), i, ""
        except BadImage as e:
            return None, i, e.reason


def _collate(batch: list[tuple[torch.Tensor | None, int, str]]) -> dict[str, Any]:
    good = [(x, i) for x, i, _ in batch if x is not None]
    bad = [(i, reason) for x, i, reason in batch if x is None]
    images = torch.stack([x for x, _ in good]) if good else torch.empty(0)
    # "inputs" is what every backbone's forward takes (text loaders yield a dict there); "images" stays as an alias
    return {"images": images, "inputs": images, "index": torch.tensor([i for _, i in good], dtype=torch.long),
            "bad": bad}


def image_loader(
    ds: ImageDataset,
    transform: Callable[[Image.Image], torch.Tensor],
    *,
    indices: np.ndarray | None = None,
    batch_size: int = 64,
    shuffle: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """Batches ``{"inputs": (B, C, H, W), "index": (B,), "bad": [(i, reason), ...]}`` in dataset order."""
    idx = np.arange(len(ds)) if indices is None else np.asarray(indices)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        _Images(ds, idx, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=_collate,
        generator=generator,
        drop_last=drop_last,
        persistent_workers=False,
    )


class _Texts(Dataset):
    def __init__(self, ds: Any, indices: np.ndarray):
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[str, int]:
        i = int(self.indices[k])
        return self.ds.load(i), i


class _TextCollate:
    """Tokenise a batch of texts (a class, not a closure, so it pickles into worker processes)."""

    def __init__(self, encoder: TextEncoder):
        self.encoder = encoder

    def __call__(self, batch: list[tuple[str, int]]) -> dict[str, Any]:
        return {"inputs": self.encoder([t for t, _ in batch]),
                "index": torch.tensor([i for _, i in batch], dtype=torch.long), "bad": []}


class _Clips(Dataset):
    def __init__(self, ds: Any, indices: np.ndarray, sample_rate: int, max_samples: int, min_samples: int = 1):
        self.ds, self.indices, self.sample_rate, self.max_samples = ds, indices, sample_rate, max_samples
        self.min_samples = max(1, min_samples)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[np.ndarray | None, int, str]:
        i = int(self.indices[k])
        try:
            samples, rate = self.ds.load(i)
            # crop before resampling (cheaper on long files), with a little margin for the filter's edge
            keep = int(np.ceil(self.max_samples * rate / self.sample_rate)) + 1
            clip = resample(samples[:keep], rate, self.sample_rate)[:self.max_samples]
            if len(clip) < self.min_samples:
                raise BadAudio(f"too short: {len(clip)} samples at {self.sample_rate} Hz, the model needs at least "
                               f"{self.min_samples} ({1000 * self.min_samples / self.sample_rate:.0f} ms)")
            return clip, i, ""
        except BadAudio as e:
            return None, i, e.reason


class AudioCollate:
    """Pad a batch of resampled clips and run the model's own input preparation (picklable for workers).

    Args:
        prepare: ``(list of (T_i,) float32 arrays) -> {"input_values": (B, T), "attention_mask": (B, T)}``;
            None pads with zeros and marks the real samples in the mask.
    """

    def __init__(self, prepare: Callable[[list[np.ndarray]], dict[str, torch.Tensor]] | None = None):
        self.prepare = prepare

    def __call__(self, batch: list[tuple[np.ndarray | None, int, str]]) -> dict[str, Any]:
        good = [(x, i) for x, i, _ in batch if x is not None]
        bad = [(i, reason) for x, i, reason in batch if x is None]
        clips = [x for x, _ in good]
        inputs = (self.prepare or pad_clips)(clips) if clips else {}
        return {"inputs": inputs, "index": torch.tensor([i for _, i in good], dtype=torch.long), "bad": bad}


def pad_clips(clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Zero-pad clips to the longest: ``{"input_values": (B, T) float32, "attention_mask": (B, T) long}``."""
    length = max(len(c) for c in clips)
    values = torch.zeros(len(clips), length)
    mask = torch.zeros(len(clips), length, dtype=torch.long)
    for b, c in enumerate(clips):
        values[b, :len(c)] = torch.from_numpy(np.ascontiguousarray(c))
        mask[b, :len(c)] = 1
    return {"input_values": values, "attention_mask": mask}


def text_loader(ds: Any, encoder: TextEncoder, *, indices: np.ndarray | None = None, batch_size: int = 64,
                shuffle: bool = False, num_workers: int = 0, pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """Batches ``{"inputs": {name: (B, T) tensor}, "index": (B,), "bad": []}``, tokenised by ``encoder``."""
    idx = np.arange(len(ds)) if indices is None else np.asarray(indices)
    return DataLoader(_Texts(ds, idx), batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      pin_memory=pin_memory, collate_fn=_TextCollate(encoder),
                      generator=torch.Generator().manual_seed(seed))


def audio_loader(ds: Any, preprocessing: Any, *, prepare: Callable[[list[np.ndarray]], dict[str, torch.Tensor]] | None = None,
                 min_samples: int = 1, indices: np.ndarray | None = None, batch_size: int = 64, shuffle: bool = False,
                 num_workers: int = 0, pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """Batches ``{"inputs": {"input_values": (B, T), "attention_mask": (B, T)}, "index": (B,), "bad": [...]}``
    at ``preprocessing.sample_rate`` (an ``AudioPreprocessing``), cropped to its ``max_seconds``."""
    idx = np.arange(len(ds)) if indices is None else np.asarray(indices)
    pre = preprocessing
    return DataLoader(_Clips(ds, idx, pre.sample_rate, pre.max_samples, min_samples), batch_size=batch_size,
                      shuffle=shuffle, num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=AudioCollate(prepare), generator=torch.Generator().manual_seed(seed))


def backbone_batches(
    backbone: Backbone,
    dataset: Any,
    *,
    indices: Any = None,
    batch_size: int = 64,
    shuffle: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
    augment: str = "none",
) -> DataLoader:
    """A DataLoader of ``{"inputs", "index", "bad"}`` batches ``backbone``'s ``forward`` accepts.

    Images: decoded, converted and normalised by the weights' preprocessing (``augment`` picks a training
    preset of :mod:`transferkit.data.augment`); ``inputs`` is ``(B, C, H, W)``. Texts and clips ignore
    ``augment`` (the presets are image transforms).

    Args:
        backbone: what the batches are for; its ``modality`` picks the loader.
        dataset: an ``ImageDataset``, ``TextDataset`` or ``AudioDataset`` of that modality.
        indices: the items to read, in this order (default: all).
        batch_size, shuffle, num_workers, pin_memory, seed: as ``torch.utils.data.DataLoader``; ``seed`` seeds
            the shuffling.
        augment: ``none``, ``light``, ``medium`` or ``strong``.

    Returns:
        The DataLoader; ``bad`` lists ``(index, reason)`` of the items that could not be read.

    Example:
        >>> batch = next(iter(backbone_batches(backbone, dataset, batch_size=8)))
        >>> features = backbone(batch["inputs"])
    """
    options = {"indices": indices, "batch_size": batch_size, "shuffle": shuffle, "num_workers": num_workers,
               "pin_memory": pin_memory, "seed": seed}
    if backbone.modality == "text":
        return text_loader(dataset, cast(TextBackbone, backbone).encoder, **options)
    if backbone.modality == "audio":
        audio = cast(AudioBackbone, backbone)
        return audio_loader(dataset, audio.preprocessing, prepare=audio.prepare, min_samples=audio.min_samples,
                            **options)
    if backbone.modality != "image":
        raise BackboneError(f"{backbone.spec} reads {backbone.modality!r}; batches exist for image, text and audio "
                            "backbones.")
    transform = build_transform(backbone.preprocessing) if augment == "none" else \
        train_transform(backbone.preprocessing, augment)
    return image_loader(dataset, transform, **options)
