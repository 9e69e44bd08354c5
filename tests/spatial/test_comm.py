"""Communication primitives against the unsplit operation, in 2-4 gloo processes, fp64.

Every rank builds the whole reference tensors from a shared seed, runs the unsplit operation with autograd,
and compares its own part of the output and of the input gradient with what the primitive gives. Upstream
gradients are drawn for the whole output (the outputs of all ranks), so the backward of every primitive is
checked against the gradient of one global objective.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rest_hf.spatial.comm import (
    all_gather_uneven,
    all_reduce_sum,
    all_to_all_uneven,
    distributed_roll,
    halo_exchange,
    heads_to_tokens,
    sum_partials,
    tokens_to_heads,
)
from rest_hf.spatial.comm_halo import memory_format_of, start_halo
from rest_hf.spatial.context import SpatialContext
from rest_hf.spatial.partition import TileRule
from tests.multiprocess import run_in_processes

DT = torch.float64
TOL = {"rtol": 1e-12, "atol": 1e-12}


def _rand(seed: int, *shape: int, dtype=DT) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


# ---------------------------------------------------------------------------------------------- halo exchange


def check_halo(
    ctx: SpatialContext, height: int, width: int, alignment: int, widths, lead=(2, 3), dtype=DT, seed=0
):
    top, bottom, left, right = widths
    part = ctx.partition(height, width, TileRule(alignment=alignment))
    whole = _leaf(_rand(seed, *lead, height, width, dtype=dtype))
    x = _leaf(part.local(whole))
    y = halo_exchange(x, ctx, top, bottom, left, right)

    padded = F.pad(whole, (left, right, top, bottom))
    boxes = part.boxes()
    refs = [padded[..., b.top : b.bottom + top + bottom, b.left : b.right + left + right] for b in boxes]
    ref = refs[ctx.rank]
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert torch.equal(y, ref), f"halo {widths} forward differs at rank {ctx.rank}"

    upstream = [_rand(seed + 1 + r, *t.shape, dtype=dtype) for r, t in enumerate(refs)]
    y.backward(upstream[ctx.rank])
    sum((g * t).sum() for g, t in zip(upstream, refs, strict=True)).backward()
    tol = TOL if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-6}  # corners sum 4 terms in any order
    torch.testing.assert_close(x.grad, part.local(whole.grad), **tol)


def check_halo_in_flight(
    ctx: SpatialContext, height: int, width: int, alignment: int, widths, seed=0, channels_last=False
):
    """`start_halo`: every window of its frame is that region of the zero-padded scene, in the tile's memory
    format, and (for equal widths on both sides of an axis) the received blocks send their gradient back to
    the tiles they came from."""
    top, bottom, left, right = widths
    differentiable = top == bottom and left == right
    part = ctx.partition(height, width, TileRule(alignment=alignment))
    whole = _leaf(_rand(seed, 2, 3, height, width))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = _leaf(part.local(whole).contiguous(memory_format=layout))
    with torch.set_grad_enabled(differentiable):
        frame = start_halo(x, ctx, top, bottom, left, right).wait()
        box = part.boxes()[ctx.rank]
        padded_rows, padded_cols = box.height + top + bottom, box.width + left + right
        full = frame.window((0, padded_rows), (0, padded_cols))
    padded = F.pad(whole, (left, right, top, bottom))
    refs = [
        padded[..., b.top : b.bottom + top + bottom, b.left : b.right + left + right] for b in part.boxes()
    ]
    assert torch.equal(full, refs[ctx.rank]), f"frame {widths} differs at rank {ctx.rank}"
    assert memory_format_of(full) == layout
    # A window that cuts through the bands (what a layer's edge strip reads).
    rows, cols = (1, padded_rows - 1), (max(0, left - 1), min(padded_cols, left + 2))
    assert torch.equal(frame.window(rows, cols), refs[ctx.rank][..., rows[0] : rows[1], cols[0] : cols[1]])
    for direction, peer in (((-1, 0), top), ((1, 0), bottom), ((0, -1), left), ((0, 1), right)):
        assert frame.has(direction) == (ctx.neighbour(*direction) is not None and peer > 0)
    if not differentiable:
        with pytest.raises(ValueError, match="needs equal widths on both sides of an axis"):
            start_halo(x, ctx, top, bottom, left, right)
        return
    upstream = [_rand(seed + 1 + r, *t.shape) for r, t in enumerate(refs)]
    full.backward(upstream[ctx.rank])
    sum((g * t).sum() for g, t in zip(upstream, refs, strict=True)).backward()
    torch.testing.assert_close(x.grad, part.local(whole.grad), **TOL)


def check_halo_errors(ctx: SpatialContext, height: int, width: int):
    part = ctx.partition(height, width, TileRule(alignment=2))
    x = part.local(torch.zeros(1, height, width, dtype=DT))
    rows, cols = ctx.grid
    if rows > 1:
        # tile row 0 is 6 rows tall: a top halo of 7 would need 7 rows of it
        with pytest.raises(
            ValueError, match="top halo of 7 rows is wider than tile row 0, which is only 6 rows"
        ):
            halo_exchange(x, ctx, 7, 0, 0, 0)
    if cols > 1:
        # right halos come from tile columns 1.. ; one wider than all of them fails first at column 1
        right = max(b.width for b in part.boxes() if b.col > 0) + 1
        with pytest.raises(
            ValueError, match=f"right halo of {right} columns is wider than tile column 1, which"
        ):
            halo_exchange(x, ctx, 0, 0, 0, right)
    with pytest.raises(ValueError, match="ranks passed different arguments"):
        halo_exchange(x, ctx, 1, 1, 1 + ctx.rank, 1)


# ------------------------------------------------------------------------------------------- distributed roll


def check_roll(
    ctx: SpatialContext, height: int, width: int, alignment: int, shifts, channels_last: bool, seed=0
):
    part = ctx.partition(height, width, TileRule(alignment=alignment))
    whole = _leaf(_rand(seed, 2, 3, height, width))
    dims = (-2, -1)
    if channels_last:  # (B, H, W, C) as in Swin
        whole = _leaf(whole.permute(0, 2, 3, 1))
        dims = (1, 2)
    to_local = (
        (lambda t: part.local(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)) if channels_last else part.local
    )
    x = _leaf(to_local(whole))
    y = distributed_roll(x, ctx, shifts=shifts, dims=dims)
    rolled = torch.roll(whole, shifts, dims)
    assert torch.equal(y, to_local(rolled)), f"roll {shifts} forward differs at rank {ctx.rank}"
    upstream = _rand(seed + 7, *rolled.shape)
    y.backward(to_local(upstream))
    (upstream * rolled).sum().backward()
    torch.testing.assert_close(x.grad, to_local(whole.grad), **TOL)


def check_roll_errors(ctx: SpatialContext, height: int, width: int):
    part = ctx.partition(height, width, TileRule(alignment=2))
    x = part.local(torch.zeros(1, height, width, dtype=DT))
    for axis in (0, 1):
        if ctx.grid[axis] == 1:
            continue
        smallest = min(b.height if axis == 0 else b.width for b in part.boxes())
        shifts = [0, 0]
        shifts[axis] = -(smallest + 1)
        message = (
            f"shift of -{smallest + 1} along dim {axis + 1} exceeds the smallest tile \\({smallest} along"
        )
        with pytest.raises(ValueError, match=message):
            distributed_roll(x, ctx, shifts=tuple(shifts), dims=(-2, -1))


# ------------------------------------------------------------------------------------------------ reductions


def check_reductions(ctx: SpatialContext, seed=0):
    size = ctx.size
    everyone = [_rand(seed + r, 3, 4) for r in range(size)]
    upstream = [_rand(seed + 100 + r, 3, 4) for r in range(size)]

    # all_reduce_sum: forward sum; rank r back-propagates its own upstream; the gradient of every x is their sum
    x = _leaf(everyone[ctx.rank])
    y = all_reduce_sum(x, ctx)
    torch.testing.assert_close(y, sum(everyone), **TOL)
    y.backward(upstream[ctx.rank])
    leaves = [_leaf(t) for t in everyone]
    total = sum(leaves)
    sum((g * total).sum() for g in upstream).backward()
    torch.testing.assert_close(x.grad, leaves[ctx.rank].grad, **TOL)
    torch.testing.assert_close(x.grad, sum(upstream), **TOL)

    # sum_partials: forward sum; every rank back-propagates the same upstream of the one total; identity rule
    x = _leaf(everyone[ctx.rank])
    y = sum_partials(x, ctx)
    torch.testing.assert_close(y, sum(everyone), **TOL)
    y.backward(upstream[0])
    torch.testing.assert_close(x.grad, upstream[0], **TOL)


def check_all_gather(ctx: SpatialContext, seed=0):
    size = ctx.size
    sizes = [3 + (2 * r) % 5 for r in range(size)]  # uneven: 3, 5, 7, 4, ...
    everyone = [_rand(seed + r, 2, sizes[r], 4) for r in range(size)]
    upstream = [_rand(seed + 50 + r, 2, sum(sizes), 4) for r in range(size)]
    for given in (None, sizes):
        x = _leaf(everyone[ctx.rank])
        y = all_gather_uneven(x, ctx, dim=1, sizes=given)
        leaves = [_leaf(t) for t in everyone]
        ref = torch.cat(leaves, dim=1)
        assert torch.equal(y, ref)
        y.backward(upstream[ctx.rank])
        sum((g * ref).sum() for g in upstream).backward()
        torch.testing.assert_close(x.grad, leaves[ctx.rank].grad, **TOL)
    with pytest.raises(ValueError, match="shapes outside dim 1 differ"):
        all_gather_uneven(torch.zeros(2, 3, 4 + ctx.rank, dtype=DT), ctx, dim=1)


def check_partition_gather(ctx: SpatialContext, height: int, width: int, seed=0):
    part = ctx.partition(height, width, TileRule(alignment=2))
    whole = _rand(seed, 2, height, width)
    x = _leaf(part.local(whole))
    gathered = part.gather(x)
    assert torch.equal(gathered, whole)
    upstream = [_rand(seed + 30 + r, 2, height, width) for r in range(ctx.size)]
    gathered.backward(upstream[ctx.rank])
    torch.testing.assert_close(x.grad, part.local(sum(upstream)), **TOL)


# ----------------------------------------------------------------------------------------- Ulysses all-to-all


def check_ulysses(ctx: SpatialContext, seed=0):
    size, heads, d = ctx.size, 2 * ctx.size, 4
    counts = [5 + (3 * r) % 4 for r in range(size)]  # uneven token counts per tile
    offsets = [sum(counts[:r]) for r in range(size + 1)]
    mine = slice(offsets[ctx.rank], offsets[ctx.rank + 1])
    q_all, k_all, v_all = (_leaf(_rand(seed + i, 2, heads, offsets[-1], d)) for i in range(3))
    q, k, v = (_leaf(t[:, :, mine]) for t in (q_all, k_all, v_all))

    got_counts, q_scene = heads_to_tokens(q, ctx)
    assert list(got_counts) == counts
    per = heads // size
    torch.testing.assert_close(q_scene, q_all[:, ctx.rank * per : (ctx.rank + 1) * per], **TOL)
    _, k_scene = heads_to_tokens(k, ctx, got_counts)
    _, v_scene = heads_to_tokens(v, ctx, got_counts)
    out = tokens_to_heads(F.scaled_dot_product_attention(q_scene, k_scene, v_scene), ctx, got_counts)

    ref = F.scaled_dot_product_attention(q_all, k_all, v_all)
    torch.testing.assert_close(out, ref[:, :, mine], rtol=1e-10, atol=1e-10)
    upstream = _rand(seed + 9, *ref.shape)
    out.backward(upstream[:, :, mine])
    (upstream * ref).sum().backward()
    for local, whole in ((q, q_all), (k, k_all), (v, v_all)):
        torch.testing.assert_close(local.grad, whole.grad[:, :, mine], rtol=1e-10, atol=1e-10)

    # the generic form: scatter tokens unevenly, gather an even split of channels, and back
    x = _leaf(_rand(seed + 20 + ctx.rank, 3, 2 * size, counts[ctx.rank]))
    y = all_to_all_uneven(x, ctx, scatter_dim=1, gather_dim=2)
    assert y.shape == (3, 2, offsets[-1])
    back = all_to_all_uneven(
        y, ctx, scatter_dim=2, gather_dim=1, scatter_sizes=counts, gather_sizes=[2] * size
    )
    assert torch.equal(back, x)
    back.backward(torch.ones_like(back))
    assert torch.equal(x.grad, torch.ones_like(x))
    with pytest.raises(ValueError, match=f"{heads + 1} heads do not divide by {size} processes"):
        heads_to_tokens(torch.zeros(1, heads + 1, 3, d, dtype=DT), ctx)


# ------------------------------------------------------------------------------------------------- the runs


def _all_checks(ctx: SpatialContext):
    rows, cols = ctx.grid
    # alignment 2, uneven tiles: tile rows 6, ..., 6, 7 px; tile columns e.g. 11 | 8 + 9 | 8 + 8 + 7 | 8 + 8 + 6 + 7
    height, width = 6 * rows + 1, 6 * cols + 5
    for widths in ((1, 1, 1, 1), (2, 1, 3, 0), (0, 2, 0, 2), (3, 3, 3, 3)):
        check_halo(ctx, height, width, 2, widths)
    check_halo(ctx, height, width, 2, (1, 2, 2, 1), lead=(), seed=3)  # (H, W)
    check_halo(ctx, height, width, 2, (1, 1, 1, 1), lead=(4,), dtype=torch.float32, seed=4)  # (C, H, W), fp32
    check_halo(ctx, 4 * rows + 1, 4 * cols + 2, 4, (4, 4, 4, 4), seed=5)  # halo as wide as the smallest tile
    for widths in ((1, 1, 1, 1), (3, 3, 3, 3), (2, 2, 0, 0), (0, 0, 1, 1), (2, 1, 3, 0), (0, 2, 0, 2)):
        check_halo_in_flight(ctx, height, width, 2, widths)
    for widths in ((1, 1, 1, 1), (2, 1, 3, 0)):
        check_halo_in_flight(ctx, height, width, 2, widths, seed=6, channels_last=True)
    check_halo_errors(ctx, height, width)
    for shifts in ((3, -2), (-3, 2), (1, 0), (0, -1)):
        for channels_last in (False, True):
            check_roll(ctx, height, width, 2, shifts, channels_last)
    check_roll(
        ctx, 4 * rows + 1, 4 * cols + 2, 4, (4, -4), True, seed=2
    )  # shift as large as the smallest tile
    check_roll_errors(ctx, height, width)
    check_reductions(ctx)
    check_all_gather(ctx)
    check_partition_gather(ctx, height, width)
    check_ulysses(ctx)


def _run_grids(rank: int, nprocs: int, grids: list[str]):
    """Each grid in turn; a grid smaller than the world runs in several spatial groups at once (dp > 1)."""
    for grid in grids:
        ctx = SpatialContext.init(grid)
        assert ctx.size * ctx.dp_size == nprocs and ctx.global_ranks[ctx.rank] == rank
        try:
            _all_checks(ctx)
        except Exception as error:
            raise AssertionError(
                f"grid {grid} (spatial rank {ctx.rank}, dp rank {ctx.dp_rank}) failed"
            ) from error


def test_primitives_match_unsplit_ops_4_processes():
    run_in_processes(_run_grids, 4, ["2x2", "1x2", "2x1", "1x4"])


def test_primitives_match_unsplit_ops_3_processes():
    run_in_processes(_run_grids, 3, ["1x3", "3x1"])


def test_single_process_is_the_local_op():
    ctx = SpatialContext.trivial()
    x = _rand(0, 2, 5, 6)
    torch.testing.assert_close(halo_exchange(x, ctx, 1, 2, 3, 0), F.pad(x, (3, 0, 1, 2)))
    assert torch.equal(start_halo(x, ctx, 1, 2, 3, 0).wait().window((0, 8), (0, 9)), F.pad(x, (3, 0, 1, 2)))
    torch.testing.assert_close(distributed_roll(x, ctx, (7, -9), (-2, -1)), torch.roll(x, (7, -9), (-2, -1)))
    assert all_reduce_sum(x, ctx) is x and sum_partials(x, ctx) is x
    assert all_gather_uneven(x, ctx, dim=1) is x
    counts, same = heads_to_tokens(x.reshape(1, 2, 5, 6), ctx)
    assert counts == (5,) and tokens_to_heads(same, ctx, counts).shape == (1, 2, 5, 6)
    part = ctx.partition(5, 6, TileRule())
    assert part.gather(part.local(x)) is not None and torch.equal(part.gather(part.local(x)), x)
