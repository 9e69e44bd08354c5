"""Whole-scene, windowed and sliding-window prediction engines (see `engine` for what each does).

Example:
    >>> from rest_hf.inference import ScenePredictor
    >>> predictor = ScenePredictor(model, processor, ctx, mode="holistic")
    >>> result = predictor.predict("scene.tif")  # result.labels on rank 0
"""

from .engine import (
    MODES,
    ArraySink,
    FatalError,
    PredictionSink,
    SceneError,
    ScenePredictor,
    SceneResult,
    agreed,
    open_source,
)
from .layout import feather_weights, padded_size, stride_for, window_grid, window_starts

__all__ = [
    "MODES",
    "ArraySink",
    "FatalError",
    "PredictionSink",
    "SceneError",
    "ScenePredictor",
    "SceneResult",
    "agreed",
    "feather_weights",
    "open_source",
    "padded_size",
    "stride_for",
    "window_grid",
    "window_starts",
]
