"""Export: a bundle as one ONNX graph (preprocessed inputs → class probabilities), optionally int8, and running
such a file with onnxruntime as ``predict`` and ``evaluate`` run a bundle.

Above :mod:`transferkit.strategies` and :mod:`transferkit.bundle` (it loads bundles and traces their models),
below :mod:`transferkit.jobs`. onnx and onnxruntime are imported only when used (``pip install
'transferkit[onnx]'``).
"""

from .graph import EXPORTABLE_HEADS, build_graph
from .runtime import OnnxClassifier, load_model, tokenizer_folder
from .writer import FP32_TOLERANCE, INT8_MAX_ACCURACY_DROP, INT8_MIN_AGREEMENT, export_onnx

__all__ = ["EXPORTABLE_HEADS", "FP32_TOLERANCE", "INT8_MAX_ACCURACY_DROP", "INT8_MIN_AGREEMENT", "OnnxClassifier",
           "build_graph", "export_onnx", "load_model", "tokenizer_folder"]
