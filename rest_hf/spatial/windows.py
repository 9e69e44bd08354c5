"""Any region of a split map, in global coordinates: layers computed on the part of the scene the next ones read.

A `Window` holds rows [r0, r1) x columns [c0, c1) of one map of the whole scene (B, C, H, W). `conv_at` and
`resize_at` give the whole scene's convolution or bilinear resize exactly on a requested region, from a
window that covers what they read there (`conv_source` / `resize_source`, clipped to the scene, so zero
padding and the resize's clamping act only at the scene's edge). Chained backwards from the region a rank must
output, these tell how far beyond its tile each input must reach; one halo exchange of that much then serves
a whole stack of layers (the decode head's twin), instead of one exchange per layer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

import torch
import torch.nn.functional as F
from torch import nn

from .comm_halo import HaloFrame, memory_format_of
from .partition import TileBox

Span = tuple[int, int]
_Args = ParamSpec("_Args")


def geometry_constant(factory: Callable[_Args, torch.Tensor]) -> Callable[_Args, torch.Tensor]:
    """Cache a factory of constant tensors that depend on the scene's geometry only (interpolation weights,
    pooling bins), by its (hashable) arguments.

    Each takes a dozen small ops to make, a few microseconds each, and the decode head needs sixteen per
    forward, the same at every forward of a scene size. They are made outside inference mode, so that a
    training step may save them for backward after an evaluation made them. Callers must not modify them.
    The 64 most recent are kept per factory: four scene sizes' worth, under 1 MB for 12800 px scenes.
    """
    cached = functools.lru_cache(maxsize=64)(factory)

    @functools.wraps(factory)
    def constant(*args: _Args.args, **kwargs: _Args.kwargs) -> torch.Tensor:
        with torch.inference_mode(False):
            return cached(*args, **kwargs)

    return constant


@dataclass(frozen=True)
class Region:
    """Global rows [rows[0], rows[1]) x columns [cols[0], cols[1]) of a map."""

    rows: Span
    cols: Span

    @classmethod
    def of(cls, box: TileBox) -> Region:
        return cls((box.top, box.bottom), (box.left, box.right))

    def hull(self, other: Region) -> Region:
        """The smallest region holding both."""
        return Region(
            (min(self.rows[0], other.rows[0]), max(self.rows[1], other.rows[1])),
            (min(self.cols[0], other.cols[0]), max(self.cols[1], other.cols[1])),
        )

    def margins(self, box: TileBox) -> tuple[int, int, int, int]:
        """How far (top, bottom, left, right) the region reaches beyond `box` (0 where it does not)."""
        return (
            max(0, box.top - self.rows[0]),
            max(0, self.rows[1] - box.bottom),
            max(0, box.left - self.cols[0]),
            max(0, self.cols[1] - box.right),
        )


def widest_reach(regions: list[Region], boxes: list[TileBox]) -> tuple[int, int, int, int]:
    """How far (top, bottom, left, right) the farthest of `regions` reaches beyond its tile's box: the halo
    widths with which one exchange serves every tile (a region is clipped to the scene, so an axis the grid
    does not split reaches nowhere)."""
    margins = [region.margins(box) for region, box in zip(regions, boxes, strict=True)]
    top, bottom, left, right = (max(margin[side] for margin in margins) for side in range(4))
    return top, bottom, left, right


def source_positions(
    out_start: int, out_stop: int, in_size: int, out_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower source index and weight of the upper one for output rows [out_start, out_stop) of a bilinear resize
    (align_corners=False) from `in_size` to `out_size`, in global indices."""
    scale = in_size / out_size
    position = ((torch.arange(out_start, out_stop, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    lower = position.floor().long().clamp(max=in_size - 1)
    return lower, position - lower


@geometry_constant
def interpolation_matrix(
    span: Span, in_size: int, out_size: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(span length, in_size) weights of a bilinear resize (align_corners=False) along one axis, for outputs
    [span[0], span[1]): row i holds 1 - w at its lower source pixel and w at the upper one (both clamped into
    the map, where they then add up to 1), i.e. the hat function max(0, 1 - |p - j|) at the clamped position p.
    Cached (`geometry_constant`): read only.
    """
    lower, weight = source_positions(span[0], span[1], in_size, out_size)
    position = (lower + weight).clamp(max=in_size - 1)
    distance = (position[:, None] - torch.arange(in_size, dtype=torch.float64)[None, :]).abs()
    return (1.0 - distance).clamp(min=0.0).to(dtype=dtype, device=device)


# Channels interpolated at a time: the temporaries are then an eighth of the output, not twice it.
_CHANNEL_CHUNKS = 8


def interpolate_axis(
    source: torch.Tensor, dim: int, lower: torch.Tensor, weight: torch.Tensor, last: int
) -> torch.Tensor:
    """Linear interpolation along `dim` of (B, C, h, w) `source` at local indices `lower` (+1, clamped to `last`).

    The final 4x upsampling of the logits is the largest tensor of the model, so the interpolation writes
    into the output chunk by chunk of channels, in place (`lower + w * (upper - lower)`): the peak is the
    output plus two chunks, close to `F.interpolate`'s.
    """
    shape = [1] * source.ndim
    shape[dim] = -1
    # The indices and weights are computed on the host; a CUDA source needs them on its device.
    lower = lower.to(source.device)
    weight = weight.to(device=source.device, dtype=source.dtype).view(shape)
    upper = (lower + 1).clamp(max=last)
    out_shape = list(source.shape)
    out_shape[dim] = lower.numel()
    output = source.new_empty(out_shape)
    step = -(-source.shape[1] // _CHANNEL_CHUNKS)
    for start in range(0, source.shape[1], step):
        chunk = source[:, start : start + step]
        below = chunk.index_select(dim, lower)
        output[:, start : start + step] = chunk.index_select(dim, upper).sub_(below).mul_(weight).add_(below)
    return output


@dataclass
class Window:
    """`tensor` (B, C, r1 - r0, c1 - c0) holds `region` of a (B, C, H, W) map of the whole scene, `size` = (H, W)."""

    tensor: torch.Tensor
    region: Region
    size: tuple[int, int]

    def crop(self, region: Region) -> torch.Tensor:
        """The pixels of `region` (a view); it must lie inside the window."""
        (r0, r1), (c0, c1) = self.region.rows, self.region.cols
        if not (
            r0 <= region.rows[0] <= region.rows[1] <= r1 and c0 <= region.cols[0] <= region.cols[1] <= c1
        ):
            raise ValueError(f"region {region} is not inside the window's {self.region}")
        return self.tensor[
            ..., region.rows[0] - r0 : region.rows[1] - r0, region.cols[0] - c0 : region.cols[1] - c0
        ]

    def cropped(self, region: Region) -> Window:
        """The window of `region` (a view); it must lie inside this one."""
        return Window(self.crop(region), region, self.size)

    def like(self, tensor: torch.Tensor) -> Window:
        """Another map on the same region (a pointwise function of this one)."""
        return Window(tensor, self.region, self.size)


def frame_window(frame: HaloFrame, box: TileBox, size: tuple[int, int]) -> Window:
    """All a halo frame holds (the tile `box` and every halo a neighbour sent) as a window of a `size` map.

    All of it, even where the layers read less: every block received must reach the output, since the halo's
    backward is a collective that each tile which received one joins.
    """
    top = frame.top if frame.has((-1, 0)) else 0
    bottom = frame.bottom if frame.has((1, 0)) else 0
    left = frame.left if frame.has((0, -1)) else 0
    right = frame.right if frame.has((0, 1)) else 0
    height, width = frame.x.shape[-2:]
    tensor = frame.window(
        (frame.top - top, frame.top + height + bottom), (frame.left - left, frame.left + width + right)
    )
    region = Region((box.top - top, box.bottom + bottom), (box.left - left, box.right + right))
    return Window(tensor, region, size)


def _same_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """The zero padding of a stride-1 'same' convolution, which is also how far it reads beyond a pixel."""
    same = (
        all(s == 1 for s in conv.stride)
        and not isinstance(conv.padding, str)
        and conv.padding_mode == "zeros"
        and all(
            p == d * (k - 1) // 2 and k % 2
            for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size, strict=True)
        )
    )
    if not same:
        raise ValueError(
            f"conv_at computes stride-1 'same' zero-padded convolutions of odd kernels, not {conv}"
        )
    return conv.padding[0], conv.padding[1]


def conv_source(region: Region, conv: nn.Conv2d, size: tuple[int, int]) -> Region:
    """What the 'same' convolution `conv` reads for `region` of its output, inside a scene of `size`."""
    pad_h, pad_w = _same_padding(conv)
    return Region(
        (max(0, region.rows[0] - pad_h), min(size[0], region.rows[1] + pad_h)),
        (max(0, region.cols[0] - pad_w), min(size[1], region.cols[1] + pad_w)),
    )


@functools.lru_cache(maxsize=1024)
def _resize_span(span: Span, in_size: int, out_size: int) -> Span:
    """What a bilinear resize reads along one axis for outputs `span` (cached: the head asks at every forward)."""
    lower, _ = source_positions(span[0], span[1], in_size, out_size)
    return int(lower[0]), min(int(lower[-1]) + 1, in_size - 1) + 1


def resize_source(region: Region, in_size: tuple[int, int], out_size: tuple[int, int]) -> Region:
    """What a bilinear resize from `in_size` to `out_size` reads for `region` of its output."""
    return Region(
        _resize_span(region.rows, in_size[0], out_size[0]), _resize_span(region.cols, in_size[1], out_size[1])
    )


def conv_at(
    conv: nn.Conv2d,
    window: Window,
    region: Region,
    then: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Window:
    """The whole scene's 'same' convolution on `region`, followed by the pointwise `then` (if given).

    The conv runs on the window's part that it reads, with its own zero padding, which is right where that
    part meets the scene's edge; the outputs that read the padding elsewhere are cropped off. `then` runs
    before the crop: on the contiguous output a BatchNorm is several times faster than on a cropped view.
    """
    source = conv_source(region, conv, window.size)
    output = F.conv2d(
        window.crop(source), conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups
    )
    if then is not None:
        output = then(output)
    return Window(output, source, window.size).cropped(region)


def resize_at(window: Window, size: tuple[int, int], region: Region) -> Window:
    """The whole scene's bilinear resize (align_corners=False) to `size`, on `region` of its output.

    When the scene's map grows by whole factors k (2x-8x in the decoder), `F.interpolate(scale_factor=k)` of the
    window's part that it reads gives those pixels (its source coordinates are the global ones shifted by a
    whole source pixel, and it clamps only where the part meets the scene's edge); other ratios interpolate
    at explicit global source indices and weights.
    """
    source = resize_source(region, window.size, size)
    part = window.crop(source)
    factors = [out // inp if out % inp == 0 else 0 for inp, out in zip(window.size, size, strict=True)]
    if all(factors):
        k_rows, k_cols = factors
        # On CPU a bilinear resize of a cropped view takes twice as long as a copy of it and the resize.
        part = part.contiguous(memory_format=memory_format_of(part))
        output = F.interpolate(part, scale_factor=(k_rows, k_cols), mode="bilinear", align_corners=False)
        covered = Region(
            (k_rows * source.rows[0], k_rows * source.rows[1]),
            (k_cols * source.cols[0], k_cols * source.cols[1]),
        )
        return Window(output, covered, size).cropped(region)
    for axis, (span, start) in enumerate(((region.rows, source.rows[0]), (region.cols, source.cols[0]))):
        lower, weight = source_positions(span[0], span[1], window.size[axis], size[axis])
        part = interpolate_axis(part, 2 + axis, lower - start, weight, part.shape[2 + axis] - 1)
    return Window(part, region, size)


__all__ = [
    "Region",
    "Window",
    "conv_at",
    "conv_source",
    "frame_window",
    "geometry_constant",
    "interpolate_axis",
    "interpolation_matrix",
    "resize_at",
    "resize_source",
    "source_positions",
    "widest_reach",
]
