"""Prompt tuning of transformer text backbones: trained virtual tokens in front of every text (``peft``).

Lester, Al-Rfou & Constant, "The Power of Scale for Parameter-Efficient Prompt Tuning" (EMNLP 2021): the encoder
stays frozen; ``N`` "soft prompt" vectors, in the space of the word embeddings, are prepended to every input and
trained by backpropagation through the frozen network, together with our linear head. The prompt is configured
by peft's ``PromptTuningConfig`` (task type ``FEATURE_EXTRACTION``) and initialised by peft's ``PromptEmbedding``:
from the embeddings of randomly sampled vocabulary tokens (the default; the paper found it far better than
random vectors), or from the tokens of an init text (its token ids, special tokens included, repeated or cut to
``N``).

The prompt runs inside the backbone's own trunk (:class:`~transferkit.backbones.hf.HFTextTrunk`): word
embeddings of the text, the prompt before them, the attention mask extended with ones, as peft's
``PeftModelForFeatureExtraction`` does (checked equal in the tests). Not wrapping the model in peft's
``PeftModel`` keeps the backbone's parameter names, so its bundle is the usual safetensors file plus one tensor,
``backbone.prompt``, and loads without ``peft``. The virtual tokens' own outputs are not pooled (see
:mod:`transferkit.backbones.hf`). They take positions too: ``max_length`` of the texts shrinks when the model's
positions cannot hold both.

While the prompt trains, it is the backbone's only layer group (it sits below every layer, so unfreezing "from
the top" or "the top K groups" means nothing for it); every pretrained weight is a ``fixed_parameter`` that no
stage unfreezes and the optimizer never sees. The frozen encoder's dropout stays active while training, as under
peft. Afterwards the usual groups come back, the prompt first, and the backbone is an ordinary one that runs with
``N`` virtual tokens.
"""

from __future__ import annotations

import tempfile
from typing import Any, cast

from .._errors import TransferkitError
from ._base import Backbone

DEFAULT_PROMPT_TOKENS = 20


def _peft() -> Any:
    from .adapters import _peft as load

    return load()


class PromptTuning:
    """A trainable prompt of ``num_tokens`` virtual tokens added to a text backbone in place.

    Args:
        backbone: an ``hf:``/packaged transformer :class:`~transferkit.backbones.TextBackbone` (changed in place).
        num_tokens: virtual tokens (``prompt_tokens`` of :class:`~transferkit.FineTuneClassifier`).
        init_text: start from the embeddings of this text's tokens instead of sampled vocabulary tokens.

    Raises:
        TransferkitError: the backbone is not a transformer text encoder, already has a prompt, or has no room
            for ``num_tokens`` more positions.

    Example:
        >>> tuning = PromptTuning(create_backbone("packaged:all-minilm-l6-v2"), num_tokens=20)
        >>> tuning.report["prompt_parameters"]
        7680
    """

    def __init__(self, backbone: Backbone, num_tokens: int = DEFAULT_PROMPT_TOKENS, init_text: str | None = None):
        from .hf import HFTextTrunk, add_virtual_tokens

        trunk: Any = backbone.trunk
        encoder: Any = getattr(backbone, "encoder", None)
        if backbone.modality != "text" or not isinstance(trunk, HFTextTrunk):
            raise TransferkitError(f"`peft='prompt-tuning'` adapts transformer text encoders (hf:<model>, "
                                   f"packaged:all-minilm-l6-v2). Got {backbone.spec} ({backbone.modality}); fine-tune "
                                   "it without `peft`.")
        if init_text is not None and (not isinstance(init_text, str) or not init_text.strip()):
            raise TransferkitError(f"`init_text` must be a non-empty text. Got {init_text!r} instead.")
        peft = _peft()
        model: Any = trunk.model
        prompt = add_virtual_tokens(cast(Any, backbone), num_tokens)  # validates num_tokens, shrinks max_length if needed
        with tempfile.TemporaryDirectory(prefix="transferkit-prompt-") as tokenizer_dir:
            if init_text is not None:  # peft reads the tokenizer from a directory: ours, whatever the source
                encoder.tokenizer.save_pretrained(tokenizer_dir)
            config = peft.PromptTuningConfig(
                task_type="FEATURE_EXTRACTION", num_virtual_tokens=num_tokens, token_dim=prompt.shape[1],
                num_transformer_submodules=1, num_attention_heads=int(model.config.num_attention_heads),
                num_layers=int(model.config.num_hidden_layers),
                prompt_tuning_init="TEXT" if init_text is not None else "SAMPLE_VOCAB",
                prompt_tuning_init_text=init_text, tokenizer_name_or_path=tokenizer_dir if init_text else None,
            )
            initial = peft.PromptEmbedding(config, model.get_input_embeddings())
        prompt.data.copy_(initial.embedding.weight.detach().to(prompt.dtype))
        self.backbone = backbone
        self._groups = backbone._group_names  # the prompt first, then the usual groups: restored by finish()
        backbone._group_names = [("prompt", ["prompt"])]
        backbone.fixed_parameters = {n for n, _ in trunk.named_parameters()} - {"prompt"}
        for name, p in trunk.named_parameters():
            p.requires_grad_(name == "prompt")
        self.trained_parameters = int(prompt.numel())
        self.report: dict[str, Any] = {
            "method": "prompt-tuning", "num_virtual_tokens": num_tokens,
            "init": "text" if init_text is not None else "sampled vocabulary", "init_text": init_text,
            "prompt_parameters": self.trained_parameters,
            "backbone_parameters": sum(p.numel() for n, p in trunk.named_parameters() if n != "prompt"),
            "max_length": encoder.max_length,
            "pooled": "text tokens only (the virtual tokens' outputs are not pooled)",
        }

    def finish(self) -> dict[str, Any]:
        """Give the backbone its usual layer groups back (the prompt first) with every weight trainable again, so
        it is reused like any other (``bundle:DIR``); returns the report."""
        self.backbone._group_names = self._groups
        self.backbone.fixed_parameters = set()
        for p in self.backbone.trunk.parameters():
            p.requires_grad_(True)
        return self.report
