"""transferkit: reuse a pretrained model on a new task that has little labeled data.

Example:
    >>> import transferkit as tk
    >>> data = tk.load_embedded()
    >>> train, val = tk.stratified_split(data, 0.25, seed=0)
    >>> clf = tk.FeatureExtractionClassifier("packaged:efficientnet_lite0").fit(train)
    >>> tk.evaluate(clf, val)["accuracy"]
"""

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
