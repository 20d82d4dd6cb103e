"""Quantization-aware fine-tuning by self-distillation before static int8: the weights are nudged, on the calibration
images, so that the network *after* onnxruntime's int8 rounding predicts what the original float network does.

The method is quantization-aware training (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018; Krishnamoorthi, "Quantizing deep convolutional networks for efficient
inference: A whitepaper", arXiv:1806.08342, 2018) with the float model as the teacher and no labels (as in
Mishra & Marr, "Apprentice", ICLR 2018, and the data-free/label-free QAT that followed): the student is a COPY of
the backbone in which every Conv → BatchNorm pair is folded (``w·γ/σ``, as onnxruntime's pre-processing folds it)
and its weights rounded per output channel to symmetric int8, and the activations where onnxruntime's static QDQ
puts its uint8 pairs (the pixels, every conv unit's output after its activation, every block's output — residual
adds included — and the pooled features) are rounded per tensor with MinMax ranges measured on the calibration
images — :func:`torch.fake_quantize_per_channel_affine` / ``..._per_tensor_affine``, whose gradients are the
straight-through estimator (Bengio et al., 2013). The loss is the KL divergence between the bundle's float head's
class probabilities (at temperature ``T``) on the student's features and on the original model's (Hinton et al.,
2015), on the calibration images and their mirror images. BatchNorm statistics stay frozen (they are folded).

The tuned weights are then exported as an ordinary float graph and quantised by the unchanged static QDQ path
(:mod:`.quantize`); int8's agreement is always measured against the ORIGINAL bundle. The rounding simulated here
is close to onnxruntime's but not identical (bias and accumulator rounding are not simulated, and a ReLU that is a
separate module after its BatchNorm is rounded before it, where onnxruntime rounds after it).

Measured (bench/results/export-int8-qat-2026-12-04.json: EfficientNet-Lite0, Fashion-MNIST, 200 calibration
images): the simulation tracks onnxruntime's int8 closely (97.4 % top-1 agreement with it), but 150 steps did not
raise held-out agreement with float32 (95.4 % plain → 95.2 % tuned; 35 min on two loaded cores) and 300 steps at
lr 1e-5 reached only 95.8 % (4.6 min quiet) — hence opt-in (``qat_steps``), off by default.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: symmetric int8 weights, as onnxruntime's QInt8 per channel (-127..127, zero point 0)
WEIGHT_QMAX = 127


class ActivationQuant(nn.Module):
    """Per-tensor uint8 fake quantisation with a MinMax range (0 always inside it, as onnxruntime's)."""

    lo: torch.Tensor
    hi: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.observing, self.enabled = False, True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            with torch.no_grad():
                self.lo.copy_(torch.minimum(self.lo, x.min()))
                self.hi.copy_(torch.maximum(self.hi, x.max()))
            return x
        if not self.enabled or float(self.hi - self.lo) <= 0:
            return x
        scale = float(self.hi - self.lo) / 255
        zero = int(round(-float(self.lo) / scale))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class FoldedConv(nn.Module):
    """``conv`` followed by ``bn`` (eval statistics), folded into one conv whose weights are int8-rounded per
    output channel; ``conv.weight``, ``bn.weight`` and ``bn.bias`` are what trains."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.conv, self.bn = conv, bn
        self.enabled = True

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the folded conv, the weight int8-rounded per output channel when enabled."""
        conv, bn = self.conv, self.bn
        assert bn.running_var is not None and bn.running_mean is not None
        gain = (bn.weight if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * gain.reshape(-1, 1, 1, 1)
        shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        bias = shift - bn.running_mean * gain + (conv.bias * gain if conv.bias is not None else 0.0)
        if self.enabled:
            scale = (weight.detach().abs().amax(dim=(1, 2, 3)) / WEIGHT_QMAX).clamp_min(1e-12)
            zeros = torch.zeros(len(scale), dtype=torch.int32)
            weight = torch.fake_quantize_per_channel_affine(weight, scale, zeros, 0, -WEIGHT_QMAX, WEIGHT_QMAX)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.folded()
        conv = self.conv
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class AfterBatchNorm(nn.Module):
    """What stays of a folded BatchNorm: its activation (timm's ``BatchNormAct2d.act``), then the uint8 rounding."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.act = getattr(bn, "act", nn.Identity())
        self.quant = ActivationQuant()
        self._bn = [bn]  # not registered: its parameters belong to the FoldedConv before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(self.act(x))


class OutputQuant(nn.Module):
    """A block, then the uint8 rounding of its output (a residual add's output is a tensor QDQ rounds)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block, self.quant = block, ActivationQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(self.block(x))


class FakeQuantTrunk(nn.Module):
    """``pixels`` → rounded pooled features: the student, built on a deep copy of ``trunk``."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = copy.deepcopy(trunk).eval().requires_grad_(False)
        self.folded = 0
        self._wrap(self.trunk)
        self.input_quant, self.output_quant = ActivationQuant(), ActivationQuant()

    def _wrap(self, module: nn.Module) -> None:
        children = list(module.named_children())
        for (name, child), (next_name, following) in zip(children, children[1:], strict=False):
            if isinstance(child, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
                setattr(module, name, FoldedConv(child, following))
                setattr(module, next_name, AfterBatchNorm(following))
                self.folded += 1
        for name, child in list(module.named_children()):
            if isinstance(child, (FoldedConv, AfterBatchNorm)):
                continue
            self._wrap(child)
            if isinstance(module, nn.Sequential) and not isinstance(child, nn.Sequential) and any(
                    isinstance(m, FoldedConv) for m in child.modules()):
                setattr(module, name, OutputQuant(child))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.output_quant(self.trunk(self.input_quant(pixels)))

    def quants(self) -> Iterator[ActivationQuant]:
        return (m for m in self.modules() if isinstance(m, ActivationQuant))

    def set_quantization(self, enabled: bool) -> None:
        for m in self.modules():
            if isinstance(m, (ActivationQuant, FoldedConv)):
                m.enabled = enabled

    @torch.no_grad()
    def calibrate(self, batches: list[torch.Tensor]) -> None:
        """MinMax ranges of the float (unrounded) network on ``batches``, as onnxruntime measures them."""
        self.set_quantization(False)
        for q in self.quants():
            q.lo.zero_()
            q.hi.zero_()
            q.observing = True
        for x in batches:
            self(x)
        for q in self.quants():
            q.observing = False
        self.set_quantization(True)

    def tuned_trunk(self) -> nn.Module:
        """A copy of the trunk with the original modules back, the tuned weights in them: a plain float trunk."""
        trunk = copy.deepcopy(self.trunk)
        _unwrap(trunk)
        return trunk.eval()


def _unwrap(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, OutputQuant):
            child = child.block
        elif isinstance(child, FoldedConv):
            child = child.conv
        elif isinstance(child, AfterBatchNorm):
            child = child._bn[0]
        setattr(module, name, child)
        _unwrap(child)


def qat_tune(trunk: nn.Module, head_logits: nn.Module, pixels: np.ndarray, steps: int, *, lr: float = 1e-5,
             batch_size: int = 8, temperature: float = 1.0, seed: int = 0,
             student: FakeQuantTrunk | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of ``trunk`` for ``steps`` Adam steps so that its int8-rounded form's class probabilities
    (through the frozen float ``head_logits``) match the original's on ``pixels``.

    Args:
        trunk: pixels ``(B, C, H, W)`` → pooled features ``(B, F)``; not modified.
        head_logits: features → class logits (float, frozen).
        pixels: the calibration images, preprocessed, ``(N, C, H, W)``.

    Returns:
        ``(tuned float trunk, facts for the file's metadata)``.
    """
    torch.manual_seed(seed)
    student = student if student is not None else FakeQuantTrunk(trunk)
    x_all = torch.as_tensor(pixels)
    batches = [x_all[i:i + batch_size] for i in range(0, len(x_all), batch_size)]
    student.calibrate(batches)
    head_logits = head_logits.eval().requires_grad_(False)
    with torch.no_grad():
        teacher = trunk.eval()
        targets = torch.cat([head_logits(teacher(b)) for b in batches])
        targets_flip = torch.cat([head_logits(teacher(b.flip(-1))) for b in batches])
    params = [p.requires_grad_(True) for m in student.modules() if isinstance(m, FoldedConv)
              for p in (m.conv.weight, m.bn.weight, m.bn.bias) if p is not None]
    optimizer = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    start, losses = time.perf_counter(), []
    for step in range(steps):
        idx = torch.as_tensor(rng.choice(len(x_all), size=min(batch_size, len(x_all)), replace=False))
        flip = bool(step % 2)
        x = x_all[idx].flip(-1) if flip else x_all[idx]
        target = (targets_flip if flip else targets)[idx]
        logits = head_logits(student(x))
        loss = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(target / temperature, -1),
                        reduction="batchmean", log_target=True) * temperature ** 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return student.tuned_trunk(), {"steps": steps, "lr": lr, "batch_size": batch_size, "temperature": temperature,
                     "folded_convs": student.folded, "loss_first": losses[:5], "loss_last": losses[-5:],
                     "seconds": round(time.perf_counter() - start, 1)}


def qat_graph(graph: Any, pixels: np.ndarray, steps: int, *, seed: int = 0,
              **options: Any) -> tuple[nn.Module, dict[str, Any]]:
    """``(a copy of the image graph with its trunk tuned by :func:`qat_tune`, what was done)``; ``graph`` (an
    :class:`~transferkit.export.graph.ImageGraph` reading the trunk's pooled output) is not modified.

    Raises:
        TransferkitError: the graph reads an inner layer (a hook the copy would lose), or has no conv to fold.
    """
    from .._errors import TransferkitError
    from ..backbones import DEFAULT_LAYER

    if getattr(graph, "layer", None) != DEFAULT_LAYER:
        raise TransferkitError(f"`qat_steps` needs a bundle whose features are the backbone's pooled output; this "
                               f"one reads layer {getattr(graph, 'layer', None)!r}. Leave `qat_steps` out.")
    trunk, head = graph.trunk, graph.head
    tuned, facts = qat_tune(trunk, head.head, pixels, steps, seed=seed, **options)
    if not facts["folded_convs"]:
        raise TransferkitError("`qat_steps` found no Conv2d followed by a BatchNorm2d in the backbone to tune; "
                               "leave it out.")
    graph.trunk = None  # type: ignore[assignment]
    try:
        copied = copy.deepcopy(graph)
    finally:
        graph.trunk = trunk
    copied.trunk = tuned
    return copied.eval(), {"method": "quantization-aware fine-tuning by distillation from the float model",
                           "simulated": "per-channel symmetric int8 weights of the BatchNorm-folded convs, uint8 "
                                        "activations with MinMax ranges, straight-through gradients",
                           "loss": "KL divergence of the float head's probabilities to the original model's",
                           "items": int(len(pixels)), **facts}
