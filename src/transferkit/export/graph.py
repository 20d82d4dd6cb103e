"""The network a bundle exports: its inputs → class probabilities, as one torch module to trace.

A fitted strategy predicts with its backbone (features at its layer), a head and a softmax. Everything that has an
exact torch form goes into the one graph, so ONNX maps preprocessed pixels (or token ids) straight to
probabilities: the torch heads (fine-tuning's linear head, the ``linear``/``mlp`` heads, zero-shot's cosine head), a
logistic-regression head (already kept as ``Standardize → Linear``, its StandardScaler folded in) and a linear SVM
with temperature-scaled margins (the scaler, the SVM and the temperature folded into one ``Linear``). Random forests,
gradient boosting and other scikit-learn estimators have no such form and are refused, naming the heads that export:
converting trees would need skl2onnx and a second graph beside the network, which we chose not to depend on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import BundleError
from ..backbones import DEFAULT_LAYER
from ..backbones._base import global_pool
from ..heads.modules import Standardize

#: the heads whose bundles export (the ``head`` parameter's names)
EXPORTABLE_HEADS = ("logistic", "svm", "linear", "mlp")
IMAGE_INPUT = "pixels"
OUTPUT = "probabilities"


class ProbabilityHead(nn.Module):
    """``softmax(head(features))``, its columns (the classes the head saw) placed among all ``n_classes``."""

    columns: torch.Tensor | None

    def __init__(self, head: nn.Module, head_classes: np.ndarray, n_classes: int):
        super().__init__()
        self.head = head
        if len(head_classes) == n_classes and np.array_equal(head_classes, np.arange(n_classes)):
            self.columns = None
        else:  # a one-hot (n_head, n_classes) matrix: probabilities of classes the head never saw stay 0
            place = torch.zeros(len(head_classes), n_classes)
            place[torch.arange(len(head_classes)), torch.as_tensor(head_classes, dtype=torch.long)] = 1.0
            self.register_buffer("columns", place)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        proba = self.head(features.float()).softmax(-1)
        return proba if self.columns is None else proba @ self.columns


class ImageGraph(nn.Module):
    """``pixels (B, C, H, W)`` → ``probabilities (B, n_classes)``; an inner ``layer`` is read by a hook that
    records its output (the layers after it compute nothing the graph returns, and the exporter drops them)."""

    def __init__(self, backbone: Any, layer: str, head: ProbabilityHead):
        super().__init__()
        self.trunk, self.layer, self.head = backbone.trunk, layer, head
        self._seen: list[torch.Tensor] = []
        if layer != DEFAULT_LAYER:
            self.trunk.get_submodule(layer).register_forward_hook(
                lambda _m, _i, out: self._seen.append(out[0] if isinstance(out, tuple) else out))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.layer == DEFAULT_LAYER:
            return self.head(self.trunk(pixels))
        self._seen.clear()
        self.trunk(pixels)
        return self.head(global_pool(self._seen[-1]))


class TextGraph(nn.Module):
    """``input_ids``, ``attention_mask`` (and ``token_type_ids``) ``(B, T)`` → ``probabilities (B, n_classes)``."""

    def __init__(self, backbone: Any, layer: str, head: ProbabilityHead, names: list[str]):
        super().__init__()
        self.backbone, self.layer, self.head, self.names = backbone, layer, head, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(dict(zip(self.names, tensors, strict=True)), self.layer))


def linear_svm_module(head: Any) -> nn.Module | None:
    """``Standardize → Linear`` computing the logits whose softmax is a temperature-calibrated linear SVM's
    ``predict_proba`` (``softmax(beta · margins)``; binary margins ``d`` become ``(-d, d)``); None for anything
    else (sigmoid calibration, no calibration, another estimator)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    steps = [s for _, s in head.steps] if isinstance(head, Pipeline) else [head]
    scaler = steps[0] if len(steps) == 2 and isinstance(steps[0], StandardScaler) else None
    calibrated = steps[-1]
    if len(steps) > (2 if scaler is not None else 1) or not isinstance(calibrated, CalibratedClassifierCV):
        return None
    if calibrated.method != "temperature" or len(calibrated.calibrated_classifiers_) != 1:
        return None
    inner = calibrated.calibrated_classifiers_[0]
    svm = inner.estimator
    if not isinstance(svm, LinearSVC):
        return None
    beta = float(np.asarray(inner.calibrators[0].beta_))
    coef, intercept = np.asarray(svm.coef_, np.float64), np.asarray(svm.intercept_, np.float64)
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    std, linear = Standardize(coef.shape[1]), nn.Linear(coef.shape[1], coef.shape[0])
    with torch.no_grad():
        if scaler is not None:
            std.mean.copy_(torch.as_tensor(scaler.mean_ if scaler.with_mean else 0.0, dtype=torch.float32))
            std.scale.copy_(torch.as_tensor(scaler.scale_ if scaler.with_std else 1.0, dtype=torch.float32))
        linear.weight.copy_(torch.as_tensor(beta * coef, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(beta * intercept, dtype=torch.float32))
    return nn.Sequential(std, linear).eval()


def head_module(model: Any, bundle: str) -> nn.Module:
    """The torch form of a fitted strategy's head, or a one-line :class:`BundleError` naming the heads that have one."""
    module = getattr(model, "head_module_", None)
    if module is not None:
        return module
    estimator = getattr(model, "head_", None)
    module = linear_svm_module(estimator) if estimator is not None else None
    if module is None:
        name = model._head_name() if hasattr(model, "_head_name") else "?"
        raise BundleError(
            f"Bundle {bundle!r} has a {name!r} head ({type(estimator).__name__}), which has no form transferkit can "
            f"put in an ONNX graph; only {', '.join(EXPORTABLE_HEADS)} heads export. Refit with `head='logistic'` "
            "and export that, or keep using the bundle itself.")
    return module


def build_graph(model: Any, bundle: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """``(graph, example inputs by name)`` of a loaded bundle, in eval mode on the CPU.

    Raises:
        BundleError: an audio or word-vector bundle, or a head without a torch form (:func:`head_module`).
    """
    from ..backbones.hf import HFEncoder, HFTextTrunk  # here: importing hf imports timm (seconds)

    backbone = model.backbone_
    head = ProbabilityHead(head_module(model, bundle), np.asarray(model.head_classes_), len(model.classes_))
    if backbone.modality == "image":
        c, h, w = backbone.preprocessing.input_size
        graph: nn.Module = ImageGraph(backbone, model.layer_, head)
        return graph.cpu().eval(), {IMAGE_INPUT: torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(0))}
    if backbone.modality == "text" and isinstance(backbone.trunk, HFTextTrunk) and isinstance(backbone.encoder,
                                                                                               HFEncoder):
        example = backbone.encoder(["an example text to trace", "two"])
        graph = TextGraph(backbone, model.layer_, head, list(example))
        return graph.cpu().eval(), {k: v.to(torch.int64) for k, v in example.items()}
    what = ("an audio bundle (its resampling and framing run outside the network)" if backbone.modality == "audio"
            else "a word-vector bundle (its tokenizer is transferkit's own, not a Hugging Face tokenizer)")
    raise BundleError(f"Bundle {bundle!r} is {what}, which transferkit cannot export to ONNX; image bundles and "
                      "transformer text bundles (hf:, packaged:all-minilm-l6-v2) export. Keep using the bundle itself.")
