"""A small CNN trained from scratch at the images' own resolution: the cheap, strong baseline transfer must beat.

Raghu, Zhang, Kleinberg & Bengio, "Transfusion: Understanding Transfer Learning for Medical Imaging" (NeurIPS 2019):
far from ImageNet, small conv-BN-ReLU networks trained from scratch match ImageNet transfer. The same big
architecture from random init at 224 px (:class:`~transferkit.strategies.ScratchClassifier`) sits at chance on a
few shots, so beating it says little. This one is what a practitioner writes without transfer: VGG-style blocks
(Simonyan & Zisserman, ICLR 2015) at the native size (28 px stays 28 px), the training set's own mean and std,
AdamW with a one-cycle schedule (Smith & Topin, 2017), label smoothing and random crops of a padded image, as in the
fast CIFAR-10 baselines (Page, "How to train your ResNet", 2018). The images are decoded once into memory.

The defaults were chosen on Fashion-MNIST and scikit-learn digits at 5/10/30 images per class, scored on held-out
images of the training pools, never a test split (bench/baselines.py --evaluate-on validation;
bench/results/baselines-tuning-*.json): widths 16-32-64 match 32-64-128 at a third of the cost; 200 steps match 300
(150 lose 1-2 points, 100 lose 3-4), and at most 50 epochs: the smallest tuned set (50 images) took 50, and on 16
images of 2 classes 50 epochs (50 steps) scored as 200 did in a fifth of the time (bench/results/baselines-tiny-*);
left-right flips cost 7 points on digits and 1 on Fashion-MNIST, so they are off; crops of +-1/8 of the side are as
good as none on average (better at 5 per class, slightly worse at 30).
Inputs are capped at 32 px (CIFAR's size): at 64 px every step takes about 5x longer.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from .._errors import TransferkitError
from .._progress import progress_bar
from .._utils import resolve_device
from ..backbones.small_cnn import conv_blocks
from ..data import ImageDataset, check_trainable
from ..data.native import channel_stats, decode, grey_if_grey, native_size
from ..features.extract import DEFAULT_MAX_BAD_FRACTION, check_bad_fraction
from ._base import TransferClassifier, as_dataset, class_values


class SeededDropout(nn.Dropout):
    """Dropout drawing its masks from ``generator`` when one is set (else from torch's global generator).

    Verdict folds train in parallel threads (:mod:`transferkit.jobs.baseline`); torch's global generator is shared by
    every thread, so only a generator of the model's own keeps a seed's fit the same whatever runs beside it.
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None:
            return super().forward(x)
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep.to(x.device, x.dtype) / (1 - self.p)


def init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of every conv and linear layer (Kaiming-uniform, a = sqrt(5)), from
    ``generator`` instead of the global one (see :class:`SeededDropout`)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)


class SmallCNN(nn.Module):
    """uint8 ``(B, C, H, W)`` → logits: normalise, 3 blocks of ``convs`` x (conv-BN-ReLU) + max-pool, global average
    pool, dropout, linear. The blocks have ``width``, 2x and 4x channels.

    A block pools only while its map is at least 8 px on each side, so 8 px digits still get three blocks.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, channels: int, n_classes: int, size: tuple[int, int], width: int = 32, convs: int = 2,
                 dropout: float = 0.2, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        self.n_classes = n_classes
        self.register_buffer("mean", torch.zeros(channels) if mean is None else mean.float())
        self.register_buffer("std", torch.ones(channels) if std is None else std.float())
        self.features = nn.Sequential(*(layer for block in conv_blocks(channels, min(size), width, convs)
                                        for layer in block))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), SeededDropout(dropout),
                                  nn.Linear(4 * width, n_classes))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255.0 - self.mean[:, None, None]) / self.std[:, None, None]

    def forward(self, x: torch.Tensor, normalised: bool = False) -> torch.Tensor:
        return self.head(self.features(x if normalised else self.normalise(x)))


def random_crop(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``(B, C, H, W)`` shifted by up to ``padding`` px (edges replicated), mirrored at random if ``flip``."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = nn.functional.pad(x, (padding,) * 4, mode="replicate")
        dy, dx = (torch.randint(0, 2 * padding + 1, (b,), generator=generator) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h))[:, :, None].to(x.device)
        cols = (dx[:, None] + torch.arange(w))[:, None, :].to(x.device)
        x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mirror = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


@contextlib.contextmanager
def cpu_threads(threads: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (None or a GPU: as they are), then restore the count."""
    before = torch.get_num_threads()
    if threads is None or device.type != "cpu" or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def planned_epochs(n: int, batch_size: int, steps: int, max_epochs: int) -> int:
    """Epochs of about ``steps`` optimizer steps over ``n`` images in batches of ``batch_size``, at most
    ``max_epochs``: the budget follows the data (16 images: 50 epochs of 1 step; 1,000: 4 epochs of 63)."""
    return min(max_epochs, math.ceil(steps / math.ceil(n / min(batch_size, n))))


