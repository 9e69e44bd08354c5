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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..distributed import agree, gather_objects, one_line, send_tiles_to_root
from ..io import RasterSource, label_dtype, normalize_with_processor
from ..io.reader import IMPLAUSIBLE
from ..spatial import SpatialContext, TileRule
from .budget import check_memory, check_work
from .layout import feather_weights, stride_for, window_grid
from .runtime import FatalError, SceneError, agreed, autocast, open_source, released_memory
from .sinks import ArraySink, BandAccumulator, CountingSink, PredictionSink, SceneResult

__all__ = ["MODES", "ScenePredictor"]

MODES = ("holistic", "windowed", "sliding")
LARGEST_PLAUSIBLE_INPUT = (
    1e4  # |normalised value| beyond which the scene is on another scale than the model's
)
DEFAULT_WINDOW = {"windowed": 2048, "sliding": 512}
DEFAULT_OVERLAP = {"windowed": 0.25, "sliding": 1 / 3}


class ScenePredictor:
    """Predicts whole scenes with one of the three engines, on one process or a spatial group.

    Args:
        model: A `RestForSemanticSegmentation`. For `holistic` and `windowed` on several processes it is
            parallelized in place with `parallelize_spatial(model, ctx, spatial_mode)` (unless it already is,
            for this `ctx`); `sliding` needs the plain model.
        image_processor: Gives the per-band normalisation (`RestImageProcessor` or alike).
        ctx: The spatial context (`SpatialContext.init(...)`); None: one process.
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
        self.ctx = ctx if ctx is not None else SpatialContext.init()
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
            self.plain_model = _sharing_copy(model)
            parallelize_spatial(model, self.ctx, spatial_mode)
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
        engine = {"holistic": self._holistic, "windowed": self._windowed, "sliding": self._sliding}[self.mode]
        engine(source, stats, probabilities, progress, result)
        if root:
            result.histogram = stats.histogram
            result.valid_pixels = stats.valid_pixels
        if result.implausible_pixels:
            result.notes.append(
                f"{result.implausible_pixels:,} pixels hold infinite values or values beyond +-{IMPLAUSIBLE:g} "
                "(an untagged fill value such as -3.4e38?): treated as nodata; tag the nodata value "
                "(gdal_edit.py -a_nodata) to make it explicit"
            )
        if result.largest_input > LARGEST_PLAUSIBLE_INPUT:
            result.notes.append(
                f"normalised input values reach {result.largest_input:.3g} (over {LARGEST_PLAUSIBLE_INPUT:g} "
                "standard deviations from the model's mean): is the scene on the scale the model was trained "
                "on, and are the --bands right?"
            )
        if array_sink is not None:
            result.labels, result.probabilities = array_sink.labels, array_sink.probabilities
        result.seconds = time.perf_counter() - start
        return result

    # ---------------------------------------------------------------- steps
    def _read(
        self, source: RasterSource, box: tuple[int, int, int, int] | None, result: SceneResult
    ) -> tuple[np.ndarray | None, np.ndarray | None, list[int]]:
        """Read and normalise this rank's window (top, left, height, width; None: nothing this round); agree
        on failures, and count (in `result`) the values taken as invalid because no sensor measures them.

        Returns the normalised (C, h, w) pixels, the (h, w) valid mask and every rank's valid-pixel count.
        """
        failure, pixels, valid, odd, largest = None, None, None, 0, 0.0
        if box is not None:
            try:
                data, valid = source.read_masked(*box)
                odd = _implausible_pixels(data, source.nodatavals)
                pixels = normalize_with_processor(data, self.processor, valid_mask=valid)
                largest = float(np.abs(pixels).max()) if pixels.size else 0.0
            except Exception as error:
                failure = one_line(error)
                if str(source.path) not in failure:
                    failure = f"{source.path}: {failure}"
        count = 0 if valid is None else int(valid.sum())
        answers = gather_objects((failure, count, odd, largest), self.ctx)
        failure = next((a[0] for a in answers if a[0] is not None), None)
        if failure is not None:
            raise SceneError(failure)
        result.implausible_pixels += sum(a[2] for a in answers)
        result.largest_input = max([result.largest_input] + [a[3] for a in answers])
        return pixels, valid, [a[1] for a in answers]

    def _finite(
        self, logits: torch.Tensor | None, valid: np.ndarray | None, source: RasterSource
    ) -> str | None:
        """None, or why the logits of this rank's valid pixels are not finite (then nothing may be written)."""
        if logits is None or valid is None:
            return None
        mask = torch.from_numpy(np.ascontiguousarray(valid)).to(logits.device)
        if bool(torch.isfinite(logits[:, : mask.shape[0], : mask.shape[1]][:, mask]).all()):
            return None
        return (
            f"{source.path}: the model's output is not finite (NaN or infinite logits); the scene's values "
            "are far outside the model's normalisation: check its nodata value, scale and --bands"
        )

    def _forward(
        self, pixels: np.ndarray, source: RasterSource, collective: bool, model: Any = None
    ) -> torch.Tensor:
        """(K, h, w) float32 logits of one (C, h, w) input on this process's device (`model`: the plain model
        for a scene one process predicts alone; default: `self.model`)."""
        try:
            inputs = torch.from_numpy(pixels)[None].to(self.device)
            with torch.inference_mode(), autocast(self.device, self.dtype):
                return (model or self.model)(pixel_values=inputs).logits[0].float()
        except Exception as error:
            message = f"{source.path}: the forward pass failed: {one_line(error)}"
            if collective and self.ctx.size > 1:
                raise FatalError(message) from error
            raise SceneError(message) from error

    def _labels(self, logits: torch.Tensor, valid: torch.Tensor, probabilities: bool) -> list[torch.Tensor]:
        """[labels (h, w) with nodata where invalid] (+ [probabilities (K, h, w), NaN where invalid])."""
        labels = logits.argmax(dim=0).to(self.torch_label_dtype)
        labels[~valid] = self.nodata
        if not probabilities:
            return [labels]
        probs = torch.softmax(logits, dim=0)
        probs[:, ~valid] = float("nan")
        return [labels, probs]

    def _finish_rows(self, stats: CountingSink, probabilities: bool) -> Callable[..., None]:
        """Turn blended logit sums of finished rows into labels (and probabilities) for the sink."""

        def finish(top: int, logit_sum: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor) -> None:
            logits = logit_sum / weight.clamp_min(torch.finfo(torch.float32).tiny)
            tensors = self._labels(logits, valid, probabilities)
            stats.write(
                top,
                0,
                tensors[0].numpy(),
                valid.numpy(),
                tensors[1].numpy() if probabilities else None,
            )

        return finish

    def _check_work(self, source: RasterSource, windows: int, padded: tuple[int, int], hint: str) -> None:
        """Refuse windows that would compute the scene many times over (the same decision on every rank).

        A window smaller than the model's alignment still costs one aligned window (Swin pads every stage to
        whole attention windows; ConvNeXt needs its total stride)."""
        computed = (max(padded[0], self.alignment), max(padded[1], self.alignment))
        try:
            check_work(
                source.path, self.mode, windows, self.window, computed, (source.height, source.width), hint
            )
        except ValueError as error:
            raise SceneError(str(error)) from None

    def _check_memory(self, source: RasterSource, tile: tuple[int, int], here: bool = True) -> None:
        """Refuse (on every rank alike) a tile that cannot fit in this process's memory, before reading it."""
        agreed(
            lambda: check_memory(source.path, self.config, tile, self.ctx.size, self.device), self.ctx, here
        )

    def _no_valid_pixels(self, source: RasterSource) -> SceneError:
        return SceneError(
            f"{source.path} has no valid pixels (every pixel is nodata, NaN, masked or transparent); nothing was "
            "written"
        )

    def _padding_note(
        self,
        result: SceneResult,
        size: tuple[int, int],
        padded: tuple[int, int],
        what: str,
        grid: bool = True,
    ) -> None:
        if padded != size:
            result.predicted_size = padded
            need = (
                f"the model and the {self.ctx.grid[0]}x{self.ctx.grid[1]} grid need"
                if grid
                else "the model needs"
            )
            result.notes.append(
                f"{what} {size[0]} x {size[1]} px padded to {padded[0]} x {padded[1]} px ({need} it), then cropped"
            )

    # -------------------------------------------------------------- engines
    def _holistic(self, source, stats, probabilities, progress, result) -> None:
        ctx = self.ctx
        height, width = source.height, source.width
        padded = self.tile_rule.padded_size(height, width, ctx.grid)
        alone = self.tile_rule.padded_size(height, width)
        if padded != alone and self.plain_model is not None:
            # Too small to split: padding it to the grid's size would change what global attention, pyramid
            # pooling and resizing see, so the labels would depend on the grid. One process needs no grid.
            self._holistic_alone(source, stats, probabilities, result, alone)
            return
        self._padding_note(result, (height, width), padded, "scene")
        part = ctx.partition(*padded, self.tile_rule)
        boxes = part.boxes()
        box = part.box()
        self._check_memory(source, (box.height, box.width))
        pixels, valid, counts = self._read(source, (box.top, box.left, box.height, box.width), result)
        if sum(counts) == 0:
            raise self._no_valid_pixels(source)
        with released_memory(self.device):
            logits = self._forward(pixels, source, collective=True)
            del pixels
            failure = agree(self._finite(logits, valid, source), ctx)
            if failure is not None:
                raise SceneError(failure)
            tensors = self._labels(logits, torch.from_numpy(valid).to(self.device), probabilities)
            del logits

            def specs(index: int) -> list[tuple[tuple[int, ...], torch.dtype]]:
                b = boxes[index]
                shapes = [((b.height, b.width), tensors[0].dtype)]
                if probabilities:
                    shapes.append(((self.num_classes, b.height, b.width), tensors[1].dtype))
                return shapes

            def emit(index: int, received: list[torch.Tensor]) -> None:
                b = boxes[index]
                rows, cols = min(b.bottom, height) - b.top, min(b.right, width) - b.left
                if rows <= 0 or cols <= 0:
                    return  # a tile entirely in the padding
                labels = received[0][:rows, :cols].cpu().numpy()
                probs = received[1][:, :rows, :cols].cpu().numpy() if probabilities else None
                stats.write(b.top, b.left, labels, labels != self.nodata, probs)

            failure = send_tiles_to_root(tensors, specs, ctx.global_ranks, ctx.rank, emit, self.device)
        failure = agree(failure, ctx)
        if failure is not None:
            raise SceneError(failure)

    def _holistic_alone(self, source, stats, probabilities, result, padded: tuple[int, int]) -> None:
        """The whole scene on rank 0 with the plain model (the labels of one process); the others wait."""
        ctx = self.ctx
        height, width = source.height, source.width
        self._padding_note(result, (height, width), padded, "scene", grid=False)
        result.notes.append(
            f"scene too small to split over the {ctx.grid[0]}x{ctx.grid[1]} grid: predicted by one process "
            "(the labels of any process count)"
        )
        root = ctx.rank == 0
        self._check_memory(source, padded, here=root)
        pixels, valid, counts = self._read(source, (0, 0, *padded) if root else None, result)
        if sum(counts) == 0:
            raise self._no_valid_pixels(source)
        failure = None
        if root:
            try:
                with released_memory(self.device):
                    logits = self._forward(pixels, source, collective=False, model=self.plain_model)
                    failure = self._finite(logits, valid, source)
                    if failure is None:
                        tensors = self._labels(logits, torch.from_numpy(valid).to(self.device), probabilities)
                        labels = tensors[0][:height, :width].cpu().numpy()
                        probs = tensors[1][:, :height, :width].cpu().numpy() if probabilities else None
                        stats.write(0, 0, labels, labels != self.nodata, probs)
            except Exception as error:
                failure = str(error) if isinstance(error, SceneError) else one_line(error)
        failure = agree(failure, ctx)
        if failure is not None:
            raise SceneError(failure)

    def _windowed(self, source, stats, probabilities, progress, result) -> None:
        ctx = self.ctx
        height, width = source.height, source.width
        # Never the grid's size: the windows, hence the labels, are the same on any grid.
        sides = (self.window, self.window)
        strides = (stride_for(sides[0], self.overlap), stride_for(sides[1], self.overlap))
        row_starts, col_starts, windows = window_grid(height, width, sides, strides)
        if len(windows) == 1:  # the window holds the whole scene: that is holistic prediction
            self._holistic(source, stats, probabilities, progress, result)
            return
        size = (windows[0].height, windows[0].width)
        padded = self.tile_rule.padded_size(*size, ctx.grid)
        if padded != self.tile_rule.padded_size(*size):
            need = self.tile_rule.padded_size(1, 1, ctx.grid)
            raise SceneError(
                f"{source.path}: windows of {size[0]} x {size[1]} px are too small to split over the "
                f"{ctx.grid[0]}x{ctx.grid[1]} grid (it needs {need[0]} x {need[1]} px); use --window "
                f"{max(need)} or more, or fewer processes per scene (--grid)"
            )
        self._padding_note(result, size, padded, "window")
        self._check_work(source, len(windows), padded, "use a larger --window or a smaller --overlap")
        part = ctx.partition(*padded, self.tile_rule)
        boxes, box = part.boxes(), part.box()
        self._check_memory(source, (box.height, box.width))
        result.windows = len(windows)
        accumulator = (
            BandAccumulator(self.num_classes, height, width, self._finish_rows(stats, probabilities))
            if ctx.rank == 0
            else None
        )
        any_valid = False
        bar = _progress(len(windows), source, progress and len(windows) > 1)
        for window in windows:
            mine = (window.top + box.top, window.left + box.left, box.height, box.width)
            pixels, valid, counts = self._read(source, mine, result)
            failure = None
            if sum(counts) > 0:  # a window with no valid pixel is skipped (its pixels are all nodata)
                any_valid = True
                with released_memory(self.device):
                    logits = self._forward(pixels, source, collective=True)
                    del pixels
                    failure = agree(self._finite(logits, valid, source), ctx)
                    if failure is not None:
                        bar.close()
                        raise SceneError(failure)
                    weight = feather_weights(row_starts, col_starts, window.row, window.col, size)
                    tensors = [logits, torch.from_numpy(valid).to(self.device, torch.uint8)]

                    def specs(i: int) -> list[tuple[tuple[int, ...], torch.dtype]]:
                        b = boxes[i]
                        return [
                            ((self.num_classes, b.height, b.width), torch.float32),
                            ((b.height, b.width), torch.uint8),
                        ]

                    def emit(i: int, received: list[torch.Tensor], window=window, weight=weight) -> None:
                        b = boxes[i]
                        rows, cols = min(b.bottom, size[0]) - b.top, min(b.right, size[1]) - b.left
                        if rows <= 0 or cols <= 0:
                            return
                        accumulator.add(
                            window.top + b.top,
                            window.left + b.left,
                            received[0][:, :rows, :cols].cpu(),
                            weight[b.top : b.top + rows, b.left : b.left + cols],
                            received[1][:rows, :cols].cpu().bool(),
                        )

                    failure = send_tiles_to_root(
                        tensors, specs, ctx.global_ranks, ctx.rank, emit, self.device
                    )
                    del logits, tensors
            last_in_row = window.col == len(col_starts) - 1
            if accumulator is not None and last_in_row and failure is None:
                following = row_starts[window.row + 1] if window.row + 1 < len(row_starts) else height
                failure = _try(lambda following=following: accumulator.flush(following))
            failure = agree(failure, ctx)
            if failure is not None:
                bar.close()
                raise SceneError(failure)
            bar.update(1)
        bar.close()
        if not any_valid:
            raise self._no_valid_pixels(source)

    def _sliding(self, source, stats, probabilities, progress, result) -> None:
        ctx = self.ctx
        height, width = source.height, source.width
        _, _, crops = window_grid(height, width, (self.window, self.window), (self.stride, self.stride))
        size = (crops[0].height, crops[0].width)
        padded = self.tile_rule.padded_size(*size)
        self._padding_note(result, size, padded, "crop" if len(crops) > 1 else "scene")
        smallest = max(self.alignment, self.tile_rule.min_input)
        self._check_work(
            source,
            len(crops),
            padded,
            f"use --window {smallest} or more (the model's alignment) or a smaller --overlap",
        )
        self._check_memory(source, padded)
        result.windows = len(crops)
        accumulator = (
            BandAccumulator(self.num_classes, height, width, self._finish_rows(stats, probabilities))
            if ctx.rank == 0
            else None
        )
        ones = torch.ones(size)
        any_valid = False
        rounds = math.ceil(len(crops) / ctx.size)
        bar = _progress(len(crops), source, progress and len(crops) > 1)
        for round_index in range(rounds):
            first = round_index * ctx.size
            crop = crops[first + ctx.rank] if first + ctx.rank < len(crops) else None
            box = (crop.top, crop.left, *padded) if crop is not None else None
            pixels, valid, counts = self._read(source, box, result)
            sending = [c > 0 for c in counts]
            any_valid = any_valid or any(sending)
            tensors, failure = [], None
            if sending[ctx.rank]:
                try:
                    logits = self._forward(pixels, source, collective=False)[:, : size[0], : size[1]]
                    failure = self._finite(logits, valid[: size[0], : size[1]], source)
                    tensors = [
                        logits,
                        torch.from_numpy(valid[: size[0], : size[1]]).to(self.device, torch.uint8),
                    ]
                except SceneError as error:
                    failure = str(error)
            failure = agree(failure, ctx)
            if failure is not None:
                bar.close()
                raise SceneError(failure)
            del pixels

            def specs(i: int, sending=sending) -> list[tuple[tuple[int, ...], torch.dtype]]:
                if not sending[i]:
                    return []
                return [((self.num_classes, *size), torch.float32), (size, torch.uint8)]

            def emit(i: int, received: list[torch.Tensor], first=first) -> None:
                where = crops[first + i]
                accumulator.add(where.top, where.left, received[0].cpu(), ones, received[1].cpu().bool())

            with released_memory(self.device):
                if any(sending):
                    failure = send_tiles_to_root(
                        tensors, specs, ctx.global_ranks, ctx.rank, emit, self.device
                    )
                del tensors
            if accumulator is not None and failure is None:
                following = crops[first + ctx.size].top if first + ctx.size < len(crops) else height
                failure = _try(lambda following=following: accumulator.flush(following))
            failure = agree(failure, ctx)
            if failure is not None:
                bar.close()
                raise SceneError(failure)
            bar.update(min(ctx.size, len(crops) - first))
        bar.close()
        if not any_valid:
            raise self._no_valid_pixels(source)


def _sharing_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model`'s modules that shares its parameters and buffers (no tensor is copied), so that it
    stays the plain single-process model after `parallelize_spatial` swaps the original's modules."""
    import copy

    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)


def _implausible_pixels(data: np.ndarray, nodata: tuple[float | None, ...]) -> int:
    """Pixels where a float band holds +-inf or a value beyond +-IMPLAUSIBLE that is not its nodata value."""
    if not np.issubdtype(data.dtype, np.floating):
        return 0
    odd = np.zeros(data.shape[1:], dtype=bool)
    with np.errstate(invalid="ignore"):
        for band, value in zip(data, nodata, strict=True):
            hit = np.abs(band) > IMPLAUSIBLE
            if value is not None and not math.isnan(value):
                hit &= band != value
            odd |= hit
    return int(odd.sum())


def _try(step: Callable[[], None]) -> str | None:
    try:
        step()
    except Exception as error:
        return one_line(error)
    return None


def _progress(total: int, source: RasterSource, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    name = Path(str(source.path)).name
    return tqdm(total=total, desc=name, unit="window", leave=False, disable=not enabled, dynamic_ncols=True)
