"""Differentiable communication primitives of a spatial group.

Every primitive is a `torch.autograd.Function` whose docstring states FORWARD and BACKWARD, and every public
wrapper short-circuits to the identity (or the local op, e.g. zero padding, `torch.roll`) when the spatial
group has one process, so the single-process path runs the same code.

Gradient convention: each rank back-propagates its own part of the global objective (the loss of its tile),
and the backward of a primitive sends gradient contributions to the rank whose input produced them, so each
rank ends up with the gradient of the *global* objective w.r.t. its own inputs.

Collectives run in backward too: every rank of the spatial group must call the same primitives in the same
order, forward and backward (same graph on every rank). A primitive whose output reaches the loss on some
ranks but not on others leaves the others waiting until the process group's timeout.

Only collectives that gloo supports are used: all_reduce, all_gather (equal sizes, so uneven tensors are
padded), all_to_all_single (uneven splits; also carries the neighbour exchanges, so no point-to-point call can
deadlock and a peer that is both the upper and the lower neighbour needs no special case).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .comm_alltoall import (
    AllGatherUneven,
    AllToAllUneven,
    all_gather_uneven,
    all_to_all_uneven,
    exchange,
    gather_ints,
    heads_to_tokens,
    tokens_to_heads,
    with_extent,
)

if TYPE_CHECKING:
    from .context import SpatialContext

__all__ = [
    "AllGatherUneven",
    "AllReduceSum",
    "AllToAllUneven",
    "DistributedRoll",
    "HaloPad",
    "SumPartials",
    "all_gather_uneven",
    "all_reduce_sum",
    "all_to_all_uneven",
    "distributed_roll",
    "gather_ints",
    "halo_exchange",
    "heads_to_tokens",
    "reduce_partial_sums",
    "sum_partials",
    "tokens_to_heads",
]


def _neighbours(ctx: SpatialContext, axis: int, wrap: bool) -> tuple[int | None, int | None]:
    """(previous, next) spatial rank along grid axis 0 (rows) or 1 (columns)."""
    step = (1, 0) if axis == 0 else (0, 1)
    return ctx.neighbour(-step[0], -step[1], wrap), ctx.neighbour(step[0], step[1], wrap)


def _check_tiles(info: list[list[int]], ctx: SpatialContext, op: str) -> None:
    """Every rank passed [other_numel, extent_rows, extent_cols, *args]: check that they form one scene."""
    if any(i[3:] != info[0][3:] for i in info):
        raise ValueError(
            f"{op}: ranks passed different arguments {[i[3:] for i in info]}; every rank must pass the same"
        )
    if any(i[0] != info[0][0] for i in info):
        raise ValueError(
            f"{op}: tiles differ outside the split dimensions (elements per pixel {[i[0] for i in info]})"
        )
    rows, cols = ctx.grid
    for r in range(rows):
        if len({info[r * cols + c][1] for c in range(cols)}) != 1:
            raise ValueError(
                f"{op}: tiles of grid row {r} differ in height: {[info[r * cols + c][1] for c in range(cols)]}"
            )
    for c in range(cols):
        if len({info[r * cols + c][2] for r in range(rows)}) != 1:
            raise ValueError(
                f"{op}: tiles of grid column {c} differ in width: {[info[r * cols + c][2] for r in range(rows)]}"
            )


# ----------------------------------------------------------------------------------------------- halo exchange


def _halo_forward(x, ctx, axis, dim, before, after):
    prev, nxt = _neighbours(ctx, axis, wrap=False)
    n = x.shape[dim]
    sends, recvs = [], []
    if nxt is not None and before:
        sends.append((nxt, x.narrow(dim, n - before, before)))  # my last rows: the next tile's `before` halo
    if prev is not None and after:
        sends.append((prev, x.narrow(dim, 0, after)))  # my first rows: the previous tile's `after` halo
    if prev is not None and before:
        recvs.append((prev, with_extent(x.shape, dim, before)))
    if nxt is not None and after:
        recvs.append((nxt, with_extent(x.shape, dim, after)))
    got = iter(exchange(ctx, sends, recvs, x))
    head = next(got) if prev is not None and before else x.new_zeros(with_extent(x.shape, dim, before))
    tail = next(got) if nxt is not None and after else x.new_zeros(with_extent(x.shape, dim, after))
    return torch.cat([head, x, tail], dim)


def _halo_backward(grad, ctx, axis, dim, before, after, n):
    prev, nxt = _neighbours(ctx, axis, wrap=False)
    sends, recvs = [], []
    if prev is not None and before:
        sends.append((prev, grad.narrow(dim, 0, before)))
    if nxt is not None and after:
        sends.append((nxt, grad.narrow(dim, before + n, after)))
    if nxt is not None and before:
        recvs.append((nxt, with_extent(grad.shape, dim, before)))
    if prev is not None and after:
        recvs.append((prev, with_extent(grad.shape, dim, after)))
    got = iter(exchange(ctx, sends, recvs, grad))
    grad_x = grad.narrow(dim, before, n).clone(memory_format=torch.contiguous_format)
    if nxt is not None and before:
        grad_x.narrow(dim, n - before, before).add_(next(got))
    if prev is not None and after:
        grad_x.narrow(dim, 0, after).add_(next(got))
    return grad_x


class HaloPad(torch.autograd.Function):
    """Extend a tile by `before`/`after` pixels of its neighbours along one grid axis.

    FORWARD: x (..., h, w) -> along `dim` (rows for axis 0, columns for axis 1) the last `before` pixels of the
    previous tile, x, the first `after` pixels of the next tile; zeros where the scene ends.
    BACKWARD: the gradient of the `before` halo is sent back to the previous tile and added into its last
    `before` pixels, the gradient of the `after` halo to the next tile's first `after` pixels; the gradient of
    the own region passes through.
    """

    @staticmethod
    def forward(actx, x, ctx, axis, before, after):
        dim = x.dim() - 2 + axis
        actx.args = (ctx, axis, dim, before, after, x.shape[dim])
        return _halo_forward(x, ctx, axis, dim, before, after)

    @staticmethod
    def backward(actx, grad):
        return _halo_backward(grad, *actx.args), None, None, None, None


def _halo_axis(x, ctx, axis, before, after):
    if not (before or after):
        return x
    if ctx.grid[axis] == 1:
        return F.pad(x, (0, 0, before, after) if axis == 0 else (before, after))
    return HaloPad.apply(x, ctx, axis, before, after)


def halo_exchange(
    x: torch.Tensor, ctx: SpatialContext, top: int, bottom: int, left: int, right: int, check: bool = True
) -> torch.Tensor:
    """This tile (..., h, w) extended by its neighbours' borders, corners included: (..., h+top+bottom, w+left+right).

    Equals the slice of the zero-padded whole scene around this tile (`F.pad` of the whole scene, then the
    tile's window), so a convolution with padding 0 on the result is the whole-scene convolution. Rows are
    exchanged first, then columns of the row-extended tensor, which brings the corners along. Backward adds
    the gradient of every received border into the edge of its owner (see `HaloPad`).

    Args:
        x: This rank's tile, any leading dims, any float dtype.
        ctx: Spatial context; every rank must pass the same four widths.
        check: Verify (one small all-gather) that the tiles form one scene and that no halo is wider than the
            tile it comes from; pass False where the caller has checked the geometry.

    Raises:
        ValueError: on every rank, if a halo is wider than the tile it comes from, or the ranks disagree.
    """
    widths = (top, bottom, left, right)
    if min(widths) < 0:
        raise ValueError(f"halo widths must be >= 0, got top={top} bottom={bottom} left={left} right={right}")
    if check and ctx.size > 1 and any(widths):
        info = gather_ints([x[..., :1, :1].numel(), x.shape[-2], x.shape[-1], *widths], ctx)
        _check_tiles(info, ctx, "halo_exchange")
        rows, cols = ctx.grid
        for s, (_, h, w, *_) in enumerate(info):
            r, c = divmod(s, cols)
            for needed, has_peer, side, extent, unit, axis_name in (
                (top, r < rows - 1, "top", h, "rows", "tile row"),
                (bottom, r > 0, "bottom", h, "rows", "tile row"),
                (left, c < cols - 1, "left", w, "columns", "tile column"),
                (right, c > 0, "right", w, "columns", "tile column"),
            ):
                if has_peer and extent < needed:
                    where = r if unit == "rows" else c
                    raise ValueError(
                        f"halo_exchange: a {side} halo of {needed} {unit} is wider than {axis_name} {where}, which is "
                        f"only {extent} {unit} at this layer (grid {rows}x{cols}); use fewer tiles along that axis "
                        f"or a larger scene"
                    )
    return _halo_axis(_halo_axis(x, ctx, 0, top, bottom), ctx, 1, left, right)


# ------------------------------------------------------------------------------------------ distributed roll


def _roll_axis(x, ctx, axis, dim, shift):
    prev, nxt = _neighbours(ctx, axis, wrap=True)
    n = x.shape[dim]
    if shift > 0:  # the first `shift` pixels come from the end of the previous tile (on the torus)
        (got,) = exchange(
            ctx, [(nxt, x.narrow(dim, n - shift, shift))], [(prev, with_extent(x.shape, dim, shift))], x
        )
        return torch.cat([got, x.narrow(dim, 0, n - shift)], dim)
    k = -shift  # the last `k` pixels come from the start of the next tile
    (got,) = exchange(ctx, [(prev, x.narrow(dim, 0, k))], [(nxt, with_extent(x.shape, dim, k))], x)
    return torch.cat([x.narrow(dim, k, n - k), got], dim)


class DistributedRoll(torch.autograd.Function):
    """`torch.roll` by `shift` along `dim` on the torus of the whole scene, dim split by grid axis `axis`.

    FORWARD: the tile's slice of the rolled scene: for shift > 0, the previous tile's (cyclically) last `shift`
    pixels then this tile without its last `shift`; for shift < 0, this tile without its first |shift| then the
    next tile's first |shift| pixels. Requires |shift| <= every tile's extent along `dim`.
    BACKWARD: the same roll by -shift of the gradient (a roll is a permutation; its adjoint is its inverse).
    """

    @staticmethod
    def forward(actx, x, ctx, axis, dim, shift):
        actx.args = (ctx, axis, dim, shift)
        return _roll_axis(x, ctx, axis, dim, shift)

    @staticmethod
    def backward(actx, grad):
        ctx, axis, dim, shift = actx.args
        return _roll_axis(grad, ctx, axis, dim, -shift), None, None, None, None


def distributed_roll(
    x: torch.Tensor,
    ctx: SpatialContext,
    shifts: int | tuple[int, int],
    dims: tuple[int, int] = (-2, -1),
    check: bool = True,
) -> torch.Tensor:
    """`torch.roll(whole, shifts, dims)` restricted to this tile, for a scene split by `ctx.grid` along `dims`.

    `dims[0]` is split by the grid's rows, `dims[1]` by its columns; tiles may be uneven. Positive and negative
    shifts; |shift| must not exceed any tile's extent along a split dim (checked with one small all-gather
    unless `check` is False). Backward rolls the gradient by -shifts (see `DistributedRoll`).
    """
    shifts = (shifts, shifts) if isinstance(shifts, int) else tuple(shifts)
    dims = tuple(d % x.dim() for d in dims)
    if len(shifts) != 2 or len(dims) != 2 or dims[0] == dims[1]:
        raise ValueError(f"distributed_roll needs two shifts and two distinct dims, got {shifts}, {dims}")
    if check and ctx.size > 1 and any(shifts):
        extents = (x.shape[dims[0]], x.shape[dims[1]])
        info = gather_ints([x.numel() // max(1, math.prod(extents)), *extents, *shifts, *dims], ctx)
        _check_tiles(info, ctx, "distributed_roll")
        for axis in (0, 1):
            smallest = min(i[1 + axis] for i in info)
            if ctx.grid[axis] > 1 and abs(shifts[axis]) > smallest:
                raise ValueError(
                    f"distributed_roll: a shift of {shifts[axis]} along dim {dims[axis]} exceeds the smallest tile "
                    f"({smallest} along that dim, grid {ctx.rows}x{ctx.cols}); use fewer tiles or a larger scene"
                )
    for axis in (0, 1):
        if shifts[axis] == 0:
            continue
        if ctx.grid[axis] == 1:
            x = torch.roll(x, shifts[axis], dims[axis])
        else:
            x = DistributedRoll.apply(x, ctx, axis, dims[axis], shifts[axis])
    return x


# ------------------------------------------------------------------------------------------------ reductions


# Sums of at most this many elements per rank, on the CPU (gloo), travel as one all-to-all of copies: on one
# machine gloo's all_reduce takes about 1.8 ms for a few floats, its all_to_all_single about 0.2 ms
# (`scripts/bench_spatial.py`), and the statistics of a forward (GRN norms, pooled bins, BatchNorm moments, the
# loss) are all this small. Larger tensors keep the bandwidth-optimal all_reduce.
_SUM_BY_EXCHANGE_MAX = 1 << 16


def _all_reduced(x: torch.Tensor, ctx: SpatialContext) -> torch.Tensor:
    """sum_r x_r on every rank; the same bits on every rank (rank order is fixed in both paths)."""
    if x.device.type == "cpu" and x.numel() <= _SUM_BY_EXCHANGE_MAX:
        flat = x.reshape(-1)
        everyone = exchange(
            ctx, [(r, flat) for r in range(ctx.size)], [(r, [flat.numel()]) for r in range(ctx.size)], flat
        )
        total = everyone[0].clone()
        for part in everyone[1:]:
            total += part
        return total.view(x.shape)
    out = x.clone(memory_format=torch.contiguous_format)
    dist.all_reduce(out, group=ctx.group)
    return out


class AllReduceSum(torch.autograd.Function):
    """Sum over the spatial group of a statistic that every rank then consumes.

    FORWARD: y = sum_r x_r, the same on every rank.
    BACKWARD: grad x_r = sum_r' grad y_r' (an all-reduce of the gradient). Each rank r' uses y for its own tile
    and back-propagates only its share dL_r'/dy; since x_r influences every rank's y, its gradient is the sum of
    all shares. Use for BatchNorm/GroupNorm sums, pooled bins, any statistic consumed on every rank.
    """

    @staticmethod
    def forward(actx, x, ctx):
        actx.ctx = ctx
        return _all_reduced(x, ctx)

    @staticmethod
    def backward(actx, grad):
        return _all_reduced(grad, actx.ctx), None


class SumPartials(torch.autograd.Function):
    """Sum over the spatial group of partial results whose total is the objective itself (the loss).

    FORWARD: y = sum_r x_r, the same on every rank.
    BACKWARD: grad x_r = grad y (identity). Every rank back-propagates the same gradient of the same replicated
    total (e.g. `loss.backward()` on every rank); rank r owns the term x_r, whose derivative in the total is 1.
    Equivalently: each rank's share of dL/dy is grad y / P and the all-reduce of P shares gives grad y. An
    all-reduce here would count the gradient P times.
    """

    @staticmethod
    def forward(actx, x, ctx):
        return _all_reduced(x, ctx)

    @staticmethod
    def backward(actx, grad):
        return grad, None


def all_reduce_sum(x: torch.Tensor, ctx: SpatialContext) -> torch.Tensor:
    """Sum over the spatial group; backward all-reduces the gradient (see `AllReduceSum`)."""
    return x if ctx.size == 1 else AllReduceSum.apply(x, ctx)


def sum_partials(x: torch.Tensor, ctx: SpatialContext) -> torch.Tensor:
    """Sum over the spatial group; backward is the identity (see `SumPartials`). For the loss."""
    return x if ctx.size == 1 else SumPartials.apply(x, ctx)


reduce_partial_sums = sum_partials
