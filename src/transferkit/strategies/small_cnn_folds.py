"""Several :class:`~transferkit.strategies.SmallCNNClassifier` fits trained as one network: the verdict's fold models.

The "model ensembling" recipe of PyTorch (``torch.func.stack_module_state``), done with grouped convolutions
(Krizhevsky, Sutskever & Hinton, NeurIPS 2012, trained AlexNet's two halves so): model i's batch is channel group i
of one input, every convolution has ``groups=k``, BatchNorm's statistics are per channel and so per model, and the
k linear heads are one batched product. Each model keeps what it would have alone: its own initialisation, data,
generator (so the same batches, crops and dropout masks), steps and one-cycle schedule; AdamW is elementwise, so the
stacked parameters get each model's own update. The losses are summed, and a sum's gradient in one model's weights
is that model's alone. The results are the one-at-a-time fits up to float rounding (tests/test_small_cnn_folds.py).

The same arithmetic in fewer, larger kernels and a fifth of the Python dispatch: five folds in one stack on one
thread took 1.4-1.7x less CPU than one by one on few-shot Fashion-MNIST and 2x less on 8 px digits, at the same
out-of-fold and test accuracy (bench/verdict_folds.py, results/verdict-folds-2026-12-04.json).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .small_cnn import (
    SeededDropout,
    SmallCNN,
    SmallCNNClassifier,
    adamw_steps,
    cpu_threads,
    one_cycle,
    random_crop,
)

#: parameters that may differ between models trained together (each keeps its own generator)
_OWN = ("seed", "progress", "num_workers")


class StackedSmallCNN(nn.Module):
    """k :class:`SmallCNN` of one shape as one network: normalised ``(B, k*C, H, W)``, model i's images in channels
    ``i*C:(i+1)*C``, → logits ``(B, k, classes)``. :meth:`unstack` writes the weights back into the k models."""

    def __init__(self, models: list[SmallCNN]):
        super().__init__()
        k = len(models)
        layers: list[nn.Module] = []
        for j, layer in enumerate(models[0].features):
            same: list[Any] = [m.features[j] for m in models]
            if isinstance(layer, nn.Conv2d):
                # conv_blocks' 3x3 convolutions, padded by 1
                conv = nn.Conv2d(k * layer.in_channels, k * layer.out_channels, 3, padding=1, bias=False, groups=k)
                conv.weight = nn.Parameter(torch.cat([c.weight.detach() for c in same]))
                layers.append(conv)
            elif isinstance(layer, nn.BatchNorm2d):
                norm = nn.BatchNorm2d(k * layer.num_features, layer.eps, layer.momentum)
                for name, value in norm.state_dict().items():
                    if name != "num_batches_tracked":
                        value.copy_(torch.cat([getattr(b, name).detach() for b in same]))
                layers.append(norm)
            else:  # ReLU, max-pool: no state
                layers.append(layer)
        self.features = nn.Sequential(*layers)
        heads: list[Any] = [m.head[-1] for m in models]
        self.weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]))  # (k, classes, features)
        self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads]))  # (k, classes)
        self.dropouts = [m.head[2] for m in models]  # each draws from its own model's generator; not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        features = pooled.view(len(x), len(self.dropouts), -1)
        features = torch.stack([drop(features[:, i]) for i, drop in enumerate(self.dropouts)], 1)
        return torch.einsum("bkf,kcf->bkc", features, self.weight) + self.bias

    @torch.no_grad()
    def unstack(self, models: list[SmallCNN]) -> None:
        k = len(models)
        for j, layer in enumerate(self.features):
            if isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)):
                for name, value in layer.state_dict().items():
                    parts = [value] * k if value.ndim == 0 else value.chunk(k)
                    for model, part in zip(models, parts, strict=True):
                        model.features[j].state_dict()[name].copy_(part)
        for i, model in enumerate(models):
            head: Any = model.head[-1]
            head.weight.copy_(self.weight[i])
            head.bias.copy_(self.bias[i])


def fit_side_by_side(classifiers: list[SmallCNNClassifier], datasets: list[Any]) -> list[SmallCNNClassifier]:
    """Fit ``classifiers[i]`` on ``datasets[i]``; those of the same settings and data shape (channels, size, classes,
    training images) as one :class:`StackedSmallCNN`, the rest one by one. Returns the fitted classifiers."""
    plans = [clf._plan(data, None) for clf, data in zip(classifiers, datasets, strict=True)]
    groups: dict[Any, list[int]] = {}
    for i, (clf, plan) in enumerate(zip(classifiers, plans, strict=True)):
        groups.setdefault(_stack_key(clf, plan), []).append(i)
    for key, members in groups.items():
        clf, plan = classifiers[members[0]], plans[members[0]]
        with cpu_threads(clf.threads, plan["device"]):
            if key is None or len(members) == 1:
                for i in members:
                    plans[i]["history"] = classifiers[i]._train(plans[i])
            else:
                for i, history in zip(members, train_stacked(clf, [plans[i] for i in members]), strict=True):
                    plans[i]["history"] = history
    return [clf._fitted(plan, plan.pop("history")) for clf, plan in zip(classifiers, plans, strict=True)]


def _stack_key(clf: SmallCNNClassifier, plan: dict[str, Any]) -> Any:
    """What models trained together must share; None: train alone (early stopping ends models at different epochs,
    and the stacked path is for the CPU)."""
    if clf.converged_loss is not None or plan["device"].type != "cpu":
        return None
    settings = tuple(sorted((k, v) for k, v in clf.get_params().items() if k not in _OWN))
    return settings, tuple(plan["images"].shape[1:]), plan["model"].n_classes, len(plan["labels"])


def train_stacked(clf: SmallCNNClassifier, plans: list[dict[str, Any]]) -> list[list[dict[str, float]]]:
    """:meth:`SmallCNNClassifier._train` for the models of ``plans`` at once (same settings, ``clf``'s, and shapes);
    each model's epoch history."""
    models: list[SmallCNN] = [p["model"] for p in plans]
    for model, plan in zip(models, plans, strict=True):
        model.to(memory_format=torch.channels_last).train()
        for module in model.modules():
            if isinstance(module, SeededDropout):
                module.generator = plan["generator"]
    stacked = StackedSmallCNN(models).to(memory_format=torch.channels_last).train()
    epochs, steps_per_epoch, n = plans[0]["epochs"], plans[0]["steps_per_epoch"], len(plans[0]["labels"])
    padding = round(clf.crop_padding * min(plans[0]["images"].shape[2:]))
    params = list(stacked.parameters())
    step = adamw_steps(params, clf.lr, clf.weight_decay, one_cycle(epochs * steps_per_epoch))
    histories: list[list[dict[str, float]]] = [[] for _ in plans]
    for epoch in range(epochs):
        splits = [torch.tensor_split(torch.randperm(n, generator=p["generator"]), steps_per_epoch) for p in plans]
        totals = torch.zeros(len(plans), dtype=torch.float64)
        right = torch.zeros(len(plans), dtype=torch.long)
        for s in range(steps_per_epoch):
            idx = [split[s] for split in splits]
            x = torch.cat([random_crop(m.normalise(p["images"][i]), padding, clf.flip, p["generator"])
                           for m, p, i in zip(models, plans, idx, strict=True)], 1)
            y = torch.stack([p["labels"][i] for p, i in zip(plans, idx, strict=True)], 1)  # (B, k)
            logits = stacked(x.contiguous(memory_format=torch.channels_last))  # (B, k, classes)
            losses = nn.functional.cross_entropy(logits.permute(0, 2, 1), y, reduction="none",
                                                 label_smoothing=clf.label_smoothing).mean(0)
            for p in params:
                p.grad = None
            losses.sum().backward()
            step()
            totals += losses.detach().double() * len(y)
            right += (logits.detach().argmax(2) == y).sum(0)
        for history, total, hits in zip(histories, totals.tolist(), right.tolist(), strict=True):
            history.append({"epoch": epoch + 1, "loss": round(total / n, 4), "train_accuracy": round(hits / n, 4)})
    stacked.unstack(models)
    return histories
