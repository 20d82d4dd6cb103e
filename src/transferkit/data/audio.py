"""``AudioDataset``: labeled sound clips from WAV/FLAC/OGG files or arrays, with content keys for caching.

The same surface the strategies use from :class:`~transferkit.data.ImageDataset` (``items``, ``labels``,
``classes``, ``name``, ``skipped``, ``content_key``, ``describe``, ``subset``, ``class_counts``, ``summary``).
A clip is read with ``soundfile`` at its own sample rate and downmixed to mono; resampling to the backbone's
rate happens as the loader reads it (:func:`resample`, :func:`transferkit.data.loader.audio_loader`), so one
dataset serves backbones of different rates and the feature cache stays keyed on the file's bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BackboneError, DataError
from .._extras import require
from ._dataset import count_per_class, encode_labels
from ._images import BadImage

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")


class BadAudio(BadImage):
    """One clip could not be used; ``reason`` says why (a :class:`BadImage`, so every loader reports it alike)."""


def _soundfile() -> Any:
    return require("soundfile", "audio", "Reading audio", error=DataError)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` (T,) at ``rate`` Hz resampled to ``target`` Hz with soxr (band-limited, high quality)."""
    if rate == target:
        return samples
    soxr = require("soxr", "audio", "Resampling audio for a backbone", error=BackboneError)
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """``(mono float32 samples (T,), sample rate)`` of an audio file; channels are averaged.

    Raises:
        BadAudio: missing, zero-byte, non-audio, corrupt or empty files.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadAudio("file not found") from None
    except OSError as e:
        raise BadAudio(f"cannot read file ({e.strerror})") from None
    if size == 0:
        raise BadAudio("zero-byte file")
    sf = _soundfile()
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        message = str(e).splitlines()[0][:80] if str(e) else type(e).__name__
        if "unknown format" in message.lower() or "format not recognised" in message.lower():
            raise BadAudio("not an audio file soundfile can read") from None
        raise BadAudio(f"corrupt or unreadable audio ({message})") from None
    return _mono(samples, rate)


def _mono(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    a = np.asarray(samples)
    if a.ndim == 2:  # (T, channels) as soundfile reads; (channels, T) as torchaudio and librosa give it
        a = a.mean(axis=0 if a.shape[0] <= 8 < a.shape[1] else 1)
    if a.ndim != 1:
        raise BadAudio(f"array of shape {np.asarray(samples).shape} is not a waveform; expected (T,) or (T, channels)")
    if a.size == 0:
        raise BadAudio("no samples")
    if rate <= 0:
        raise BadAudio(f"invalid sample rate {rate}")
    return np.nan_to_num(a.astype(np.float32, copy=False)), int(rate)


@dataclass
class AudioDataset:
    """Clips (file paths, or 1-D arrays at ``sample_rate``) with integer labels into ``classes``.

    Attributes:
        items: file paths, or waveforms ``(T,)`` / ``(T, channels)`` / ``(channels, T)`` (up to 8 channels) as arrays.
        labels: ``(N,)`` integer class indices, or None for unlabeled inputs.
        classes: class names; ``labels`` index into it.
        name: where the data came from, for summaries.
        skipped: ``(input, reason)`` for inputs already known to be unusable.
        sample_rate: the rate of array items (ignored for files, which carry their own).
    """

    items: Sequence[Any]
    labels: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    name: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sample_rate: int | None = None

    modality = "audio"

    def __post_init__(self) -> None:
        self.items = list(self.items)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.items):
                raise DataError(f"Got {len(self.items)} clips but {len(self.labels)} labels; they must match.")
        if self.is_array and not self.sample_rate:
            raise DataError("Waveform arrays need their sample_rate (e.g. from_waveforms(waves, 16000, labels)).")

    @property
    def is_array(self) -> bool:
        return bool(self.items) and isinstance(self.items[0], np.ndarray)

    def __len__(self) -> int:
        return len(self.items)

    def describe(self, i: int) -> str:
        return f"{self.name or 'waveforms'}[{i}]" if self.is_array else str(self.items[i])

    def load(self, i: int) -> tuple[np.ndarray, int]:
        """``(mono float32 samples, sample rate)`` of the i-th clip. Raises :class:`BadAudio` when unusable."""
        item = self.items[i]
        if isinstance(item, np.ndarray):
            return _mono(item, int(self.sample_rate or 0))
        return read_audio(item)

    def content_key(self, i: int) -> str:
        """sha256 of the file bytes, or of the array bytes and rate: what the feature cache is keyed on."""
        h = hashlib.sha256(b"audio\0")
        item = self.items[i]
        if isinstance(item, np.ndarray):
            a = np.ascontiguousarray(item)
            h.update(f"{a.dtype.str}{a.shape}@{self.sample_rate}".encode())
            h.update(a.tobytes())
            return h.hexdigest()
        try:
            with open(item, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
        except OSError:
            return "unreadable:" + str(item)
        return h.hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray) -> AudioDataset:
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64)]
        labels = None if self.labels is None else self.labels[np.asarray(idx, dtype=np.int64)]
        return AudioDataset([self.items[i] for i in idx], labels, list(self.classes), self.name, [], self.sample_rate)

    def class_counts(self) -> dict[str, int]:
        return count_per_class(self.labels, self.classes)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "clips": len(self), "classes": len(self.classes),
                "per_class": self.class_counts(), "skipped": [list(s) for s in self.skipped]}


def _audio_files(folder: Path) -> list[Path]:
    from .sources import visible_files  # sources imports this module

    return visible_files(folder)


def is_audio_folder(root: str | os.PathLike[str]) -> bool:
    """Whether a class-per-folder tree holds sound: at least half of its files have an audio suffix."""
    root = Path(root)
    if not root.is_dir():
        return False
    files = [p for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") for p in _audio_files(d)]
    audio = sum(p.suffix.lower() in AUDIO_SUFFIXES for p in files)
    return audio > 0 and 2 * audio >= len(files)


def from_audio_folder(root: str | os.PathLike[str]) -> AudioDataset:
    """One subfolder per class (sorted names); every non-hidden file inside (recursively) is a clip of it.

    Unreadable files stay in the dataset and are skipped, with their reason, when loaded (as images are).

    Example:
        >>> ds = from_audio_folder("birds/")   # birds/crow/1.wav, birds/owl/2.flac, ...
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Audio folder {str(root)!r} does not exist; pass a folder of <class>/<clip> files.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    items: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        for path in _audio_files(d):
            items.append(path)
            labels.append(label)
    if not items:
        raise DataError(f"Audio folder {str(root)!r} has no class subfolders with files; arrange clips as "
                        f"{root}/<class>/<clip>.wav.")
    return AudioDataset(items, np.array(labels), [d.name for d in class_dirs], name=str(root))


def from_audio_files(paths: Sequence[str | os.PathLike[str]], name: str = "inputs") -> AudioDataset:
    """Unlabeled clips from files (for prediction)."""
    return AudioDataset([Path(p) for p in paths], None, [], name)


def from_waveforms(waveforms: Sequence[np.ndarray], sample_rate: int, labels: Sequence[Any] | np.ndarray | None = None,
                   classes: Sequence[str] | None = None, name: str = "waveforms") -> AudioDataset:
    """In-memory clips ``(T,)`` or ``(T, channels)`` at one ``sample_rate`` with labels (names or integers).

    Example:
        >>> ds = from_waveforms([np.sin(np.arange(16000) * 0.1)], 16000, ["tone"])
    """
    waves = [np.asarray(w) for w in waveforms]
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise DataError(f"sample_rate must be a positive integer (Hz). Got {sample_rate!r} instead.")
    if labels is None:
        return AudioDataset(waves, None, list(classes or []), name, sample_rate=int(sample_rate))
    values, names = encode_labels(labels, classes, len(waves), "clips")
    return AudioDataset(waves, values, names, name, sample_rate=int(sample_rate))
