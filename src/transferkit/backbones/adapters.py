"""Parameter-efficient fine-tuning of transformer text backbones: LoRA adapters through the ``peft`` library.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022): each adapted projection becomes
``W x + (alpha / r) B A x`` with the pretrained ``W`` fixed and only the low-rank ``A`` (r x d) and ``B``
(d x r, zero-initialised, so training starts from the pretrained model) learning. Following the paper, the
attention query and value projections are adapted (``query``/``value`` in BERT and MiniLM, ``q_lin``/``v_lin`` in
DistilBERT, ``q_proj``/``v_proj`` elsewhere).

The adapters sit inside the backbone's usual layer groups, so the fine-tuning schedules (head first, gradual
unfreezing, per-group learning rates) apply to them unchanged; the pretrained weights are the backbone's
``fixed_parameters``, which no stage unfreezes and the optimizer never sees. After training the adapters are
merged into the weights (``merge_and_unload``): the fitted backbone is a plain transformer again, so its bundle is
the usual safetensors file, loads without ``peft``, and reuses as ``bundle:DIR``. Prompt tuning, the other
method, is :mod:`transferkit.backbones.prompt_tuning`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .._errors import BackboneError, TransferkitError
from .._extras import require
from ._base import Backbone

PEFT_METHODS = ("lora", "prompt-tuning")
DEFAULT_LORA_RANK = 8
LORA_DROPOUT = 0.1
# (query, value) leaf names of the attention projections, by model family
LORA_TARGETS = (("query", "value"), ("q_lin", "v_lin"), ("q_proj", "v_proj"))


def _peft() -> Any:
    return require("peft", "peft", "`peft`", error=BackboneError)


def lora_target_modules(model: nn.Module) -> list[str]:
    """Leaf names of the query and value projections of ``model``'s attention layers."""
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for pair in LORA_TARGETS:
        if all(leaf in leaves for leaf in pair):
            return list(pair)
    raise BackboneError(
        f"Cannot find the attention query/value projections of {type(model).__name__} (looked for "
        f"{', '.join('/'.join(p) for p in LORA_TARGETS)}); `peft='lora'` supports BERT-family encoders."
    )


class LoraAdapters:
    """LoRA adapters injected into a text backbone in place; :meth:`merge` folds them into its weights.

    Args:
        backbone: an ``hf:``/packaged transformer :class:`~transferkit.backbones.TextBackbone` (changed in place).
        rank: ``r``; ``alpha`` is ``2 * rank`` (so ``alpha / r = 2`` whatever the rank).
        dropout: dropout on the adapter input.

    Raises:
        TransferkitError: the backbone is not a transformer text encoder.
    """

    def __init__(self, backbone: Backbone, rank: int = DEFAULT_LORA_RANK, dropout: float = LORA_DROPOUT):
        model = getattr(backbone.trunk, "model", None)
        if backbone.modality != "text" or not hasattr(model, "config"):
            raise TransferkitError(f"`peft='lora'` adapts transformer text encoders (hf:<model>, "
                                   f"packaged:all-minilm-l6-v2). Got {backbone.spec} ({backbone.modality}); fine-tune "
                                   "it without `peft`.")
        if not isinstance(rank, int) or rank < 1:
            raise TransferkitError(f"lora_rank must be a positive integer. Got {rank!r} instead.")
        peft = _peft()
        assert model is not None
        self.backbone = backbone
        self.backbone_parameters = sum(p.numel() for p in backbone.trunk.parameters())
        targets = lora_target_modules(model)
        config = peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout, target_modules=targets,
                                 bias="none")
        self._tuner = peft.LoraModel(model, config, "default")  # injects into ``model`` in place
        adapter = {n for n, _ in backbone.trunk.named_parameters() if ".lora_" in n}
        backbone.fixed_parameters = {n for n, _ in backbone.trunk.named_parameters()} - adapter
        for name, p in backbone.trunk.named_parameters():
            p.requires_grad_(name in adapter)
        self.trained_parameters = sum(p.numel() for n, p in backbone.trunk.named_parameters() if n in adapter)
        self.report: dict[str, Any] = {
            "method": "lora", "rank": rank, "alpha": 2 * rank, "dropout": dropout, "target_modules": targets,
            "adapter_parameters": self.trained_parameters,
            "backbone_parameters": self.backbone_parameters, "merged": False,
        }

    def merge(self) -> dict[str, Any]:
        """Fold ``B A`` into the pretrained weights and remove the adapters; returns the report."""
        trunk: Any = self.backbone.trunk
        trunk.model = self._tuner.merge_and_unload()
        self.backbone.fixed_parameters = set()
        for p in trunk.parameters():
            p.requires_grad_(True)
        self.report["merged"] = True
        return self.report

    def finish(self) -> dict[str, Any]:
        """After training: :meth:`merge` (the fitted backbone is a plain transformer)."""
        return self.merge()
