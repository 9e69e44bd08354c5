"""Where finished predictions go: the sink protocol, an in-memory sink, the class counter, and the band of
blended logits that the windowed and sliding engines keep on rank 0."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

__all__ = ["ArraySink", "BandAccumulator", "CountingSink", "PredictionSink", "SceneResult"]


class PredictionSink(Protocol):
    """Receives finished blocks of the prediction on rank 0 (any order, blocks do not overlap)."""

    def write(
        self, top: int, left: int, labels: np.ndarray, valid: np.ndarray, probabilities: np.ndarray | None
    ) -> None:
        """`labels` (h, w) class ids with the nodata value where `valid` is False; `probabilities` (K, h, w)
        float32 with NaN where invalid, or None when they were not asked for."""


class ArraySink:
    """Assembles the whole prediction in memory: `labels` (H, W) and `probabilities` (K, H, W) or None."""

    def __init__(self, height: int, width: int, num_classes: int, nodata: int, probabilities: bool = False):
        dtype = np.uint8 if nodata == 255 else np.uint16
        self.labels = np.full((height, width), nodata, dtype=dtype)
        self.probabilities = (
            np.full((num_classes, height, width), np.nan, dtype=np.float32) if probabilities else None
        )

    def write(self, top, left, labels, valid, probabilities) -> None:
        h, w = labels.shape
        self.labels[top : top + h, left : left + w] = labels
        if self.probabilities is not None and probabilities is not None:
            self.probabilities[:, top : top + h, left : left + w] = probabilities


@dataclass
class SceneResult:
    """What happened to one scene (the histogram and arrays are filled on rank 0 only)."""

    path: str
    height: int
    width: int
    mode: str
    grid: tuple[int, int]
    seconds: float = 0.0
    windows: int = 1
    predicted_size: tuple[int, int] | None = None  # size actually fed to the model when it was padded
    valid_pixels: int = 0
    implausible_pixels: int = 0  # pixels taken as nodata for their infinite or impossible values
    largest_input: float = 0.0  # largest |normalised input value| over the valid pixels
    histogram: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None


class CountingSink:
    """Passes blocks on to `sink` and counts their classes and valid pixels (rank 0)."""

    def __init__(self, sink: PredictionSink, num_classes: int):
        self.sink, self.num_classes = sink, num_classes
        self.histogram = np.zeros(num_classes, dtype=np.int64)
        self.valid_pixels = 0

    def write(self, top, left, labels, valid, probabilities) -> None:
        self.sink.write(top, left, labels, valid, probabilities)
        counted = labels[valid]
        self.histogram += np.bincount(counted.astype(np.int64), minlength=self.num_classes)[
            : self.num_classes
        ]
        self.valid_pixels += int(counted.size)


class BandAccumulator:
    """Weighted sums of logits over a band of rows `[top, top + rows)` of the scene (rank 0, CPU).

    Windows are added in row-major order; `flush(until)` finishes the rows above `until` (no window still to
    come touches them): divides by the summed weights, takes the argmax and hands them to the sink, then
    drops them. The band grows only as far down as the windows added so far.
    """

    def __init__(self, num_classes: int, height: int, width: int, finish: Callable[..., None]):
        self.num_classes, self.height, self.width, self.finish = num_classes, height, width, finish
        self.top = 0
        self.logits = torch.zeros(num_classes, 0, width)
        self.weight = torch.zeros(0, width)
        self.valid = torch.zeros(0, width, dtype=torch.bool)

    def add(
        self, top: int, left: int, logits: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor
    ) -> None:
        h, w = logits.shape[-2:]
        bottom = top + h
        if top < self.top:
            raise RuntimeError(f"window at row {top} arrived after rows up to {self.top} were written")
        missing = bottom - (self.top + self.weight.shape[0])
        if missing > 0:
            self.logits = torch.cat([self.logits, torch.zeros(self.num_classes, missing, self.width)], dim=1)
            self.weight = torch.cat([self.weight, torch.zeros(missing, self.width)])
            self.valid = torch.cat([self.valid, torch.zeros(missing, self.width, dtype=torch.bool)])
        rows, cols = slice(top - self.top, bottom - self.top), slice(left, left + w)
        self.logits[:, rows, cols].addcmul_(logits, weight)
        self.weight[rows, cols] += weight
        self.valid[rows, cols] = valid

    def flush(self, until: int) -> None:
        until = min(until, self.height)
        count = until - self.top
        if count <= 0:
            return
        if count > self.weight.shape[0]:  # rows no window covered (only possible when every one was skipped)
            self.add(
                self.top,
                0,
                torch.zeros(self.num_classes, count, self.width),
                torch.zeros(count, self.width),
                torch.zeros(count, self.width, dtype=torch.bool),
            )
        self.finish(self.top, self.logits[:, :count], self.weight[:count], self.valid[:count])
        self.logits = self.logits[:, count:].clone()
        self.weight = self.weight[count:].clone()
        self.valid = self.valid[count:].clone()
        self.top = until
