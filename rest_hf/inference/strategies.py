"""The three ways a `ScenePredictor` goes through a scene (see `engine` for what each does), and the steps they
share: read and normalise a window, run the forward pass, turn logits into labels, and send the finished
tiles to rank 0 with the one transport of `rest_hf.distributed.send_tiles_to_root`.

A `SceneRun` lives for one `ScenePredictor.predict` call. Every rank of the spatial group runs the same
strategy on the same scene; every failure that decides whether the scene goes on is agreed on by all of
them (`agree_or_raise`), so all raise the same `SceneError` and move on together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..distributed import Box, agree_or_raise, attempt, gather_objects, one_line, send_tiles_to_root
from ..io import RasterSource, normalize_with_processor
from ..spatial import TileBox
from .checks import implausible_pixels, no_valid_pixels, non_finite_logits, refuse_memory, refuse_work
from .layout import feather_weights, stride_for, window_grid
from .runtime import FatalError, SceneError, autocast, released_memory
from .sinks import BandAccumulator, CountingSink, SceneResult

__all__ = ["SceneRun"]


class SceneRun:
    """One scene through one of the strategies, on every rank of the predictor's spatial group.

    Args:
        predictor: The `ScenePredictor` (its models, options and spatial context).
        source: The open scene, bands selected.
        stats: The sink on rank 0 (counting classes on the way); None elsewhere.
        probabilities: Whether probabilities are produced too.
        progress: Whether to show a bar over windows.
        result: What happened, filled in on the way.
    """

    def __init__(
        self,
        predictor: Any,
        source: RasterSource,
        stats: CountingSink | None,
        probabilities: bool,
        progress: bool,
        result: SceneResult,
    ) -> None:
        self.p, self.ctx, self.source, self.stats = predictor, predictor.ctx, source, stats
        self.probabilities, self.progress, self.result = probabilities, progress, result
        self.height, self.width = source.height, source.width

    # ------------------------------------------------------------------------------------------ steps
    def agree(self, failure: str | None) -> None:
        """Collective: every rank raises `SceneError` when any rank brought a failure."""
        agree_or_raise(failure, self.ctx, SceneError)

    def to_root(
        self,
        tiles: list[torch.Tensor],
        boxes: list[Box | None],
        kinds: list[tuple[tuple[int, ...], torch.dtype]],
        deliver: Any,
        bounds: tuple[int, int] | None = None,
    ) -> str | None:
        """Collective: every rank's tiles to rank 0 of the spatial group (`send_tiles_to_root`); on rank 0
        the first error `deliver` raised, as one line, else None."""
        ctx = self.ctx
        return send_tiles_to_root(
            tiles, boxes, kinds, ctx.global_ranks, ctx.rank, deliver, self.p.device, bounds
        )

    def read(self, box: Box | None) -> tuple[np.ndarray | None, np.ndarray | None, list[int]]:
        """Read and normalise this rank's window (top, left, height, width; None: nothing this round); agree
        on failures, and count (in the result) the values taken as invalid because no sensor measures them.

        Returns the normalised (C, h, w) pixels, the (h, w) valid mask and every rank's valid-pixel count.
        """
        source = self.source
        failure, pixels, valid, odd, largest = None, None, None, 0, 0.0
        if box is not None:
            try:
                data, valid = source.read_masked(*box)
                odd = implausible_pixels(data, source.nodatavals)
                pixels = normalize_with_processor(data, self.p.processor, valid_mask=valid)
                largest = float(np.abs(pixels).max()) if pixels.size else 0.0
            except Exception as error:
                failure = one_line(error)
                if str(source.path) not in failure:
                    failure = f"{source.path}: {failure}"
        count = 0 if valid is None else int(valid.sum())
        answers = gather_objects((failure, count, odd, largest), self.ctx)
        failure = next((a[0] for a in answers if a[0] is not None), None)
        if failure is not None:  # every rank has the same answers: no further agreement needed
            raise SceneError(failure)
        self.result.implausible_pixels += sum(a[2] for a in answers)
        self.result.largest_input = max([self.result.largest_input] + [a[3] for a in answers])
        return pixels, valid, [a[1] for a in answers]

    def forward(self, pixels: np.ndarray, collective: bool, model: Any = None) -> torch.Tensor:
        """(K, h, w) float32 logits of one (C, h, w) input on this process's device (`model`: the plain model
        for a scene one process predicts alone; default: the predictor's)."""
        p = self.p
        try:
            inputs = torch.from_numpy(pixels)[None].to(p.device)
            with torch.inference_mode(), autocast(p.device, p.dtype):
                return (model or p.model)(pixel_values=inputs).logits[0].float()
        except Exception as error:
            message = f"{self.source.path}: the forward pass failed: {one_line(error)}"
            if collective and self.ctx.size > 1:
                raise FatalError(message) from error
            raise SceneError(message) from error

    def labels(self, logits: torch.Tensor, valid: torch.Tensor) -> list[torch.Tensor]:
        """[labels (h, w) with nodata where invalid] (+ [probabilities (K, h, w), NaN where invalid])."""
        labels = logits.argmax(dim=0).to(self.p.torch_label_dtype)
        labels[~valid] = self.p.nodata
        if not self.probabilities:
            return [labels]
        probs = torch.softmax(logits, dim=0)
        probs[:, ~valid] = float("nan")
        return [labels, probs]

    def write_labels(self, top: int, left: int, tiles: list[torch.Tensor]) -> None:
        """Hand finished labels (and probabilities) to the sink on rank 0."""
        labels = tiles[0].numpy()
        probs = tiles[1].numpy() if self.probabilities else None
        self.stats.write(top, left, labels, labels != self.p.nodata, probs)

    def accumulator(self) -> BandAccumulator | None:
        """The band of blended logits on rank 0 (None elsewhere): finished rows become labels for the sink."""
        if self.ctx.rank != 0:
            return None

        def finish(top: int, logit_sum: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor) -> None:
            logits = logit_sum / weight.clamp_min(torch.finfo(torch.float32).tiny)
            tensors = self.labels(logits, valid)
            probs = tensors[1].numpy() if self.probabilities else None
            self.stats.write(top, 0, tensors[0].numpy(), valid.numpy(), probs)

        return BandAccumulator(self.p.num_classes, self.height, self.width, finish)

    def padding_note(
        self, size: tuple[int, int], padded: tuple[int, int], what: str, grid: bool = True
    ) -> None:
        if padded != size:
            self.result.predicted_size = padded
            rows, cols = self.ctx.grid
            need = f"the model and the {rows}x{cols} grid need" if grid else "the model needs"
            self.result.notes.append(
                f"{what} {size[0]} x {size[1]} px padded to {padded[0]} x {padded[1]} px ({need} it), then cropped"
            )

    # ------------------------------------------------------------------------------------- strategies
    def holistic(self) -> None:
        """The whole scene at once: each rank its tile, the parallelized model, labels to rank 0 tile by tile."""
        p, ctx = self.p, self.ctx
        padded = p.tile_rule.padded_size(self.height, self.width, ctx.grid)
        alone = p.tile_rule.padded_size(self.height, self.width)
        if padded != alone and p.plain_model is not None:
            # Too small to split: padding it to the grid's size would change what global attention, pyramid
            # pooling and resizing see, so the labels would depend on the grid. One process needs no grid.
            self.holistic_alone(alone)
            return
        self.padding_note((self.height, self.width), padded, "scene")
        part = ctx.partition(*padded, p.tile_rule)
        boxes, box = part.boxes(), part.box()
        refuse_memory(self.source.path, p.config, (box.height, box.width), ctx, p.device)
        pixels, valid, counts = self.read(_box(box))
        if sum(counts) == 0:
            raise no_valid_pixels(self.source.path)
        with released_memory(p.device):
            logits = self.forward(pixels, collective=True)
            del pixels
            self.agree(non_finite_logits(logits, valid, self.source.path))
            tiles = self.labels(logits, torch.from_numpy(valid).to(p.device))
            del logits
            kinds = [((), tiles[0].dtype)] + (
                [((p.num_classes,), tiles[1].dtype)] if self.probabilities else []
            )
            failure = self.to_root(
                tiles, [_box(b) for b in boxes], kinds, self.write_labels, bounds=(self.height, self.width)
            )
        self.agree(failure)

    def holistic_alone(self, padded: tuple[int, int]) -> None:
        """The whole scene on rank 0 with the plain model (the labels of one process); the others wait."""
        p, ctx = self.p, self.ctx
        height, width = self.height, self.width
        self.padding_note((height, width), padded, "scene", grid=False)
        self.result.notes.append(
            f"scene too small to split over the {ctx.grid[0]}x{ctx.grid[1]} grid: predicted by one process "
            "(the labels of any process count)"
        )
        root = ctx.rank == 0
        refuse_memory(self.source.path, p.config, padded, ctx, p.device, here=root)
        pixels, valid, counts = self.read((0, 0, *padded) if root else None)
        if sum(counts) == 0:
            raise no_valid_pixels(self.source.path)

        def predict_here() -> None:
            with released_memory(p.device):
                logits = self.forward(pixels, collective=False, model=p.plain_model)
                failure = non_finite_logits(logits, valid, self.source.path)
                if failure is not None:
                    raise SceneError(failure)
                tiles = self.labels(logits, torch.from_numpy(valid).to(p.device))
                self.write_labels(0, 0, [t[..., :height, :width].cpu() for t in tiles])

        self.agree(attempt(predict_here) if root else None)

    def windowed(self) -> None:
        """Windows in row-major order, each predicted holistically by the group, blended on rank 0."""
        p, ctx = self.p, self.ctx
        # Never the grid's size: the windows, hence the labels, are the same on any grid.
        sides = (p.window, p.window)
        strides = (stride_for(sides[0], p.overlap), stride_for(sides[1], p.overlap))
        row_starts, col_starts, windows = window_grid(self.height, self.width, sides, strides)
        if len(windows) == 1:  # the window holds the whole scene: that is holistic prediction
            self.holistic()
            return
        size = (windows[0].height, windows[0].width)
        padded = p.tile_rule.padded_size(*size, ctx.grid)
        if padded != p.tile_rule.padded_size(*size):
            need = p.tile_rule.padded_size(1, 1, ctx.grid)
            raise SceneError(
                f"{self.source.path}: windows of {size[0]} x {size[1]} px are too small to split over the "
                f"{ctx.grid[0]}x{ctx.grid[1]} grid (it needs {need[0]} x {need[1]} px); use --window "
                f"{max(need)} or more, or fewer processes per scene (--grid)"
            )
        self.padding_note(size, padded, "window")
        self._refuse_work(len(windows), padded, "use a larger --window or a smaller --overlap")
        part = ctx.partition(*padded, p.tile_rule)
        boxes, box = part.boxes(), part.box()
        refuse_memory(self.source.path, p.config, (box.height, box.width), ctx, p.device)
        self.result.windows = len(windows)
        accumulator = self.accumulator()
        kinds = [((p.num_classes,), torch.float32), ((), torch.uint8)]
        any_valid = False
        with _progress(len(windows), self.source, self.progress) as bar:
            for window in windows:
                pixels, valid, counts = self.read(
                    (window.top + box.top, window.left + box.left, *_box(box)[2:])
                )
                failure = None
                if sum(counts) > 0:  # a window with no valid pixel is skipped (its pixels are all nodata)
                    any_valid = True
                    with released_memory(p.device):
                        logits = self.forward(pixels, collective=True)
                        del pixels
                        self.agree(non_finite_logits(logits, valid, self.source.path))
                        weight = feather_weights(row_starts, col_starts, window.row, window.col, size)

                        def blend(
                            top: int, left: int, tiles: list[torch.Tensor], window=window, weight=weight
                        ):
                            h, w = tiles[1].shape
                            cell = weight[top : top + h, left : left + w]
                            accumulator.add(
                                window.top + top, window.left + left, tiles[0], cell, tiles[1].bool()
                            )

                        tiles = [logits, torch.from_numpy(valid).to(p.device, torch.uint8)]
                        failure = self.to_root(tiles, [_box(b) for b in boxes], kinds, blend, size)
                        del logits, tiles
                if accumulator is not None and window.col == len(col_starts) - 1 and failure is None:
                    following = (
                        row_starts[window.row + 1] if window.row + 1 < len(row_starts) else self.height
                    )
                    failure = attempt(lambda following=following: accumulator.flush(following))
                self.agree(failure)
                bar.update(1)
        if not any_valid:
            raise no_valid_pixels(self.source.path)

    def sliding(self) -> None:
        """Crops predicted whole by each rank on its own (round robin, plain model), averaged on rank 0."""
        p, ctx = self.p, self.ctx
        _, _, crops = window_grid(self.height, self.width, (p.window, p.window), (p.stride, p.stride))
        size = (crops[0].height, crops[0].width)
        padded = p.tile_rule.padded_size(*size)
        self.padding_note(size, padded, "crop" if len(crops) > 1 else "scene")
        smallest = max(p.alignment, p.tile_rule.min_input)
        hint = f"use --window {smallest} or more (the model's alignment) or a smaller --overlap"
        self._refuse_work(len(crops), padded, hint)
        refuse_memory(self.source.path, p.config, padded, ctx, p.device)
        self.result.windows = len(crops)
        accumulator = self.accumulator()
        kinds = [((p.num_classes,), torch.float32), ((), torch.uint8)]
        ones = torch.ones(size)

        def average(top: int, left: int, tiles: list[torch.Tensor]) -> None:
            accumulator.add(top, left, tiles[0], ones, tiles[1].bool())

        any_valid = False
        with _progress(len(crops), self.source, self.progress) as bar:
            for first in range(0, len(crops), ctx.size):
                crop = crops[first + ctx.rank] if first + ctx.rank < len(crops) else None
                pixels, valid, counts = self.read(
                    (crop.top, crop.left, *padded) if crop is not None else None
                )
                sending = [c > 0 for c in counts]
                any_valid = any_valid or any(sending)
                tiles, failure = [], None
                if sending[ctx.rank]:
                    try:
                        logits = self.forward(pixels, collective=False)[:, : size[0], : size[1]]
                        crop_valid = valid[: size[0], : size[1]]
                        failure = non_finite_logits(logits, crop_valid, self.source.path)
                        tiles = [logits, torch.from_numpy(crop_valid).to(p.device, torch.uint8)]
                    except SceneError as error:
                        failure = str(error)
                self.agree(failure)
                del pixels
                senders = [
                    (crops[first + i].top, crops[first + i].left, *size) if sending[i] else None
                    for i in range(len(sending))
                ]
                with released_memory(p.device):
                    if any(sending):
                        failure = self.to_root(tiles, senders, kinds, average)
                    del tiles
                if accumulator is not None and failure is None:
                    following = crops[first + ctx.size].top if first + ctx.size < len(crops) else self.height
                    failure = attempt(lambda following=following: accumulator.flush(following))
                self.agree(failure)
                bar.update(min(ctx.size, len(crops) - first))
        if not any_valid:
            raise no_valid_pixels(self.source.path)

    def _refuse_work(self, windows: int, padded: tuple[int, int], hint: str) -> None:
        p = self.p
        scene = (self.height, self.width)
        refuse_work(self.source.path, p.mode, windows, p.window, padded, scene, p.alignment, hint)


def _box(box: TileBox) -> Box:
    return (box.top, box.left, box.height, box.width)


def _progress(total: int, source: RasterSource, enabled: bool) -> Any:
    """A bar over windows (closed when its `with` ends, on failure too)."""
    from tqdm.auto import tqdm

    name = Path(str(source.path)).name
    return tqdm(
        total=total,
        desc=name,
        unit="window",
        leave=False,
        disable=not (enabled and total > 1),
        dynamic_ncols=True,
    )