#: epochs in a row the training set must stay fitted before :class:`SmallCNNClassifier` stops early
CONVERGED_EPOCHS = 3


def loss_floor(n_classes: int, label_smoothing: float) -> float:
    """The least mean cross-entropy with ``label_smoothing`` over ``n_classes``: the entropy of the smoothed target
    (0 without smoothing), reached only when every prediction equals it."""
    eps = label_smoothing
    if eps <= 0 or n_classes < 2:
        return 0.0
    top, rest = 1 - eps + eps / n_classes, eps / n_classes
    return float(-top * math.log(top) - (n_classes - 1) * rest * math.log(rest))


def one_cycle(total: int, warmup: float = 0.25) -> Callable[[int], float]:
    """Learning-rate factor of step ``t`` of ``total``: linear warm-up over ``warmup`` of them, then cosine to 0."""
    rise = max(1, round(warmup * total))

    def factor(t: int) -> float:
        if t < rise:
            return (t + 1) / rise
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - rise) / max(1, total - rise))))

    return factor


def adamw_steps(params: list[nn.Parameter], lr: float, weight_decay: float,
                schedule: Callable[[int], float]) -> Callable[[], None]:
    """One AdamW step of ``params`` from their ``.grad`` at ``lr * schedule(t)`` per call: ``torch.optim.AdamW`` with
    ``LambdaLR(schedule)``, through torch's functional ``torch.optim.adamw.adamw``. The first ``torch.optim`` optimizer
    of a process imports ``torch._dynamo`` (1.6-4 s holding the GIL: the folds beside it wait); this does not."""
    from torch.optim.adamw import adamw

    exp_avgs, exp_avg_sqs = ([torch.zeros_like(p, memory_format=torch.preserve_format) for p in params] for _ in range(2))
    counts = [torch.tensor(0.0) for _ in params]  # on the CPU, as AdamW keeps them

    @torch.no_grad()
    def step() -> None:
        grads = [p.grad for p in params]
        adamw(params, grads, exp_avgs, exp_avg_sqs, [], counts, amsgrad=False, beta1=0.9, beta2=0.999,  # type: ignore[arg-type]
              lr=lr * schedule(int(counts[0])), weight_decay=weight_decay, eps=1e-8, maximize=False)

    return step


