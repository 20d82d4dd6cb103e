"""``linear`` and ``mlp`` heads trained with torch on cached features, as scikit-learn classifiers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .modules import build_head_module


class TorchHeadClassifier(ClassifierMixin, BaseEstimator):
    """A linear or MLP classifier on fixed features, trained full-batch-ish with AdamW.

    Features are standardised with statistics of the training set (stored in the module), so the head works
    unchanged on raw backbone features after loading.

    Args:
        hidden: widths of hidden layers; ``()`` is a linear (softmax-regression) head.
        epochs: passes over the features.
        lr, weight_decay: AdamW settings.
        dropout: dropout after each hidden layer.
        batch_size: minibatch size.
        random_state: seed for initialisation and shuffling.
    """

    def __init__(self, hidden: tuple[int, ...] = (), epochs: int = 100, lr: float = 1e-3, weight_decay: float = 1e-4,
                 dropout: float = 0.0, batch_size: int = 256, random_state: int = 0):
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> TorchHeadClassifier:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.config_ = {
            "type": "mlp" if self.hidden else "linear", "in_features": X.shape[1],
            "out_features": len(self.classes_), "standardize": True, "hidden": list(self.hidden),
            "dropout": self.dropout,
        }
        g = torch.Generator().manual_seed(self.random_state)
        torch.manual_seed(self.random_state)
        module: Any = build_head_module(self.config_)  # standardize=True: a Sequential led by Standardize
        std: Any = module[0]
        std.mean.copy_(torch.from_numpy(X.mean(0)))
        std.scale.copy_(torch.from_numpy(X.std(0) + 1e-6))
        xt, yt = torch.from_numpy(X), torch.from_numpy(y_idx.astype(np.int64))
        opt = torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        module.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(xt), generator=g)
            for start in range(0, len(xt), self.batch_size):
                idx = order[start:start + self.batch_size]
                opt.zero_grad(set_to_none=True)
                loss_fn(module(xt[idx]), yt[idx]).backward()
                opt.step()
        self.module_ = module.eval()
        return self

    @torch.inference_mode()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "module_")
        return self.module_(torch.as_tensor(np.asarray(X, dtype=np.float32))).softmax(-1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    def export(self) -> tuple[nn.Module, dict[str, Any]]:
        check_is_fitted(self, "module_")
        return self.module_, dict(self.config_)
