"""A small CNN trained on a labelled source and an unlabelled target at once: the deep adaptation methods.

The published digit-adaptation results (MNIST → USPS, SVHN → MNIST) train a LeNet-sized network from scratch on both
domains; this is the same with :class:`~transferkit.strategies.small_cnn.SmallCNN` at the images' native size. Every
step draws a source batch and a target batch, runs them through the network together (so BatchNorm sees both domains,
as in the methods' reference implementations), and adds the method's loss to the source cross-entropy:

- ``source-only``: no target term (the baseline every adapted model must beat);
- ``adabn``: source-only training, then BatchNorm statistics re-estimated on the target (:mod:`.adabn`);
- ``coral``: deep CORAL between the two batches' features (:mod:`.coral`);
- ``dann``: gradient reversal + domain discriminator with the usual ramp (:mod:`.dann`);
- ``mcc``: minimum class confusion on the target predictions (:mod:`.mcc`);
- ``self-training``: from halfway, class-balanced pseudo-labels of the target (re-drawn ``rounds`` times,
  :mod:`.self_training`) trained with the source.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import TransferkitError, did_you_mean
from .._progress import progress_bar
from ..data.native import channel_stats, decode, grey_if_grey, native_size
from ..strategies.small_cnn import (
    SeededDropout,
    SmallCNN,
    cpu_threads,
    init_parameters,
    one_cycle,
    random_crop,
)
from .adabn import adapt_batchnorm
from .coral import coral_loss
from .dann import DANNLoss
from .mcc import MCCLoss
from .self_training import _balanced_selection

METHODS = ("source-only", "adabn", "coral", "dann", "mcc", "self-training")


def split(model: SmallCNN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)`` of normalised images: the pooled features before the last linear layer."""
    features = model.head[:3](model.features(x))  # pool, flatten, dropout
    return features, model.head[3](features)


