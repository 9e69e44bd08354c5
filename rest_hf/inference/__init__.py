"""Whole-scene, windowed and sliding-window prediction engines (see `engine` for what each does).

Example:
    >>> from rest_hf.inference import ScenePredictor
    >>> predictor = ScenePredictor(model, processor, ctx, mode="holistic")
    >>> result = predictor.predict("scene.tif")  # result.labels on rank 0
"""

from .engine import MODES, ScenePredictor
from .layout import feather_weights, stride_for, window_grid, window_starts
from .outputs import SceneWriter
from .runtime import FatalError, SceneError, open_source
from .sinks import ArraySink, BandAccumulator, CountingSink, PredictionSink, SceneResult

__all__ = [
    "MODES",
    "ArraySink",
    "BandAccumulator",
    "CountingSink",
    "FatalError",
    "PredictionSink",
    "SceneError",
    "ScenePredictor",
    "SceneResult",
    "SceneWriter",
    "feather_weights",
    "open_source",
    "stride_for",
    "window_grid",
    "window_starts",
]
