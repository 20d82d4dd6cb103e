"""transferkit: reuse a pretrained model on a new task that has little labeled data.

Example:
    >>> import transferkit as tk
    >>> data = tk.load_embedded()
    >>> train, val = tk.stratified_split(data, 0.25, seed=0)
    >>> clf = tk.FeatureExtractionClassifier("packaged:efficientnet_lite0").fit(train)
    >>> tk.evaluate(clf, val)["accuracy"]
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    BackboneError,
    BundleError,
    DataError,
    LicenceError,
    NotFittedError,
    OfflineError,
    TransferkitError,
)
from ._version import __version__

# The public API is imported lazily: `import transferkit` (and the CLI, which imports it first) stays light, and
# a command loads only the modules it uses (torch, scikit-learn, timm and torchvision cost seconds each).
if TYPE_CHECKING:
    from .backbones import Backbone, Preprocessing, WeightsInfo, create_backbone, list_backbones
    from .bundle import load_bundle, save_bundle
    from .curve import CurveConfig, learning_curve
    from .data import (
        AudioDataset,
        ImageDataset,
        MultiTaskDataset,
        TextDataset,
        drop_unreadable,
        from_arrays,
        from_audio_folder,
        from_csv,
        from_folder,
        from_task_labels,
        from_texts,
        from_waveforms,
        load_embedded,
        load_fashion_mnist,
        multitask_split,
        open_dataset,
        per_class,
        read_multitask_table,
        read_text_table,
        stratified_split,
    )
    from .evaluation import evaluate
    from .export import OnnxClassifier, export_onnx
    from .features import FeatureCache, extract_features
    from .heads import make_head
    from .jobs.distill import DistillConfig, distill
    from .selection import choose_strategy, rank_backbones
    from .strategies import (
        STRATEGIES,
        FeatureExtractionClassifier,
        FineTuneClassifier,
        ScratchClassifier,
        SmallCNNClassifier,
        TfidfClassifier,
        ZeroShotClassifier,
    )
    from .verdict import Verdict, transfer_verdict

_EXPORTS = {  # public name -> the module that defines it, imported on first use (PEP 562)
    "Backbone": ".backbones",
    "Preprocessing": ".backbones",
    "WeightsInfo": ".backbones",
    "create_backbone": ".backbones",
    "list_backbones": ".backbones",
    "load_bundle": ".bundle",
    "save_bundle": ".bundle",
    "CurveConfig": ".curve",
    "learning_curve": ".curve",
    "AudioDataset": ".data",
    "ImageDataset": ".data",
    "MultiTaskDataset": ".data",
    "TextDataset": ".data",
    "drop_unreadable": ".data",
    "from_arrays": ".data",
    "from_audio_folder": ".data",
    "from_csv": ".data",
    "from_folder": ".data",
    "from_task_labels": ".data",
    "from_texts": ".data",
    "from_waveforms": ".data",
    "load_embedded": ".data",
    "load_fashion_mnist": ".data",
    "multitask_split": ".data",
    "open_dataset": ".data",
    "per_class": ".data",
    "read_multitask_table": ".data",
    "read_text_table": ".data",
    "stratified_split": ".data",
    "evaluate": ".evaluation",
    "OnnxClassifier": ".export",
    "export_onnx": ".export",
    "FeatureCache": ".features",
    "extract_features": ".features",
    "make_head": ".heads",
    "DistillConfig": ".jobs.distill",
    "distill": ".jobs.distill",
    "choose_strategy": ".selection",
    "rank_backbones": ".selection",
    "STRATEGIES": ".strategies",
    "FeatureExtractionClassifier": ".strategies",
    "FineTuneClassifier": ".strategies",
    "ScratchClassifier": ".strategies",
    "SmallCNNClassifier": ".strategies",
    "TfidfClassifier": ".strategies",
    "ZeroShotClassifier": ".strategies",
    "Verdict": ".verdict",
    "transfer_verdict": ".verdict",
}

__all__ = [
    "STRATEGIES", "Backbone", "BackboneError", "BundleError", "LicenceError", "CurveConfig", "DataError", "FeatureCache",
    "FeatureExtractionClassifier", "FineTuneClassifier", "ImageDataset", "NotFittedError", "OfflineError",
    "ZeroShotClassifier", "SmallCNNClassifier", "TfidfClassifier",
    "Preprocessing", "ScratchClassifier", "TransferkitError", "WeightsInfo", "__version__", "create_backbone",
    "evaluate", "extract_features", "from_arrays", "from_csv", "from_folder", "list_backbones", "load_bundle",
    "load_embedded", "load_fashion_mnist", "make_head", "open_dataset", "per_class", "save_bundle",
    "drop_unreadable", "stratified_split", "AudioDataset", "from_audio_folder", "from_waveforms", "TextDataset", "from_texts", "read_text_table", "Verdict", "choose_strategy", "learning_curve", "rank_backbones", "transfer_verdict",
    "MultiTaskDataset", "from_task_labels", "multitask_split", "read_multitask_table", "OnnxClassifier", "export_onnx",
    "DistillConfig", "distill",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