class AdaptedCNNClassifier:
    """A small CNN from scratch on labelled source images and unlabelled target images (see the module docstring).

    Args:
        method: one of :data:`METHODS`.
        steps: optimizer steps (each: one source and one target batch).
        batch_size: images per domain per step.
        weight: weight of the method's loss beside the source cross-entropy.
        rounds: pseudo-label rounds of ``self-training`` (in the second half of training).
        max_size, width, lr, weight_decay, crop_padding: as :class:`~transferkit.strategies.SmallCNNClassifier`.
        threads: torch CPU threads while training (None: torch's own; 1 by default, as for the small CNN:
            these convolutions gain nothing from a second thread, and on a busy machine lose a lot).
        seed: seeds initialisation, batches and augmentation.
        progress: show a progress bar.

    After ``fit(source, target)``: ``model_``, ``classes_``, ``fit_info_`` (method, steps, input size, per-round
    pseudo-labels, seconds).
    """

    def __init__(self, method: str = "dann", steps: int = 1000, batch_size: int = 32, weight: float = 1.0,
                 rounds: int = 3, max_size: int = 32, width: int = 16, lr: float = 3e-3, weight_decay: float = 5e-4,
                 crop_padding: float = 0.125, threads: int | None = 1, seed: int = 0, progress: bool = True):
        self.method = method
        self.steps = steps
        self.batch_size = batch_size
        self.weight = weight
        self.rounds = rounds
        self.max_size = max_size
        self.width = width
        self.lr = lr
        self.weight_decay = weight_decay
        self.crop_padding = crop_padding
        self.threads = threads
        self.seed = seed
        self.progress = progress

    def fit(self, source: Any, target: Any) -> AdaptedCNNClassifier:
        """Train on ``source`` (a labelled ImageDataset) adapted to ``target`` (an ImageDataset, labels unused)."""
        if self.method not in METHODS:
            raise TransferkitError(f"method must be one of {', '.join(METHODS)}. Got {self.method!r} instead."
                                   f"{did_you_mean(self.method, METHODS)}")
        if source.labels is None:
            raise TransferkitError("The source needs labels: adaptation learns the classes from it.")
        start = time.perf_counter()
        size = native_size(source, self.max_size, self.seed)
        xs, index, _ = decode(source, size, 3)
        xt, _, _ = decode(target, size, 3)
        both = grey_if_grey(torch.cat([xs, xt]))
        xs, xt = both[: len(xs)], both[len(xs):]
        ys = torch.as_tensor(np.asarray(source.labels)[index])
        mean, std = channel_stats(xs)
        generator = torch.Generator().manual_seed(self.seed)
        model = SmallCNN(xs.shape[1], len(source.classes), size, self.width, 2, 0.2, mean, std)
        init_parameters(model, generator)
        extra = self._method_loss(model)
        with cpu_threads(self.threads, torch.device("cpu")):
            rounds = self._train(model, extra, xs, ys, xt, generator)
            if self.method == "adabn":
                adapt_batchnorm(model, xt.split(256))  # raw images: the model normalises them itself
        for module in model.modules():
            if isinstance(module, SeededDropout):
                module.generator = None
        self.model_ = model.eval()
        self.input_size_ = size
        self.channels_ = xs.shape[1]
        self.classes_ = np.asarray(source.classes)
        self.fit_info_ = {"method": self.method, "steps": self.steps, "input_size": list(size),
                          "source_images": len(xs), "target_images": len(xt), "pseudo_labels": rounds,
                          "seconds": round(time.perf_counter() - start, 3)}
        return self

    def _method_loss(self, model: SmallCNN) -> nn.Module | None:
        last = model.head[3]
        assert isinstance(last, nn.Linear)
        dim = last.in_features
        return {"dann": lambda: DANNLoss(dim, 256), "mcc": lambda: MCCLoss()}.get(self.method, lambda: None)()

    def _train(self, model: SmallCNN, extra: nn.Module | None, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor,
               generator: torch.Generator) -> list[int]:
        for module in model.modules():
            if isinstance(module, SeededDropout):
                module.generator = generator
        params = list(model.parameters()) + (list(extra.parameters()) if extra is not None else [])
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(self.steps))
        padding = round(self.crop_padding * min(xs.shape[2:]))
        ce = nn.CrossEntropyLoss(label_smoothing=0.1)
        pseudo = torch.full((len(xt),), -1, dtype=torch.long)
        round_at = {math.floor(self.steps * (0.5 + 0.5 * r / self.rounds)) for r in range(self.rounds)}
        rounds: list[int] = []
        model.train()
        if extra is not None:
            extra.train()
        with progress_bar(self.steps, f"adapt ({self.method})", self.progress) as advance:
            for step in range(self.steps):
                if self.method == "self-training" and step in round_at:
                    pseudo = self._pseudo_labels(model, xt, share=(len(rounds) + 1) / self.rounds)
                    rounds.append(int((pseudo >= 0).sum()))
                    model.train()
                s = torch.randint(0, len(xs), (min(self.batch_size, len(xs)),), generator=generator)
                t = torch.randint(0, len(xt), (min(self.batch_size, len(xt)),), generator=generator)
                # the source-only baselines never see a target image, not even in their BatchNorm statistics
                seen = xs[s] if self.method in ("source-only", "adabn") else torch.cat([xs[s], xt[t]])
                batch = random_crop(model.normalise(seen), padding, False, generator)
                features, logits = split(model, batch)
                n = len(s)
                loss = ce(logits[:n], ys[s])
                progress = step / max(1, self.steps - 1)
                if self.method == "coral":
                    loss = loss + self.weight * coral_loss(features[:n], features[n:])
                elif extra is not None:
                    loss = loss + self.weight * extra(features[:n], features[n:], progress, target_logits=logits[n:])
                elif self.method == "self-training" and (pseudo[t] >= 0).any():
                    known = pseudo[t] >= 0
                    loss = loss + self.weight * ce(logits[n:][known], pseudo[t][known])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                advance(loss=f"{float(loss.detach()):.3f}")
        return rounds

    def with_target_batchnorm(self, target: Any) -> AdaptedCNNClassifier:
        """A copy of this fitted model with AdaBN's target statistics: what ``method="adabn"`` trains, without
        training again when the source-only model (same seed and steps) is at hand."""
        import copy

        adapted = copy.deepcopy(self)
        images, _, _ = decode(target, self.input_size_, self.channels_)
        with cpu_threads(self.threads, torch.device("cpu")):
            adapt_batchnorm(adapted.model_, images.split(256))
        adapted.method = "adabn"
        adapted.fit_info_ = {**self.fit_info_, "method": "adabn", "target_images": len(images)}
        adapted.model_.eval()
        return adapted

    @torch.no_grad()
    def _pseudo_labels(self, model: SmallCNN, xt: torch.Tensor, share: float) -> torch.Tensor:
        model.eval()
        proba = torch.cat([model(chunk).softmax(-1) for chunk in xt.split(512)]).numpy()
        chosen = _balanced_selection(proba.argmax(1), proba.max(1), share, None)
        return torch.as_tensor(np.where(chosen, proba.argmax(1), -1))

    @torch.no_grad()
    def predict_proba(self, X: Any) -> np.ndarray:
        images, _, _ = decode(X, self.input_size_, self.channels_)
        return torch.cat([self.model_(chunk).softmax(-1) for chunk in images.split(512)]).numpy()

    def features(self, X: Any) -> np.ndarray:
        """The network's pooled features of ``X`` ``(n, 4 * width)`` (for domain-gap measures)."""
        images, _, _ = decode(X, self.input_size_, self.channels_)
        with torch.no_grad():
            return torch.cat([split(self.model_, self.model_.normalise(c))[0] for c in images.split(512)]).numpy()

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X: Any) -> float:
        labels = np.asarray(X.labels)
        return float(np.mean(self.predict_proba(X).argmax(1) == labels))
