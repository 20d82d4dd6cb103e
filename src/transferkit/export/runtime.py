"""Running an exported ONNX file with onnxruntime, as ``predict`` and ``evaluate`` run a bundle.

The file's metadata (:mod:`.metadata`) says how inputs are prepared, and transferkit's own data pipeline prepares
them: images decoded, converted and preprocessed exactly as for the bundle (:func:`transferkit.data.build_transform`
with the recorded spec), texts tokenised by the tokenizer saved beside the file. The graph itself does the rest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import BundleError, DataError
from .._extras import require
from .._progress import progress_bar
from .._utils import sha256_file
from ..backbones import Preprocessing
from ..data.loader import image_loader, text_loader
from ..data.transforms import build_transform
from ..strategies._base import as_dataset
from .metadata import read_facts

ONNX_SUFFIX = ".onnx"


def tokenizer_folder(path: Path) -> Path:
    """Where a text model's tokenizer is kept beside its ONNX file: ``model.onnx`` → ``model.tokenizer/``."""
    return path.with_suffix(".tokenizer")


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for ``device`` (``auto``: CUDA when this onnxruntime has it)."""
    ort = require("onnxruntime", "onnx", "Running an ONNX file")
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise BundleError("`device='cuda'` needs onnxruntime with CUDA (pip install onnxruntime-gpu); this one has "
                          f"{', '.join(available)}. Use `device='cpu'`.")
    cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in available
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]


class OnnxClassifier:
    """An ONNX file written by :func:`~transferkit.export.export_onnx`, used like a loaded bundle.

    Args:
        path: the ``.onnx`` file.
        device: ``auto``, ``cpu`` or ``cuda`` (onnxruntime's CUDA provider).
        batch_size: inputs per run of the graph.
        num_workers: DataLoader worker processes for decoding.
        progress: show a progress bar.
        threads: onnxruntime intra-op threads (default: onnxruntime's, one per core).
        tokenizer_dir: a text model's tokenizer (default: the folder beside the file, ``<name>.tokenizer/``).

    Attributes:
        classes_, modality_: as a fitted strategy's; ``metadata``: the file's facts (:mod:`.metadata`).

    Example:
        >>> clf = OnnxClassifier("pets.onnx")
        >>> clf.predict(["photo.jpg"])
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32,
                 num_workers: int = 0, progress: bool = True, threads: int | None = None,
                 tokenizer_dir: str | os.PathLike[str] | None = None, **_: Any):
        ort = require("onnxruntime", "onnx", "Running an ONNX file")
        self.path = Path(path)
        if not self.path.is_file():
            raise BundleError(f"ONNX file {str(self.path)!r} does not exist; export one with `transferkit export "
                              "BUNDLE --format onnx --out FILE`.")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers_for(device))
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BundleError(f"{str(self.path)!r} is not a readable ONNX file ({first[:160]}); export it "
                              "again.") from None
        self.metadata = read_facts(dict(self.session.get_modelmeta().custom_metadata_map), str(self.path))
        self.classes_ = np.asarray(self.metadata["classes"])
        self.modality_ = str(self.metadata["modality"])
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.encoder: Any = self._encoder(Path(tokenizer_dir) if tokenizer_dir else None) \
            if self.modality_ == "text" else None

    def _encoder(self, folder: Path | None) -> Any:
        """The tokenizer saved beside the file, checked against the checksums its metadata records."""
        from ..backbones.hf import HFEncoder

        record = self.metadata.get("tokenizer") or {}
        folder = folder or self.path.parent / record.get("dir", tokenizer_folder(self.path).name)
        for name, digest in record.get("files", {}).items():
            if not (folder / name).is_file() or sha256_file(folder / name) != digest:
                raise BundleError(f"The tokenizer of {str(self.path)!r} is missing or does not match the file "
                                  f"({str(folder / name)!r}); keep {folder.name}/ beside it, or export again.")
        transformers = require("transformers", "text", f"The text model {str(self.path)!r}")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
        return HFEncoder(tokenizer, int(self.metadata["preprocessing"].get("max_length") or 512))

    def _batches(self, ds: Any) -> Any:
        if self.modality_ == "text":
            return text_loader(ds, self.encoder, batch_size=self.batch_size, num_workers=self.num_workers)
        transform = build_transform(Preprocessing.from_dict(self.metadata["preprocessing"]))
        return image_loader(ds, transform, batch_size=self.batch_size, num_workers=self.num_workers)

    def run(self, inputs: dict[str, Any]) -> np.ndarray:
        """Probabilities ``(B, n_classes)`` of one batch of graph inputs (tensors or arrays by input name)."""
        feed = {name: np.asarray(inputs[name]) for name in self.input_names}
        return self.session.run(None, feed)[0]

    def predict_proba_details(self, X: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """``(proba (n_good, n_classes), index of usable inputs, skipped inputs with reasons)``, as a strategy's."""
        ds = as_dataset(X, modality=self.modality_)
        outs: list[np.ndarray] = []
        index: list[int] = []
        skipped: list[tuple[str, str]] = []
        with progress_bar(len(ds), "predict", self.progress and len(ds) > 256) as advance:
            for batch in self._batches(ds):
                skipped.extend((ds.describe(i), reason) for i, reason in batch["bad"])
                if len(batch["index"]):
                    inputs = batch["inputs"] if isinstance(batch["inputs"], dict) else {"pixels": batch["inputs"]}
                    outs.append(self.run({k: v.numpy() for k, v in inputs.items()}))
                    index.extend(batch["index"].tolist())
                advance(len(batch["index"]) + len(batch["bad"]))
        proba = np.concatenate(outs) if outs else np.zeros((0, len(self.classes_)), dtype=np.float32)
        return proba, np.array(index, dtype=np.int64), skipped

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``; raises :class:`DataError` if an input is unreadable."""
        proba, _, skipped = self.predict_proba_details(X)
        if skipped:
            raise DataError(f"Cannot predict {skipped[0][0]}: {skipped[0][1]}.")
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """Class names ``(N,)``."""
        return self.classes_[self.predict_proba(X).argmax(1)]


def load_model(path: str | os.PathLike[str], **overrides: Any) -> Any:
    """A bundle directory as :func:`~transferkit.load_bundle` loads it, or an exported ``.onnx`` file as an
    :class:`OnnxClassifier`; ``overrides``: ``device``, ``batch_size``, ``num_workers``, ``progress``."""
    if Path(path).suffix.lower() == ONNX_SUFFIX and not Path(path).is_dir():
        return OnnxClassifier(path, **overrides)
    from ..bundle import load_bundle

    return load_bundle(path, **overrides)
