"""Datasets: folders, CSVs, arrays, Fashion-MNIST and the embedded subset; splits; safe image reading."""

from ._dataset import BadImage, ImageDataset, check_trainable, drop_unreadable
from ._images import array_to_image, open_image, to_mode
from .audio import AudioDataset, BadAudio, from_audio_files, from_audio_folder, from_waveforms
from .loader import backbone_batches
from .multitask import MISSING, MultiTaskDataset, from_task_labels, multitask_split, read_multitask_table
from .sources import from_arrays, from_csv, from_folder, load_embedded, load_fashion_mnist, open_dataset
from .split import per_class, select_classes, stratified_split
from .text import TextDataset, from_texts, read_text_table
from .transforms import build_transform

__all__ = [
    "BadImage", "ImageDataset", "array_to_image", "backbone_batches", "build_transform", "check_trainable", "drop_unreadable", "from_arrays",
    "from_csv", "from_folder", "load_embedded", "load_fashion_mnist", "open_dataset", "open_image", "per_class",
    "select_classes", "stratified_split", "TextDataset", "from_texts", "read_text_table", "to_mode",
    "AudioDataset", "BadAudio", "from_audio_files", "from_audio_folder", "from_waveforms",
    "MISSING", "MultiTaskDataset", "from_task_labels", "multitask_split", "read_multitask_table",
]
