"""Domain adaptation: a labelled source, an unlabelled target of a different distribution (one file per method).

Feature-level methods (work on cached features of any modality): :class:`CORAL` (closed-form correlation
alignment), :class:`SelfTrainingClassifier` (class-balanced pseudo-labels in rounds). Measures: :func:`domain_gap`
(proxy A-distance and MMD) and label-free model selection (:func:`snd`, :func:`mean_entropy`).
"""

from .adabn import adapt_batchnorm
from .coral import CORAL, coral_loss
from .gap import domain_gap, mmd, proxy_a_distance
from .self_training import SelfTrainingClassifier
from .validation import information_maximization, mean_entropy, snd

__all__ = ["CORAL", "adapt_batchnorm", "SelfTrainingClassifier", "coral_loss", "domain_gap", "information_maximization", "mean_entropy", "mmd", "proxy_a_distance",
           "snd"]
