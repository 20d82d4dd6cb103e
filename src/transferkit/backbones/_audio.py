"""The audio side of the ``Backbone`` contract: waveforms in, pooled features out.

An audio backbone's ``batches`` reads clips (mono, at their own rate), resamples them with ``soxr`` to the
weights' rate, crops them to ``max_seconds`` and pads the batch, in the DataLoader's collate function; its trunk
maps ``{"input_values": (B, T), "attention_mask": (B, T)}`` to features pooled over the real (unpadded) frames.
Strategies, the feature cache, the training loop and bundles see the same contract as for images and texts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._errors import BackboneError
from ..data.audio import BadAudio
from ._base import PooledBackbone

DEFAULT_MAX_SECONDS = 10.0


@dataclass(frozen=True)
class AudioPreprocessing:
    """How clips become model inputs for these weights (the audio counterpart of ``Preprocessing``).

    Attributes:
        sample_rate: Hz the weights expect; every clip is resampled to it (soxr, high quality).
        max_seconds: longer clips are cropped to their first ``max_seconds``; shorter ones are padded and the
            padding is masked out of the pooling.
        normalisation: what the model applies to the samples (``zero-mean-unit-variance`` per clip,
            ``per-frame-z-score`` for CREPE, ``none``).
        frame_length, hop_length: samples per analysis frame and between frames, for frame-based models (0 else).
        feature_extractor: the class that normalises inputs (transformers feature extractor), when there is one.
    """

    sample_rate: int = 16000
    max_seconds: float = DEFAULT_MAX_SECONDS
    normalisation: str = "zero-mean-unit-variance"
    frame_length: int = 0
    hop_length: int = 0
    feature_extractor: str = ""
    modality: str = "audio"

    def with_image_size(self, size: int | None) -> AudioPreprocessing:
        if size is not None:
            raise BackboneError(f"--image-size applies to image backbones; this one reads audio. Got {size}.")
        return self

    @property
    def max_samples(self) -> int:
        return max(1, int(round(self.max_seconds * self.sample_rate)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AudioPreprocessing:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` (T,) at ``rate`` Hz resampled to ``target`` Hz with soxr (band-limited, high quality)."""
    if rate == target:
        return samples
    try:
        import soxr
    except ImportError:
        raise BackboneError("Audio backbones resample with soxr; install it: pip install soxr soundfile") from None
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


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


class AudioBackbone(PooledBackbone):
    """A :class:`Backbone` over sound clips.

    Args:
        trunk: maps ``{"input_values", "attention_mask"}`` to pooled features ``(B, num_features)`` and has
            ``pooled_layers(inputs, names) -> {name: (B, D)}`` (one forward pass for several layers).
        prepare: model-specific input preparation of the resampled clips (see :class:`AudioCollate`).
        export: writes what rebuilding the architecture needs into a directory and returns the source prefix
            that reads it back; None when ``arch_spec`` alone rebuilds it.
        **kwargs: as :class:`Backbone`; ``preprocessing`` is an :class:`AudioPreprocessing`.
    """

    modality = "audio"

    def __init__(self, trunk: nn.Module, *, prepare: Callable[[list[np.ndarray]], dict[str, torch.Tensor]] | None = None,
                 export: Callable[[Path], str] | None = None, min_samples: int = 1, **kwargs: Any):
        super().__init__(trunk, export=export, **kwargs)
        self.prepare = prepare
        self.min_samples = min_samples  # shorter clips (at the model's rate) give the model no frame at all

    def batches(self, dataset: Any, *, indices: Any = None, batch_size: int = 64, shuffle: bool = False,
                num_workers: int = 0, pin_memory: bool = False, seed: int = 0, augment: str = "none") -> DataLoader:
        """Batches ``{"inputs": {"input_values": (B, T), "attention_mask": (B, T)}, "index": (B,), "bad": [...]}``
        at the weights' sample rate; ``augment`` is ignored (the presets are image transforms)."""
        idx = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        pre = self.preprocessing
        return DataLoader(_Clips(dataset, idx, pre.sample_rate, pre.max_samples, self.min_samples), batch_size=batch_size,
                          shuffle=shuffle, num_workers=num_workers, pin_memory=pin_memory,
                          collate_fn=AudioCollate(self.prepare), generator=torch.Generator().manual_seed(seed))

    def describe_inputs(self, dataset: Any) -> dict[str, Any]:
        return {}


def masked_mean(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average ``(B, F, D)`` frame vectors over the real frames of ``mask`` ``(B, F)`` → ``(B, D)``."""
    m = mask.to(frames.dtype).unsqueeze(-1)
    return (frames * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
