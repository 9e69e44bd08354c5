"""Collectives with uneven sizes: all-gather and all-to-all (Ulysses attention), and the exchange they share.

`exchange` is one `all_to_all_single` that carries any set of point-to-point messages of a spatial group;
`comm.py` builds the halo exchange and the distributed roll on it. `gather_ints` carries small metadata on the
context's metadata device (the CPU under gloo or ``cpu:gloo,cuda:nccl``, the GPU under NCCL alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from .context import SpatialContext


def exchange(
    ctx: SpatialContext,
    sends: list[tuple[int, torch.Tensor]],
    recvs: list[tuple[int, list[int]]],
    like: torch.Tensor,
) -> list[torch.Tensor]:
    """One all_to_all_single over the spatial group: send `sends` (destination spatial rank, tensor), return the
    tensors of `recvs` (source spatial rank, shape) in their order. Messages between one pair of ranks arrive in
    the order they were listed by the sender, which must match the receiver's listing."""
    size = ctx.size
    outgoing: list[list[torch.Tensor]] = [[] for _ in range(size)]
    for dst, tensor in sends:
        outgoing[dst].append(tensor.reshape(-1))
    incoming = [0] * size
    for src, shape in recvs:
        incoming[src] += math.prod(shape)
    flat = [t for per_rank in outgoing for t in per_rank]
    send = torch.cat(flat) if flat else like.new_empty(0)
    recv = like.new_empty(sum(incoming))
    dist.all_to_all_single(
        recv,
        send.contiguous(),
        output_split_sizes=incoming,
        input_split_sizes=[sum(t.numel() for t in per_rank) for per_rank in outgoing],
        group=ctx.group,
    )
    chunks, offsets, received = recv.split(incoming), [0] * size, []
    for src, shape in recvs:
        n = math.prod(shape)
        received.append(chunks[src][offsets[src] : offsets[src] + n].view(shape))
        offsets[src] += n
    return received


def gather_ints(values: Sequence[int], ctx: SpatialContext) -> list[list[int]]:
    """Every spatial rank's list of `values` (same length on every rank), in spatial-rank order.

    Travels on `ctx.metadata_device`, which the group's backend accepts."""
    if ctx.size == 1:
        return [list(values)]
    local = torch.tensor(list(values), dtype=torch.int64, device=ctx.metadata_device)
    everyone = [torch.empty_like(local) for _ in range(ctx.size)]
    dist.all_gather(everyone, local, group=ctx.group)
    return torch.stack(everyone).tolist()


def with_extent(shape: Sequence[int], dim: int, value: int) -> list[int]:
    """`shape` with its extent along `dim` set to `value`."""
    out = list(shape)
    out[dim] = value
    return out


# ------------------------------------------------------------------------------------------------ all-gather


class AllGatherUneven(torch.autograd.Function):
    """Concatenation along `dim` of every rank's tensor; `sizes[r]` is rank r's extent along `dim`.

    FORWARD: y = cat([x_0, ..., x_{P-1}], dim), the same on every rank (gathered padded to max(sizes), then
    trimmed, since gloo's all_gather needs equal sizes).
    BACKWARD: grad x_r = sum over ranks r' of the slice of grad y_{r'} that belongs to x_r: every rank sends
    slice r of its gradient to rank r (one uneven all_to_all_single), which adds the P slices up. Each rank
    back-propagates its own use of y, so x_r's gradient is the sum of all those uses.
    """

    @staticmethod
    def forward(actx, x, ctx, dim, sizes):
        actx.args = (ctx, dim, sizes)
        most = max(sizes)
        padded = x
        if x.shape[dim] < most:
            padded = torch.cat([x, x.new_zeros(with_extent(x.shape, dim, most - x.shape[dim]))], dim)
        padded = padded.contiguous()
        everyone = [torch.empty_like(padded) for _ in range(ctx.size)]
        dist.all_gather(everyone, padded, group=ctx.group)
        return torch.cat([t.narrow(dim, 0, s) for t, s in zip(everyone, sizes, strict=True)], dim)

    @staticmethod
    def backward(actx, grad):
        ctx, dim, sizes = actx.args
        mine = with_extent(grad.shape, dim, sizes[ctx.rank])
        parts = exchange(
            ctx, list(enumerate(grad.split(sizes, dim))), [(r, mine) for r in range(ctx.size)], grad
        )
        return torch.stack(parts).sum(0), None, None, None


def all_gather_uneven(
    x: torch.Tensor, ctx: SpatialContext, dim: int, sizes: Sequence[int] | None = None
) -> torch.Tensor:
    """Every rank's `x` concatenated along `dim` in spatial-rank order, on every rank (see `AllGatherUneven`).

    Extents along `dim` may differ between ranks; all other dims must be equal. `sizes` (every rank's extent
    along `dim`) saves one small all-gather when the caller knows them.

    Raises:
        ValueError: on every rank, if the ranks' tensors differ outside `dim` (only checked when `sizes` is None).
    """
    if ctx.size == 1:
        return x
    dim = dim % x.dim()
    if sizes is None:
        if x.dim() > 10:
            raise ValueError(f"all_gather_uneven supports up to 10 dims, got {x.dim()}")
        others = [-1 if d == dim else s for d, s in enumerate(x.shape)]
        info = gather_ints([x.shape[dim], x.dim(), dim, *others, *[-2] * (10 - x.dim())], ctx)
        if any(i[1:] != info[0][1:] for i in info):
            shapes = [tuple(i[3 : 3 + i[1]]) for i in info]
            raise ValueError(f"all_gather_uneven: shapes outside dim {dim} differ between ranks: {shapes}")
        sizes = [i[0] for i in info]
    sizes = [int(s) for s in sizes]
    if len(sizes) != ctx.size or x.shape[dim] != sizes[ctx.rank]:
        raise ValueError(f"all_gather_uneven: sizes {sizes} do not match this rank's extent {x.shape[dim]}")
    return AllGatherUneven.apply(x, ctx, dim, sizes)


