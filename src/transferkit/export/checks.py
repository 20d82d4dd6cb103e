"""How an exported file is compared with its bundle: the same items through both, probabilities side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._errors import DataError
from ..heads import ModuleHead

#: random inputs checked when no real ones are given (a batch, then the first of them alone: the batch is dynamic)
RANDOM_ITEMS = 8


def compare(reference: tuple[np.ndarray, np.ndarray, Any], exported: tuple[np.ndarray, np.ndarray, Any],
            check: Any, classes: list[str]) -> dict[str, Any]:
    """Probabilities of the bundle (``reference``) and of the exported file on the ``check`` items, each as
    ``predict_proba_details`` returns them, compared on the items both could read.

    Returns:
        ``{"items", "max_abs_diff", "agreement"}`` (top-1 agreement), and when ``check`` is labelled with the
        model's ``classes`` (names), ``accuracy_bundle`` and ``accuracy_onnx``.
    """
    (ref, ref_index, _), (got, got_index, _) = reference, exported
    common = np.intersect1d(ref_index, got_index)
    if not len(common):
        raise DataError(f"None of the {len(check)} check items could be read; pass readable inputs as `calibration`.")
    ref = ref[np.searchsorted(ref_index, common)] if not np.array_equal(ref_index, common) else ref
    got = got[np.searchsorted(got_index, common)] if not np.array_equal(got_index, common) else got
    result: dict[str, Any] = {"items": int(len(common)), "max_abs_diff": float(np.abs(ref - got).max()),
                              "agreement": round(float(np.mean(ref.argmax(1) == got.argmax(1))), 6)}
    if check.labels is not None:
        truth = np.asarray(check.classes)[check.labels[common]]
        if set(truth) <= set(classes):
            names = np.asarray(classes)
            result["accuracy_bundle"] = round(float(np.mean(names[ref.argmax(1)] == truth)), 6)
            result["accuracy_onnx"] = round(float(np.mean(names[got.argmax(1)] == truth)), 6)
    return result


def strategy_proba(model: Any, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """What the fitted strategy ``model`` predicts for graph ``inputs`` (already preprocessed): its backbone's
    features at its layer, then its own head, scikit-learn's included."""
    with torch.inference_mode():
        x: Any = inputs["pixels"] if "pixels" in inputs else dict(inputs)
        features = model.backbone_(x, model.layer_).float().numpy()
    if hasattr(model, "_head_proba"):  # feature extraction: the head as the bundle runs it
        return model._head_proba(features)
    return ModuleHead(model.head_module_, model.head_config_).predict_proba(features)


def random_inputs(model: Any, example: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """:data:`RANDOM_ITEMS` random graph inputs: normal pixels, or token ids of the vocabulary with texts of
    different lengths (padding masked)."""
    g = torch.Generator().manual_seed(seed)
    if "pixels" in example:
        return {"pixels": torch.randn(RANDOM_ITEMS, *example["pixels"].shape[1:], generator=g)}
    vocab = len(model.backbone_.encoder.tokenizer)
    length = max(4, min(16, int(model.backbone_.preprocessing.max_length or 16)))
    lengths = torch.randint(2, length + 1, (RANDOM_ITEMS,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).to(torch.int64)
    inputs = {"input_ids": torch.randint(0, vocab, (RANDOM_ITEMS, length), generator=g) * mask,
              "attention_mask": mask}
    if "token_type_ids" in example:
        inputs["token_type_ids"] = torch.zeros_like(mask)
    return inputs


def random_reference(model: Any, runner: Any, example: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
    """The exported file (``runner``) against the strategy on random inputs, as a batch and the first one alone."""
    inputs = random_inputs(model, example, seed)
    ref = strategy_proba(model, inputs)
    got = runner.run({k: v.numpy() for k, v in inputs.items()})
    alone = runner.run({k: v[:1].numpy() for k, v in inputs.items()})
    diff = max(float(np.abs(ref - got).max()), float(np.abs(ref[:1] - alone).max()))
    return {"items": int(len(ref)), "max_abs_diff": diff,
            "agreement": round(float(np.mean(ref.argmax(1) == got.argmax(1))), 6)}
