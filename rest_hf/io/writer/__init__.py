"""Georeferenced outputs written window by window, made visible atomically.

`atomic` holds the shared machinery (temporary file next to the output, windowed writes, commit with optional COG
translation, abort) and `check_output_path`; `labels` the class-label raster (`LabelWriter`, `write_labels`);
`probabilities` the per-class probability raster (`ProbabilityWriter`, `write_probabilities`).
"""

from .atomic import check_output_path
from .labels import LabelWriter, label_dtype, write_labels
from .probabilities import ProbabilityWriter, float16_supported, write_probabilities

__all__ = [
    "LabelWriter",
    "ProbabilityWriter",
    "check_output_path",
    "float16_supported",
    "label_dtype",
    "write_labels",
    "write_probabilities",
]
