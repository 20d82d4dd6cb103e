"""The verdict's small CNNs trained cheaper: the same updates and models as the plain path, checked on tiny cases."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.strategies import SmallCNNClassifier
from transferkit.strategies.small_cnn import SmallCNN, adamw_steps, one_cycle
from transferkit.strategies.small_cnn_folds import fit_side_by_side


def test_adamw_steps_are_torch_adamw_with_the_one_cycle_schedule():
    torch.manual_seed(0)
    ours = SmallCNN(1, 3, (12, 12), 4, dropout=0.0)  # no dropout: both copies see the same function
    reference = copy.deepcopy(ours)
    start = copy.deepcopy(ours)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(6))
    params = list(ours.parameters())
    step = adamw_steps(params, 3e-3, 5e-4, one_cycle(6))
    x = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1])
    for _ in range(6):  # through warm-up and into the cosine: every step's learning rate matters
        for model in (ours, reference):
            nn.functional.cross_entropy(model(x), y).backward()
        step()
        optimizer.step()
        schedule.step()
        for p in params:
            p.grad = None
        optimizer.zero_grad()
    theirs = reference.state_dict()
    assert not torch.equal(ours.head[-1].weight, start.head[-1].weight)  # it trained
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs[name]), name


def _folds(n_items: int = 15, size: int = 12) -> tuple[tk.ImageDataset, list[np.ndarray]]:
    """Noise images of 3 classes with a class-dependent brightness, and three index sets of 12 items each."""
    rng = np.random.default_rng(0)
    labels = np.arange(n_items) % 3
    images = np.clip(rng.normal(60 + 60 * labels[:, None, None], 30, (n_items, size, size)), 0, 255).astype(np.uint8)
    return tk.from_arrays(images, labels), [np.delete(np.arange(n_items), np.arange(f, n_items, 5)) for f in range(3)]


def test_stacked_folds_fit_as_each_would_alone():
    """The fold models trained as one stacked network: the same models as one at a time, up to float rounding."""
    data, folds = _folds()
    # 3 steps per epoch, 2 epochs; the stacked path is for the CPU
    settings = {"width": 4, "steps": 6, "batch_size": 4, "progress": False, "device": "cpu"}
    seeds = [0, 0, 3]  # the verdict's folds share a seed; a different one must keep its own draws too
    alone = [SmallCNNClassifier(seed=s, **settings).fit(data.subset(f)) for s, f in zip(seeds, folds, strict=True)]
    together = fit_side_by_side([SmallCNNClassifier(seed=s, **settings) for s in seeds],
                                [data.subset(f) for f in folds])
    assert len(together) == 3
    for one, stacked in zip(alone, together, strict=True):
        theirs = stacked.model_.state_dict()
        for name, value in one.model_.state_dict().items():
            torch.testing.assert_close(theirs[name], value, atol=5e-4, rtol=1e-4, msg=name)
        np.testing.assert_allclose(stacked.predict_proba(data), one.predict_proba(data), atol=1e-4)
        info, reference = stacked.fit_info_, one.fit_info_
        assert info["steps"] == reference["steps"] == 6 and info["epochs"] == reference["epochs"] == 2
        assert [h["train_accuracy"] for h in info["history"]] == [h["train_accuracy"] for h in reference["history"]]
        assert [h["loss"] for h in info["history"]] == pytest.approx([h["loss"] for h in reference["history"]],
                                                                     abs=2e-4)
        assert info["mean"] == reference["mean"] and info["train_images"] == 12
    # the folds differ (their own data), and trained: no model equals its initialisation or another fold's
    assert not np.allclose(together[0].predict_proba(data), together[1].predict_proba(data))


def test_folds_that_cannot_stack_train_alone_exactly():
    """Different training-set sizes (another step budget) or early stopping: each trains by itself, bit for bit."""
    data, folds = _folds()
    settings = {"width": 4, "steps": 4, "batch_size": 4, "progress": False, "device": "cpu"}
    subsets = [data.subset(folds[0]), data.subset(folds[1][:9])]  # 12 and 9 images
    alone = [SmallCNNClassifier(seed=0, **settings).fit(s) for s in subsets]
    early = {**settings, "converged_loss": 0.5}
    alone.append(SmallCNNClassifier(seed=0, **early).fit(subsets[0]))
    together = fit_side_by_side([SmallCNNClassifier(seed=0, **settings), SmallCNNClassifier(seed=0, **settings),
                                 SmallCNNClassifier(seed=0, **early)], [subsets[0], subsets[1], subsets[0]])
    for one, other in zip(alone, together, strict=True):
        np.testing.assert_array_equal(other.predict_proba(data), one.predict_proba(data))
        assert other.fit_info_["history"] == one.fit_info_["history"]