class SmallCNNClassifier(TransferClassifier):
    """A small CNN from random init at the images' native resolution (the cheap baseline of the transfer verdict).

    Args:
        max_size: longest side of the input; larger images are scaled down to it (their median size, aspect kept).
            Smaller images keep their size. Raise it for photos whose detail matters (64 px: ~5x the time).
        width: channels of the first block; the next two have 2x and 4x.
        convs: conv-BN-ReLU layers per block (each block then max-pools while its map is >= 8 px).
        epochs: training epochs; None picks enough for about ``steps`` optimizer steps (at most ``max_epochs``).
        steps: optimizer steps aimed at when ``epochs`` is None: tiny sets get many epochs, large ones few.
        max_epochs: upper bound of the epochs chosen for ``steps``: 50, the most any tuned setting used (5 images
            per class of 10 classes); below ~50 images 200 steps would be 100-200 epochs of a loss long flat.
        converged_loss: stop early once, for :data:`CONVERGED_EPOCHS` epochs in a row, every training image was
            classified right and the epoch's mean loss stayed within this many nats of the least that label
            smoothing allows (:func:`loss_floor`); a train-only criterion (no held-out labels). Off (None) by
            default: 16 images of 2 classes are fitted within 14-22 of 50 epochs, near the peak learning rate, and
            stopping there (0.05) lost 10-16 points on held-out images; even stopping only after the rate had
            annealed to half its peak lost 3-5 (bench/README.md, ``baselines.py``). A speed-for-accuracy trade.
        batch_size: images per step (the whole set when it is smaller).
        lr: peak learning rate of the one-cycle schedule (AdamW).
        weight_decay, label_smoothing, dropout: regularisation.
        crop_padding: random-crop augmentation: shift by up to this fraction of the side (0: off).
        flip: also mirror images left-right at random (off: digits, letters and many textures are not symmetric).
        max_bad_fraction: fail when more training images than this fraction are unreadable.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        threads: torch CPU threads while training and predicting on the CPU (restored afterwards; None: torch's
            own count). 1 by default: these convolutions are too small to gain from a second thread, and on a
            shared 2-core machine two threads made a fit 10-30x slower (spinning OpenMP workers).
        num_workers: decoding processes.
        seed: seed of the initialisation, batches and augmentation; the same seed gives the same model.
        progress: show progress bars on stderr.

    Example:
        >>> clf = SmallCNNClassifier(seed=0).fit(tk.per_class(tk.load_fashion_mnist("train"), 30))
        >>> clf.fit_info_["input_size"], clf.score(tk.load_fashion_mnist("test"))
        ([28, 28], 0.74)
    """

    strategy_name = "small-cnn"

    def __init__(
        self,
        max_size: int = 32,
        width: int = 16,
        convs: int = 2,
        epochs: int | None = None,
        steps: int = 200,
        max_epochs: int = 50,
        converged_loss: float | None = None,
        batch_size: int = 16,
        lr: float = 3e-3,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.1,
        dropout: float = 0.2,
        crop_padding: float = 0.125,
        flip: bool = False,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        device: str = "auto",
        threads: int | None = 1,
        num_workers: int = 0,
        seed: int = 0,
        progress: bool = True,
    ):
        self.max_size = max_size
        self.width = width
        self.convs = convs
        self.epochs = epochs
        self.steps = steps
        self.max_epochs = max_epochs
        self.converged_loss = converged_loss
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.dropout = dropout
        self.crop_padding = crop_padding
        self.flip = flip
        self.max_bad_fraction = max_bad_fraction
        self.device = device
        self.threads = threads
        self.num_workers = num_workers
        self.seed = seed
        self.progress = progress

    @property
    def modality_(self) -> str:
        return "image"

    def _check_params(self) -> None:
        for name in ("max_size", "width", "steps", "max_epochs", "batch_size") + (("epochs",) if self.epochs else ()):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise TransferkitError(f"The {name!r} parameter of SmallCNNClassifier must be a positive integer. "
                                       f"Got {value!r} instead.")
        if self.converged_loss is not None and not self.converged_loss > 0:
            raise TransferkitError(f"converged_loss must be a positive number of nats, or None. Got "
                                   f"{self.converged_loss!r} instead.")
        if not 0 <= self.crop_padding < 0.5:
            raise TransferkitError(f"crop_padding must be a fraction of the side in [0, 0.5). Got {self.crop_padding!r} "
                                   f"instead.")

    def fit(self, X: Any, y: Any = None) -> SmallCNNClassifier:
        """Decode the training images once, then train the CNN on them.

        Args:
            X, y: labeled images (an :class:`ImageDataset`, an array ``(N, H, W[, C])`` + y, or paths + y).

        Raises:
            DataError: no labels, a single class, or too many unreadable images.
        """
        plan = self._plan(X, y)
        with cpu_threads(self.threads, plan["device"]):
            history = self._train(plan)
        return self._fitted(plan, history)

    def _plan(self, X: Any, y: Any) -> dict[str, Any]:
        """Everything a fit trains from: the decoded images and labels, the initialised model, its generator and the
        step budget (also what :func:`~transferkit.strategies.small_cnn_folds.fit_side_by_side` trains)."""
        start = time.perf_counter()
        self._check_params()
        ds = as_dataset(X, y, modality="image")
        check_trainable(ds)
        size = native_size(ds, self.max_size, self.seed)
        images, index, skipped = decode(ds, size, 3, self.num_workers, self.progress and len(ds) > 2000)
        check_bad_fraction(len(skipped), len(ds), self.max_bad_fraction, ds.name or "the dataset")
        assert ds.labels is not None  # check_trainable
        check_trainable(ImageDataset(index, ds.labels[index], ds.classes, ds.name))
        images = grey_if_grey(images)
        mean, std = channel_stats(images)
        # every random draw comes from this generator, not torch's global one: folds may train in parallel threads
        generator = torch.Generator().manual_seed(self.seed)
        model = SmallCNN(images.shape[1], len(ds.classes), size, self.width, self.convs, self.dropout, mean, std)
        init_parameters(model, generator)
        n = len(index)
        batch = min(self.batch_size, n)
        steps_per_epoch = math.ceil(n / batch)  # split into equal batches: no 1-image remainder step
        epochs = self.epochs or planned_epochs(n, batch, self.steps, self.max_epochs)
        return {"start": start, "ds": ds, "y": y, "size": size, "images": images, "labels": torch.as_tensor(
            ds.labels[index]), "skipped": skipped, "model": model, "generator": generator, "batch": batch,
            "steps_per_epoch": steps_per_epoch, "epochs": epochs, "device": resolve_device(self.device)}

    def _fitted(self, plan: dict[str, Any], history: list[dict[str, float]]) -> SmallCNNClassifier:
        model, ds, device, size = plan["model"], plan["ds"], plan["device"], plan["size"]
        for module in model.modules():
            if isinstance(module, SeededDropout):
                module.generator = None  # trained: a fitted model holds no generator (copies, pickles stay plain)
        self.model_ = model.cpu().eval()
        self.input_size_ = size
        self.channels_ = channels = plan["images"].shape[1]
        self.head_classes_ = np.arange(len(ds.classes))
        self.classes_ = class_values(ds, plan["y"])
        epochs, n = plan["epochs"], len(plan["labels"])
        self.fit_info_ = {
            "strategy": self.strategy_name, "train_images": n, "modality": "image",
            "input_size": list(size), "channels": channels, "mean": model.mean.tolist(), "std": model.std.tolist(),
            "epochs": len(history), "planned_epochs": epochs, "steps": len(history) * plan["steps_per_epoch"],
            "converged_at": len(history) if len(history) < epochs else None, "batch_size": plan["batch"],
            "parameters": sum(p.numel() for p in model.parameters()), "device": device.type,
            "skipped": [list(s) for s in ds.skipped + plan["skipped"]], "history": history,
            "seconds": round(time.perf_counter() - plan["start"], 3),
        }
        return self

    def _train(self, plan: dict[str, Any]) -> list[dict[str, float]]:
        """Train ``plan``'s model (:meth:`_plan`) in place; its epoch history."""
        model, images, labels, device, generator = (plan[k] for k in ("model", "images", "labels", "device", "generator"))
        epochs, steps_per_epoch = plan["epochs"], plan["steps_per_epoch"]
        for module in model.modules():
            if isinstance(module, SeededDropout):
                module.generator = generator
        # channels-last: oneDNN's fast path on CPU (about 1.4x here), cuDNN's on recent GPUs
        model.to(device).to(memory_format=torch.channels_last).train()
        x_all = images.to(device)  # uint8: normalised a batch at a time
        y_all = labels.to(device)
        padding = round(self.crop_padding * min(images.shape[2:]))
        params = list(model.parameters())
        step = adamw_steps(params, self.lr, self.weight_decay, one_cycle(epochs * steps_per_epoch))
        loss_fn = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        floor = loss_floor(model.n_classes, self.label_smoothing)
        history: list[dict[str, float]] = []
        fitted_epochs = 0  # consecutive epochs with the training set fitted (see ``converged_loss``)
        with progress_bar(epochs, "small-cnn", self.progress) as advance:
            for epoch in range(epochs):
                order = torch.randperm(len(y_all), generator=generator).to(device)
                total, right = 0.0, 0
                for idx in torch.tensor_split(order, steps_per_epoch):
                    batch = random_crop(model.normalise(x_all[idx]), padding, self.flip, generator)
                    logits = model(batch.contiguous(memory_format=torch.channels_last), normalised=True)
                    loss = loss_fn(logits, y_all[idx])
                    for p in params:
                        p.grad = None
                    loss.backward()
                    step()
                    total += float(loss.detach()) * len(idx)
                    right += int((logits.argmax(1) == y_all[idx]).sum())
                history.append({"epoch": epoch + 1, "loss": round(total / len(y_all), 4),
                                "train_accuracy": round(right / len(y_all), 4)})
                advance(loss=f"{total / len(y_all):.3f}")
                fitted = (self.converged_loss is not None and right == len(y_all)
                          and total / len(y_all) <= floor + self.converged_loss)
                fitted_epochs = fitted_epochs + 1 if fitted else 0
                if fitted_epochs >= CONVERGED_EPOCHS:
                    break
        return history

    @torch.inference_mode()
    def _predict_proba_dataset(self, ds: ImageDataset) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        images, index, skipped = decode(ds, self.input_size_, self.channels_, self.num_workers,
                                        self.progress and len(ds) > 2000)
        device = resolve_device(self.device)
        model = self.model_.to(device).eval()
        with cpu_threads(self.threads, device):
            probas = [model(chunk.to(device)).float().softmax(-1).cpu() for chunk in images.split(512)]
        model.cpu()
        proba = torch.cat(probas).numpy() if probas else np.zeros((0, len(self.classes_)), dtype=np.float32)
        return proba, index, skipped

    def save(self, directory: str | os.PathLike[str], **extra: Any) -> Any:
        """Not supported: the small CNN is the verdict's baseline, not a model to keep."""
        raise TransferkitError("SmallCNNClassifier is a from-scratch baseline for the transfer verdict and is not saved "
                               "as a bundle; save the transfer model, or use ScratchClassifier for a savable one.")
