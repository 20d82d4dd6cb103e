"""``small-cnn:<C>x<H>x<W>[-w<width>]``: a small CNN from random init at a native resolution, as a backbone.

The architecture of the verdict's from-scratch baseline (:class:`transferkit.strategies.small_cnn.SmallCNN`:
VGG-style blocks, Simonyan & Zisserman, ICLR 2015; the small-network-from-scratch case of Raghu et al., NeurIPS
2019) behind the one :class:`Backbone` contract: three blocks of two conv-BN-ReLU layers with ``width``, 2x and 4x
channels, each max-pooled while its map is at least 8 px, then global average pooling (``pre_logits``: 4 x width
features). Wrapped so, a small CNN is a student ``transferkit distill`` trains like any fine-tuned backbone, and
its bundle is a normal one that ``predict``, ``evaluate``, ``report`` and ``export`` read. The spec holds what
rebuilds it (channels, height, width, block width); the data's mean and std go into its preprocessing, which the
bundle keeps. There are no pretrained weights: its licence is a random initialisation's.
"""

from __future__ import annotations

import re

from torch import nn

from .._errors import BackboneError
from ._base import Backbone
from ._registry import SourceEntry, register_source
from .licences import RANDOM_INIT, LicenceSource
from .weights import Preprocessing, WeightsInfo

DEFAULT_WIDTH = 16
BLOCKS = 3
CONVS_PER_BLOCK = 2
_SPEC = re.compile(r"(\d+)x(\d+)x(\d+)(?:-w(\d+))?")


def parse(name: str) -> tuple[int, int, int, int]:
    """``'1x28x28-w32'`` → ``(channels, height, width, block width)``; one-line error naming the form."""
    match = _SPEC.fullmatch(name.strip())
    values = tuple(int(v) for v in match.groups(str(DEFAULT_WIDTH))) if match else ()
    if not match or not 1 <= values[0] <= 4 or min(values[1:]) < 1 or max(values[1:3]) > 512:
        raise BackboneError(f"small-cnn spec must be small-cnn:<channels>x<height>x<width>[-w<block width>] (1-4 "
                            f"channels, sides up to 512 px), e.g. small-cnn:1x28x28 or small-cnn:3x32x32-w32. Got "
                            f"small-cnn:{name!r} instead.")
    return values  # type: ignore[return-value]


def spec_for(channels: int, size: tuple[int, int], width: int = DEFAULT_WIDTH) -> str:
    """The spec of a small CNN for ``channels`` x ``size`` images."""
    return f"small-cnn:{channels}x{size[0]}x{size[1]}" + (f"-w{width}" if width != DEFAULT_WIDTH else "")


def conv_blocks(channels: int, side: int, width: int, convs: int = CONVS_PER_BLOCK) -> list[list[nn.Module]]:
    """The layers of each of the :data:`BLOCKS` blocks: ``convs`` x (conv-BN-ReLU) with ``width``, 2x and 4x
    channels, then a 2x max-pool while the map is at least 8 px (so 8 px digits still get three blocks). Shared by
    this backbone and the verdict's :class:`~transferkit.strategies.small_cnn.SmallCNN`."""
    blocks: list[list[nn.Module]] = []
    c_in = channels
    for b in range(BLOCKS):
        c_out = width * 2 ** b
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        if side >= 8:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        blocks.append(layers)
    return blocks


def _trunk(channels: int, side: int, width: int) -> tuple[nn.Module, dict[str, int]]:
    trunk = nn.Sequential()
    for b, layers in enumerate(conv_blocks(channels, side, width)):
        trunk.add_module(f"block{b + 1}", nn.Sequential(*layers))
    trunk.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    return trunk, {f"block{b + 1}": width * 2 ** b for b in range(BLOCKS)}


def create(name: str, *, pretrained: bool = True, **kwargs: object) -> Backbone:
    """A randomly initialised small CNN (``pretrained`` changes nothing: there are no pretrained weights)."""
    if kwargs:
        raise BackboneError(f"small-cnn backbones take no options. Got {', '.join(f'`{k}`' for k in kwargs)}; "
                            "drop them.")
    channels, height, width, block_width = parse(name)
    trunk, dims = _trunk(channels, min(height, width), block_width)
    spec = spec_for(channels, (height, width), block_width)
    last = dims.pop(f"block{BLOCKS}")
    return Backbone(
        trunk, spec=spec, arch_spec=spec,
        preprocessing=Preprocessing(input_size=(channels, height, width), mean=(0.5,) * channels,
                                    std=(0.25,) * channels, interpolation="bilinear", crop_pct=1.0),
        weights=WeightsInfo(source="small-cnn", pretrained=False, licence=RANDOM_INIT, origin="random init"),
        num_features=last, feature_layers=dims,
        groups=[(f"block{b + 1}", [f"block{b + 1}"]) for b in range(BLOCKS)],
    )


def list_entries() -> list[SourceEntry]:
    return [SourceEntry("small-cnn:<C>x<H>x<W>[-w<width>]", RANDOM_INIT, True, False,
                        "a small CNN from random init at a native size (distill's small student)", "image")]


def known_licence(name: str) -> tuple[tuple[LicenceSource, ...], str]:
    parse(name)
    return (LicenceSource(f"small-cnn:{name}", RANDOM_INIT),), "image"


register_source("small-cnn", create, list_entries, lambda n: bool(_SPEC.fullmatch(n)),
                "a small CNN from random init at the images' own size", reads=lambda _n: "image",
                licence=known_licence)