# ------------------------------------------------------------------------------------------------ all-to-all


def _all_to_all(x, ctx, scatter_dim, gather_dim, scatter_sizes, gather_sizes):
    me = ctx.rank
    if x.shape[scatter_dim] != sum(scatter_sizes) or x.shape[gather_dim] != gather_sizes[me]:
        raise ValueError(
            f"all_to_all: a tensor of shape {tuple(x.shape)} cannot be scattered by {list(scatter_sizes)} along dim "
            f"{scatter_dim} and gathered by {list(gather_sizes)} along dim {gather_dim} at spatial rank {me}"
        )
    sends = list(enumerate(x.split(list(scatter_sizes), scatter_dim)))
    recvs = []
    for r in range(ctx.size):
        shape = with_extent(x.shape, scatter_dim, scatter_sizes[me])
        recvs.append((r, with_extent(shape, gather_dim, gather_sizes[r])))
    return torch.cat(exchange(ctx, sends, recvs, x), gather_dim)


class AllToAllUneven(torch.autograd.Function):
    """Scatter along one dim, gather along another: rank r sends block j of its x (`scatter_sizes[j]` along
    `scatter_dim`) to rank j; rank j concatenates the blocks of all ranks along `gather_dim` in rank order
    (rank r's extent along `gather_dim` is `gather_sizes[r]`).

    FORWARD: y_j = cat_r(split(x_r, scatter_sizes, scatter_dim)[j], gather_dim).
    BACKWARD: the inverse all-to-all (a permutation of blocks; its adjoint is its inverse): scatter the gradient
    along `gather_dim` by `gather_sizes`, gather along `scatter_dim` by `scatter_sizes`.
    """

    @staticmethod
    def forward(actx, x, ctx, scatter_dim, gather_dim, scatter_sizes, gather_sizes):
        actx.args = (ctx, gather_dim, scatter_dim, gather_sizes, scatter_sizes)
        return _all_to_all(x, ctx, scatter_dim, gather_dim, scatter_sizes, gather_sizes)

    @staticmethod
    def backward(actx, grad):
        return _all_to_all(grad, *actx.args), None, None, None, None, None


def all_to_all_uneven(
    x: torch.Tensor,
    ctx: SpatialContext,
    scatter_dim: int,
    gather_dim: int,
    scatter_sizes: Sequence[int] | None = None,
    gather_sizes: Sequence[int] | None = None,
) -> torch.Tensor:
    """Differentiable all-to-all (see `AllToAllUneven`); identity for one process.

    `scatter_sizes` defaults to an even split (the extent must divide by the group size); `gather_sizes`
    (every rank's extent along `gather_dim`) defaults to one small all-gather.
    """
    if ctx.size == 1:
        return x
    scatter_dim, gather_dim = scatter_dim % x.dim(), gather_dim % x.dim()
    if scatter_sizes is None:
        if x.shape[scatter_dim] % ctx.size:
            raise ValueError(
                f"all_to_all: extent {x.shape[scatter_dim]} of dim {scatter_dim} does not divide by {ctx.size} ranks"
            )
        scatter_sizes = [x.shape[scatter_dim] // ctx.size] * ctx.size
    if gather_sizes is None:
        gather_sizes = [i[0] for i in gather_ints([x.shape[gather_dim]], ctx)]
    return AllToAllUneven.apply(
        x, ctx, scatter_dim, gather_dim, [int(s) for s in scatter_sizes], [int(s) for s in gather_sizes]
    )


def heads_to_tokens(
    x: torch.Tensor, ctx: SpatialContext, token_counts: Sequence[int] | None = None
) -> tuple[tuple[int, ...], torch.Tensor]:
    """Ulysses step 1: (..., heads, N_tile, d) -> (token_counts, (..., heads/P, N_scene, d)).

    Rank r gets heads ``[r * heads/P, (r + 1) * heads/P)`` of the tokens of every tile, concatenated in
    spatial-rank order. `token_counts` (N_tile of every rank) are gathered when not given and returned for
    `tokens_to_heads`. Backward: the inverse all-to-all.

    Raises:
        ValueError: if heads do not divide by the group size.
    """
    heads, tokens = x.dim() - 3, x.dim() - 2
    if ctx.size == 1:
        return (x.shape[tokens],), x
    if x.shape[heads] % ctx.size:
        raise ValueError(f"heads_to_tokens: {x.shape[heads]} heads do not divide by {ctx.size} processes")
    if token_counts is None:
        token_counts = [i[0] for i in gather_ints([x.shape[tokens]], ctx)]
    counts = tuple(int(n) for n in token_counts)
    split = [x.shape[heads] // ctx.size] * ctx.size
    return counts, AllToAllUneven.apply(x, ctx, heads, tokens, split, list(counts))


def tokens_to_heads(x: torch.Tensor, ctx: SpatialContext, token_counts: Sequence[int]) -> torch.Tensor:
    """Ulysses step 2, the inverse of `heads_to_tokens`: (..., heads/P, N_scene, d) -> (..., heads, N_tile, d).

    Backward: the inverse all-to-all.
    """
    if ctx.size == 1:
        return x
    heads, tokens = x.dim() - 3, x.dim() - 2
    counts = [int(n) for n in token_counts]
    return AllToAllUneven.apply(x, ctx, tokens, heads, counts, [x.shape[heads]] * ctx.size)
