"""Halos in flight: the neighbours' border pixels sent while the tile's interior is computed.

`halo_exchange` (comm.py) returns the halo-padded tile, a copy of the whole tile, after the exchange has
finished. Layers whose output is exact away from the tile's edge without any halo (a zero-padded convolution,
`F.interpolate` of the tile) do better: `start_halo` sends this tile's borders to all (up to 8) neighbours in
one non-blocking all-to-all, the layer computes its whole output from the tile alone meanwhile, and
`PendingHalo.wait` returns a `HaloFrame` from which it recomputes only the few output pixels next to an edge
shared with a neighbour. No copy of the tile is made and the exchange's latency hides behind the interior.
`start_halos` sends the borders of several independent maps in one exchange (the decoder's FPN levels), so
they share one synchronisation instead of one each.

Geometry: every rank passes the same widths `(top, bottom, left, right)`. The padded tile is, in blocks,

    [[TL, T, TR],
     [ L, X,  R],
     [BL, B, BR]]

with X this tile, T the last `top` rows of the tile above (TL, TR its diagonal neighbours' corners), and so
on; blocks past the scene's edge are zeros, like `halo_exchange`'s, so `HaloFrame.window` of any region equals
the same region of the zero-padded whole scene.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from .comm_alltoall import exchange

if TYPE_CHECKING:
    from .context import SpatialContext

# The eight neighbour directions (row step, column step), in the fixed order every rank lists them.
_DIRECTIONS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))


def _band(step: int, extent: int, before: int, after: int, sending: bool) -> tuple[int, int]:
    """(start, length) along one axis of the block exchanged with the neighbour `step` away.

    Received (`sending` False): the `before` halo from the previous tile, the `after` halo from the next one.
    Sent: what that neighbour receives, i.e. the first `after` pixels go to the previous tile (its `after`
    halo), the last `before` pixels to the next tile (its `before` halo)."""
    if step == 0:
        return 0, extent
    if sending:
        return (0, after) if step < 0 else (extent - before, before)
    return (0, before) if step < 0 else (0, after)


def _blocks(
    ctx: SpatialContext, shape: torch.Size, widths: tuple[int, int, int, int], sending: bool
) -> list[tuple[tuple[int, int], int, tuple[int, int], tuple[int, int]]]:
    """(direction, peer, (row start, rows), (col start, cols)) of every non-empty block to send or receive."""
    top, bottom, left, right = widths
    height, width = shape[-2], shape[-1]
    found = []
    for direction in _DIRECTIONS:
        peer = ctx.neighbour(*direction)
        rows = _band(direction[0], height, top, bottom, sending)
        cols = _band(direction[1], width, left, right, sending)
        if peer is not None and rows[1] and cols[1]:
            found.append((direction, peer, rows, cols))
    return found


def _region(x: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    return x[..., rows[0] : rows[0] + rows[1], cols[0] : cols[0] + cols[1]]


def _elements(shape: torch.Size, rows: tuple[int, int], cols: tuple[int, int]) -> int:
    return math.prod(shape[:-2]) * rows[1] * cols[1]


class _Exchange:
    """One non-blocking all_to_all_single carrying the border blocks of one or more tiles."""

    def __init__(self, pendings: list[PendingHalo]) -> None:
        ctx, like = pendings[0].ctx, pendings[0].x
        send_sizes, self.recv_sizes = [0] * ctx.size, [0] * ctx.size
        pieces: list[list[torch.Tensor]] = [[] for _ in range(ctx.size)]
        for pending in pendings:
            # Per peer, the blocks of the tiles in call order: the receiver lists them in the same order.
            pending.offsets = list(self.recv_sizes)
            detached = pending.x.detach()
            for _, peer, rows, cols in pending.outgoing:
                pieces[peer].append(_region(detached, rows, cols).reshape(-1))
                send_sizes[peer] += _elements(pending.x.shape, rows, cols)
            for _, peer, rows, cols in pending.incoming:
                self.recv_sizes[peer] += _elements(pending.x.shape, rows, cols)
        flat = [piece for per_peer in pieces for piece in per_peer]
        # Kept alive until `wait`: the backend reads it while the layer computes.
        self._send = torch.cat(flat) if flat else like.new_empty(0)
        self._recv = like.new_empty(sum(self.recv_sizes))
        # Nothing to exchange (one process, or no neighbour across a halo): no collective at all.
        self._work = (
            dist.all_to_all_single(
                self._recv,
                self._send,
                output_split_sizes=self.recv_sizes,
                input_split_sizes=send_sizes,
                group=ctx.group,
                async_op=True,
            )
            if any(send_sizes) or any(self.recv_sizes)
            else None
        )

    def chunks(self) -> tuple[torch.Tensor, ...]:
        """Block until the exchange is done (once); what every peer sent, in spatial-rank order."""
        if self._work is not None:
            self._work.wait()
            self._work = None
        return self._recv.split(self.recv_sizes)


class PendingHalo:
    """One tile's border blocks on their way to the neighbours, and the neighbours' on their way here."""

    def __init__(self, x: torch.Tensor, ctx: SpatialContext, widths: tuple[int, int, int, int]) -> None:
        self.x, self.ctx, self.widths = x, ctx, widths
        self.differentiable = torch.is_grad_enabled() and x.requires_grad
        if self.differentiable and (widths[0] != widths[1] or widths[2] != widths[3]):
            # Backward is a collective of every tile that sent or received; with equal widths on both sides of
            # an axis every tile that sends also receives, so every tile's output depends on it and runs it.
            raise ValueError(
                f"a differentiable halo in flight needs equal widths on both sides of an axis, got (top, bottom, "
                f"left, right) = {widths}; use halo_exchange for uneven halos"
            )
        self.incoming = _blocks(ctx, x.shape, widths, sending=False)
        self.outgoing = _blocks(ctx, x.shape, widths, sending=True)
        # Where this tile's blocks start in each peer's chunk of the shared exchange (set by `_Exchange`).
        self.offsets: list[int] = []
        self.exchange: _Exchange | None = None

    def received(self) -> list[torch.Tensor]:
        """Block until the exchange is done; the received blocks in the order of `self.incoming`."""
        chunks, offsets, blocks = self.exchange.chunks(), list(self.offsets), []
        for _, peer, rows, cols in self.incoming:
            n = _elements(self.x.shape, rows, cols)
            blocks.append(
                chunks[peer][offsets[peer] : offsets[peer] + n].view(*self.x.shape[:-2], rows[1], cols[1])
            )
            offsets[peer] += n
        return blocks

    def wait(self) -> HaloFrame:
        """The halo-padded tile, as a `HaloFrame`; differentiable in `x` when gradients are enabled."""
        if self.incoming and self.differentiable:
            blocks = list(ReceivedHalo.apply(self.x, self))
        else:
            blocks = self.received()
        by_direction = {
            direction: block for (direction, *_), block in zip(self.incoming, blocks, strict=True)
        }
        return HaloFrame(self.x, self.widths, by_direction)


class ReceivedHalo(torch.autograd.Function):
    """The neighbours' border blocks of a `PendingHalo`, as a function of every rank's tile.

    FORWARD: waits for the exchange `start_halo` began; returns the received blocks (in `incoming` order).
    BACKWARD: the gradient of each received block is sent back to the neighbour it came from (one
    all_to_all_single), which adds it into the edge pixels the block was cut from; that sum is the tile's
    gradient from its halo uses (autograd adds the gradient of its direct uses).
    """

    @staticmethod
    def forward(actx, x, pending):
        # Only the geometry is kept for backward, not the pending exchange's buffers.
        actx.geometry = (pending.ctx, pending.incoming, pending.outgoing, x.shape)
        return tuple(block.clone() for block in pending.received())

    @staticmethod
    def backward(actx, *grads):
        ctx, incoming, outgoing, shape = actx.geometry
        lead = list(shape[:-2])
        sends = [(peer, grad.contiguous()) for (_, peer, _, _), grad in zip(incoming, grads, strict=True)]
        recvs = [(peer, [*lead, rows[1], cols[1]]) for _, peer, rows, cols in outgoing]
        got = exchange(ctx, sends, recvs, grads[0])
        grad_x = grads[0].new_zeros(shape)
        for (_, _, rows, cols), block in zip(outgoing, got, strict=True):
            _region(grad_x, rows, cols).add_(block)
        return grad_x, None


class HaloFrame:
    """The halo-padded tile of a `PendingHalo`, assembled only where a layer asks (`window`)."""

    def __init__(
        self,
        x: torch.Tensor,
        widths: tuple[int, int, int, int],
        blocks: dict[tuple[int, int], torch.Tensor],
    ) -> None:
        self.x, self.blocks = x, blocks
        self.top, self.bottom, self.left, self.right = widths

    def has(self, direction: tuple[int, int]) -> bool:
        """Whether a neighbour sent the halo of `direction` (False past the scene's edge)."""
        return direction in self.blocks

    def _bands(self, axis: int) -> list[tuple[int, int, int]]:
        """(step, padded start, extent) of the three bands along `axis` (0 rows, 1 columns)."""
        before, after = (self.top, self.bottom) if axis == 0 else (self.left, self.right)
        extent = self.x.shape[-2 + axis]
        return [(-1, 0, before), (0, before, extent), (1, before + extent, after)]

    def window(self, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        """Padded rows [rows[0], rows[1]) x padded columns [cols[0], cols[1]) of the padded tile.

        Padded row `top` is the tile's row 0 (and likewise for columns); pixels past the scene's edge are 0. A
        view where the window lies in one block, else a new tensor in the tile's memory format: a channels-last
        tile (the ConvNeXt and Swin features are) gives a channels-last window, whose convolutions and bilinear
        resizes run 1.2x-3x faster on CPU than on the contiguous one that concatenation would make of it.
        """
        pieces = self._pieces(rows, cols)
        if len(pieces) == 1 and pieces[0][2] is not None:
            return pieces[0][2]
        window = torch.empty(
            (*self.x.shape[:-2], rows[1] - rows[0], cols[1] - cols[0]),
            dtype=self.x.dtype,
            device=self.x.device,
            memory_format=memory_format_of(self.x),
        )
        for at_rows, at_cols, part in pieces:
            if part is None:
                window[..., at_rows, at_cols].zero_()
            else:
                window[..., at_rows, at_cols].copy_(part)
        return window

    def _pieces(
        self, rows: tuple[int, int], cols: tuple[int, int]
    ) -> list[tuple[slice, slice, torch.Tensor | None]]:
        """The blocks a window of padded `rows` x `cols` overlaps: where each one's part lies in the window
        (rows, columns) and that part (a view; None past the scene's edge)."""
        pieces = []
        for row_step, row_start, row_extent in self._bands(0):
            r0, r1 = max(rows[0], row_start), min(rows[1], row_start + row_extent)
            for col_step, col_start, col_extent in self._bands(1):
                c0, c1 = max(cols[0], col_start), min(cols[1], col_start + col_extent)
                if r0 >= r1 or c0 >= c1:
                    continue
                block = self.x if (row_step, col_step) == (0, 0) else self.blocks.get((row_step, col_step))
                part = (
                    None
                    if block is None
                    else block[..., r0 - row_start : r1 - row_start, c0 - col_start : c1 - col_start]
                )
                pieces.append((slice(r0 - rows[0], r1 - rows[0]), slice(c0 - cols[0], c1 - cols[0]), part))
        return pieces


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last where the channels are the innermost dimension of a 4-D map (a channels-last map or a
    view of one), else the contiguous format: the format a copy of `x` should keep."""
    if x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 1:
        return torch.channels_last
    return torch.contiguous_format


def start_halos(
    tensors: list[torch.Tensor], ctx: SpatialContext, widths: list[tuple[int, int, int, int]]
) -> list[PendingHalo]:
    """Begin sending the borders of several tiles (each (..., h_i, w_i), its own (top, bottom, left, right)) in
    one non-blocking all-to-all; `wait()` on each result gives that tile's frame.

    Every rank of the spatial group must call it with the same widths, and then `wait()`, in the same order as
    its other collectives, and use each frame's halo wherever a neighbour sent one (backward is a collective).
    Widths must not exceed the neighbouring tiles (the model's input check ensures it); when gradients flow,
    both sides of an axis must have the same width.

    Raises:
        ValueError: for uneven widths on an axis when a tile requires gradients.
    """
    pendings = [PendingHalo(x, ctx, tuple(w)) for x, w in zip(tensors, widths, strict=True)]
    if pendings:
        exchange = _Exchange(pendings)
        for pending in pendings:
            pending.exchange = exchange
    return pendings


def start_halo(
    x: torch.Tensor, ctx: SpatialContext, top: int, bottom: int, left: int, right: int
) -> PendingHalo:
    """Begin sending this tile's (..., h, w) borders to its neighbours; `wait()` on the result gives the frame
    (see `start_halos`)."""
    return start_halos([x], ctx, [(top, bottom, left, right)])[0]


__all__ = ["HaloFrame", "PendingHalo", "ReceivedHalo", "memory_format_of", "start_halo", "start_halos"]
