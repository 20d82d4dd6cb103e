"""Choosing what to transfer, above the strategies: rank backbones, race them, choose a strategy.

| module | what it decides | how |
|---|---|---|
| ``rank`` | which backbone and layer | a transferability score on frozen features (:mod:`transferkit.transferability`) |
| ``race`` | which backbone, when it will be fine-tuned | short cross-validated fine-tunes, successive halving |
| ``auto`` | feature extraction, partial or full fine-tuning | labels per class, domain shift, LogME per layer, a check |

These train or extract with the strategies and backbones, so they live above them; the score maths they read stay in
:mod:`transferkit.transferability`, which trains nothing.
"""

from .auto import AutoDecision, choose_strategy
from .race import race
from .rank import rank_backbones

__all__ = ["AutoDecision", "choose_strategy", "race", "rank_backbones"]
