"""Scene prediction engines: `holistic` (REST: the whole scene in one pass), `windowed` (REST's large-window
mode) and `sliding` (the classic crop baseline).

Every process of a spatial group runs the same `ScenePredictor.predict` call on the same scene. Each reads only
the pixels it needs from disk; only the first rank of the group receives results and hands them to a sink
(e.g. the GeoTIFF writers of `rest-hf predict`), block by block:

- `holistic`: each rank reads its tile of the scene, the parallelized model predicts the whole scene at once,
  each rank takes the argmax of its tile, and only the labels (and, when asked for, the probabilities) go to
  rank 0, one tile at a time. P processes give the labels of 1 process (exact spatial parallelism).
- `windowed`: windows of `window` px overlapping by the fraction `overlap`, in row-major order; each window is
  predicted holistically by all processes of the group; rank 0 blends the logits of overlapping windows with
  a feathered weight (exactly 1 where a pixel has one window) and writes rows as soon as no later window
  touches them, so it holds one band of windows (K x window x W floats), never K x H x W.
- `sliding`: the mmseg-style baseline: crops of `window` px with stride `window * (1 - overlap)` (the last
  crop shifted inward), logits averaged uniformly. Crops are independent, so with several processes each
  rank predicts whole crops on its own (round robin, the model is not split) and sends their logits to
  rank 0: that is how the baseline scales, and it keeps the comparison with REST honest.

Invalid pixels (nodata, NaN, alpha 0, outside the scene) are zero after normalisation, get the label raster's
nodata value and NaN probabilities, and are never counted. A scene (or window) smaller than the model or the
grid accepts is padded with zeros after normalisation (invalid pixels), predicted and cropped.

Failures that one rank sees (a read that fails half way, a write error on rank 0) are agreed on by every rank
of the group before the next collective, so all ranks raise the same `SceneError` and move on together.

This module builds the predictor and runs one scene; the strategies and their shared steps are in
`strategies`, the checks of work, memory and values in `checks`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from ..io import RasterSource, label_dtype
from ..spatial import SpatialContext, TileRule
from .checks import input_notes
from .layout import stride_for
from .runtime import SceneError, open_source
from .sinks import ArraySink, CountingSink, PredictionSink, SceneResult
from .strategies import SceneRun

__all__ = ["MODES", "ScenePredictor"]

MODES = ("holistic", "windowed", "sliding")
DEFAULT_WINDOW = {"windowed": 2048, "sliding": 512}
DEFAULT_OVERLAP = {"windowed": 0.25, "sliding": 1 / 3}


class ScenePredictor:
    """Predicts whole scenes with one of the three engines, on one process or a spatial group.

    Args:
        model: A `RestForSemanticSegmentation`, moved to `device` and put in eval mode. For `holistic` and
            `windowed` on several processes the predictor parallelizes its own copy of the model's modules
            (`parallelize_spatial`; the copy shares the parameters and buffers, so no weight is copied) and
            leaves `model` itself plain; a model the caller already parallelized for `ctx` is used as it is.
            `sliding` needs a plain model.
        image_processor: Gives the per-band normalisation (`RestImageProcessor` or alike).
        ctx: The spatial context (`SpatialContext.init(...)`, made by the caller: the predictor creates no
            process group); None: one process.
        mode: `"holistic"` (default), `"windowed"` or `"sliding"`.
        window: Window (crop) side in px; `windowed` rounds it up to the model's alignment. Defaults: 2048
            (windowed), 512 (sliding).
        overlap: Fraction of a window shared with its neighbour, in [0, 1). Defaults: 0.25 (windowed), 1/3
            (sliding).
        device: Where the model runs.
        dtype: `torch.float32`, or `torch.bfloat16` / `torch.float16` for autocast.
        spatial_mode: `"exact"` (default) or `"regional"` (see `parallelize_spatial`).

    Example:
        >>> predictor = ScenePredictor(model, processor)
        >>> with RasterSource("scene.tif") as source:
        ...     result = predictor.predict(source)          # result.labels: (H, W) on rank 0
    """

    def __init__(
        self,
        model: Any,
        image_processor: Any,
        ctx: SpatialContext | None = None,
        *,
        mode: str = "holistic",
        window: int | None = None,
        overlap: float | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        spatial_mode: str = "exact",
    ) -> None:
        from ..spatial.parallelize import parallelize_spatial

        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.ctx = ctx if ctx is not None else SpatialContext.trivial()
        self.mode = mode
        self.config = config = model.config
        self.processor = image_processor
        self.device = torch.device(device)
        self.dtype = dtype
        self.num_classes = int(config.num_labels)
        self.label_dtype_name, self.nodata = label_dtype(self.num_classes)
        self.torch_label_dtype = torch.uint8 if self.label_dtype_name == "uint8" else torch.int32
        self.tile_rule = TileRule.from_config(config)
        self.alignment = self.tile_rule.alignment
        bands = (
            len(getattr(image_processor, "image_mean", []))
            if getattr(image_processor, "do_normalize", True)
            else None
        )
        if bands is not None and bands != config.num_channels:
            raise ValueError(
                f"the image processor normalises {bands} bands but the model expects {config.num_channels}; "
                "give the processor one mean and std per model band"
            )

        if mode == "windowed" or mode == "sliding":
            size = int(window if window is not None else DEFAULT_WINDOW[mode])
            if size < 1:
                raise ValueError(f"window must be a positive number of pixels, got {size}")
            if mode == "windowed":
                size = math.ceil(size / self.alignment) * self.alignment
            self.window = size
            self.overlap = float(overlap if overlap is not None else DEFAULT_OVERLAP[mode])
            self.stride = stride_for(size, self.overlap)
        else:
            self.window, self.overlap, self.stride = None, None, None

        spatial = getattr(model, "spatial_context", None)
        model = model.eval().to(self.device)
        # The plain model of a scene too small to split, run by one process; None where it is not needed or
        # the caller passed an already parallelized model (such scenes are then padded to the grid's size).
        self.plain_model = None
        if mode == "sliding":
            if spatial is not None and spatial.size > 1:
                raise ValueError(
                    "sliding mode predicts whole crops on each process: pass a model that is not parallelized"
                )
        elif self.ctx.size > 1 and spatial is None:
            self.plain_model = model
            model = parallelize_spatial(_sharing_copy(model), self.ctx, spatial_mode)
        elif spatial is not None and spatial is not self.ctx and spatial.size > 1:
            raise ValueError("the model is parallelized for another spatial context than the predictor's")
        self.model = model

    # ------------------------------------------------------------------ public
    def predict(
        self,
        source: RasterSource | str | Path,
        sink: PredictionSink | None = None,
        *,
        probabilities: bool = False,
        progress: bool = False,
    ) -> SceneResult:
        """Predict one scene; every rank of the spatial group calls this with the same scene.

        Args:
            source: An open `RasterSource` (bands already selected) or a path (all bands).
            sink: Receives the finished blocks on rank 0; None assembles `result.labels` (and
                `result.probabilities`) in memory on rank 0.
            probabilities: Also produce per-class probabilities (softmax of the blended logits).
            progress: Show a progress bar over windows (pass True on rank 0 only).

        Raises:
            SceneError: On every rank alike: wrong band count, no valid pixel, a failed read, a sink error.
            FatalError: A forward pass failed on this rank while others wait in a collective.
        """
        if not isinstance(source, RasterSource):
            with open_source(source, scope=self.ctx) as opened:
                return self.predict(opened, sink, probabilities=probabilities, progress=progress)
        if source.count != self.config.num_channels:
            raise SceneError(
                f"{source.path} has {source.count} band{'s' if source.count != 1 else ''} but the model expects "
                f"{self.config.num_channels}; choose {self.config.num_channels} with --bands (e.g. --bands "
                f"{','.join(str(i + 1) for i in range(self.config.num_channels))})"
            )
        start = time.perf_counter()
        result = SceneResult(str(source.path), source.height, source.width, self.mode, self.ctx.grid)
        root = self.ctx.rank == 0
        array_sink = None
        if sink is None and root:
            array_sink = sink = ArraySink(
                source.height, source.width, self.num_classes, self.nodata, probabilities
            )
        stats = CountingSink(sink, self.num_classes) if root else None
        run = SceneRun(self, source, stats, probabilities, progress, result)
        {"holistic": run.holistic, "windowed": run.windowed, "sliding": run.sliding}[self.mode]()
        if root:
            result.histogram = stats.histogram
            result.valid_pixels = stats.valid_pixels
        result.notes.extend(input_notes(result))
        if array_sink is not None:
            result.labels, result.probabilities = array_sink.labels, array_sink.probabilities
        result.seconds = time.perf_counter() - start
        return result


def _sharing_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model`'s modules that shares its parameters and buffers (no tensor is copied): the one that
    `parallelize_spatial` swaps modules of, so that the caller's model stays the plain single-process one."""
    import copy

    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)
