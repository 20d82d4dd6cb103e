"""SCAN refinement on frozen features: Van Gansbeke, Vandenhende, Georgoulis, Proesmans & Van Gool, "SCAN: Learning
to Classify Images without Labels", ECCV 2020.

SCAN's clustering step, run on cached features instead of a network being trained: mine each item's ``neighbours``
nearest neighbours in feature space (Euclidean on the prepared features, which are L2-normalised before PCA, so
close to the paper's cosine), then train small heads (an MLP with one hidden layer of
:data:`HIDDEN` units, softmax over k) so that an item and a random one of its neighbours get the same cluster:

    loss = -mean log <p_i, p_j>  -  entropy_weight * H(mean_i p_i)

The first term is SCAN's neighbour consistency, the second keeps clusters from collapsing into one (the paper's
weight is 5). ``heads`` heads from different initialisations train together and the one with the lowest loss over
every (item, neighbour) pair wins — a choice that needs no label, as in the paper. Not done here: SCAN's
self-labelling step and the augmentations it trains with (frozen features have none).

It helps where neighbours in feature space agree on the class more often than the centroids of k-means do, e.g.
elongated or curved clusters; where they do not, it ends near k-means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: hidden units of each clustering head
HIDDEN = 128


@dataclass
class ScanResult:
    """``labels`` ``(n,)``, the chosen head's ``loss`` (lower is better), every head's loss, and the neighbours'
    ``consistency``: the fraction of (item, neighbour) pairs put in the same cluster."""

    labels: np.ndarray
    loss: float
    head_losses: list[float]
    consistency: float


def mine_neighbours(x: np.ndarray, neighbours: int) -> np.ndarray:
    """``(n, neighbours)`` indices of each row's nearest other rows (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    n = min(neighbours, len(x) - 1)
    return NearestNeighbors(n_neighbors=n + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]


def scan_cluster(x: np.ndarray, k: int, *, neighbours: int = 20, heads: int = 5, steps: int = 500,
                 entropy_weight: float = 5.0, batch_size: int = 256, lr: float = 1e-3, seed: int = 0) -> ScanResult:
    """Cluster prepared features ``x`` ``(n, d)`` into ``k`` clusters with SCAN's loss (see the module docstring).

    Example:
        >>> result = scan_cluster(prepare(features), k=10)
        >>> result.labels[:5], result.consistency
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the matrices are tiny: more threads only wait on each other (10x slower on 2 busy cores)
    try:
        return _train(x, k, neighbours, heads, steps, entropy_weight, batch_size, lr, seed)
    finally:
        torch.set_num_threads(threads)


def _train(x: np.ndarray, k: int, neighbours: int, heads: int, steps: int, entropy_weight: float, batch_size: int,
           lr: float, seed: int) -> ScanResult:
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    features = torch.as_tensor(x / max(float(x.std(0).mean()), 1e-12), dtype=torch.float32)
    pairs = torch.as_tensor(mine_neighbours(x, neighbours))
    n, d = features.shape

    def init(*shape: int) -> torch.nn.Parameter:
        return torch.nn.Parameter(torch.randn(*shape, generator=generator) / shape[-2] ** 0.5)

    # every head's two layers as one batched tensor each, so the heads train in the same matrix products
    w1, w2 = init(heads, d, HIDDEN), init(heads, HIDDEN, k)
    b1, b2 = torch.nn.Parameter(torch.zeros(heads, 1, HIDDEN)), torch.nn.Parameter(torch.zeros(heads, 1, k))

    def probabilities(batch: torch.Tensor) -> torch.Tensor:  # (b, d) -> (heads, b, k)
        return F.softmax(torch.relu(batch @ w1 + b1) @ w2 + b2, dim=-1)

    def loss(p_anchor: torch.Tensor, p_neighbour: torch.Tensor) -> torch.Tensor:  # -> (heads,)
        consistency = -torch.log((p_anchor * p_neighbour).sum(-1).clamp_min(1e-7)).mean(-1)
        mean = p_anchor.mean(1)
        entropy = -(mean * torch.log(mean.clamp_min(1e-7))).sum(-1)
        return consistency - entropy_weight * entropy

    optimiser = torch.optim.Adam([w1, b1, w2, b2], lr=lr, weight_decay=1e-4)
    # a fixed number of steps rather than epochs: a small set needs as many updates as a large one
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(steps * batch_size // n + 1)])
    for step in range(steps):
        anchor = order[step * min(batch_size, n):(step + 1) * min(batch_size, n)]
        neighbour = pairs[anchor, torch.randint(pairs.shape[1], (len(anchor),), generator=generator)]
        optimiser.zero_grad()
        loss(probabilities(features[anchor]), probabilities(features[neighbour])).sum().backward()
        optimiser.step()
    with torch.no_grad():
        p = probabilities(features)  # (heads, n, k)
        anchors = p.unsqueeze(2).expand(-1, -1, pairs.shape[1], -1).reshape(heads, -1, k)
        final = loss(anchors, p[:, pairs.reshape(-1)])
    best = int(final.argmin())
    labels = p[best].argmax(-1).numpy()
    consistency = float((labels[:, None] == labels[pairs.numpy()]).mean())
    return ScanResult(labels, float(final[best]), [round(float(v), 4) for v in final], consistency)
