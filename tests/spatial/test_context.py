"""SpatialContext: the trivial context without torch.distributed, and the (dp, sp) mesh in 4 processes."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from rest_hf.spatial.context import SpatialContext, _grids_that_fit
from rest_hf.spatial.partition import TileRule
from tests.multiprocess import run_in_processes


def test_trivial_context_without_distributed():
    assert not dist.is_initialized()
    for ctx in (
        SpatialContext.trivial(),
        SpatialContext.init(),
        SpatialContext.init("1x1"),
        SpatialContext.init((1, 1)),
    ):
        assert ctx.group is None and ctx.grid == (1, 1) and ctx.coord == (0, 0) and ctx.rank == 0
        assert ctx.size == 1 and not ctx.is_distributed and ctx.global_ranks == (0,)
        assert ctx.dp_group is None and (ctx.dp_rank, ctx.dp_size) == (0, 1)
        assert ctx.is_first_row and ctx.is_last_row and ctx.is_first_col and ctx.is_last_col
        assert (
            ctx.neighbour(1, 0) is None
            and ctx.neighbour(0, -1) is None
            and ctx.neighbour(1, 1, wrap=True) == 0
        )
        part = ctx.partition(300, 200, TileRule(alignment=224))
        assert part.row_edges == (0, 300) and part.col_edges == (0, 200) and part.ctx is ctx


def test_grid_without_distributed_says_how_to_launch():
    with pytest.raises(
        ValueError,
        match=r"grid 2x1 needs 2 processes, but torch.distributed is not initialised; launch with `torchrun --nproc-per-node 2",
    ):
        SpatialContext.init("2x1")
    with pytest.raises(ValueError, match="accelerate launch --num-processes 6"):
        SpatialContext.init((2, 3))
    with pytest.raises(ValueError, match="is not ROWSxCOLS"):
        SpatialContext.init("2by2")


def test_grids_that_fit_a_world():
    assert _grids_that_fit(6) == ["2x3", "3x2", "1x6", "6x1", "1x3", "3x1"]
    assert _grids_that_fit(4)[:3] == ["2x2", "1x4", "4x1"]
    assert _grids_that_fit(1) == ["1x1"]


def test_neighbours_and_flags_of_a_grid():
    ctx = SpatialContext(grid=(2, 3), coord=(1, 0), rank=3, global_ranks=tuple(range(6)))
    assert (ctx.rows, ctx.cols, ctx.size) == (2, 3, 6) and ctx.is_distributed
    assert not ctx.is_first_row and ctx.is_last_row and ctx.is_first_col and not ctx.is_last_col
    assert ctx.neighbour(-1, 0) == 0 and ctx.neighbour(0, 1) == 4 and ctx.neighbour(-1, 1) == 1
    assert ctx.neighbour(1, 0) is None and ctx.neighbour(0, -1) is None
    assert ctx.neighbour(1, 0, wrap=True) == 0 and ctx.neighbour(0, -1, wrap=True) == 5
    assert ctx.global_rank_of(4) == 4
    part = ctx.partition(100, 90, TileRule(alignment=10))
    assert part.coord == (1, 0) and part.box().top == 50 and part.box().width == 30


def _sum(value: int, group) -> int:
    t = torch.tensor([float(value)])
    dist.all_reduce(t, group=group)
    return int(t.item())


def _mesh_checks(rank: int, nprocs: int):
    # grid None: every process in one scene, most square grid
    ctx = SpatialContext.init()
    assert ctx.grid == (2, 2) and ctx.coord == divmod(rank, 2) and ctx.rank == rank
    assert ctx.global_ranks == (0, 1, 2, 3) and (ctx.dp_group, ctx.dp_rank, ctx.dp_size) == (None, 0, 1)
    assert dist.get_rank(ctx.group) == rank and _sum(rank, ctx.group) == 6
    assert ctx.neighbour(0, 1) == {0: 1, 1: None, 2: 3, 3: None}[rank]
    assert ctx.neighbour(1, 0) == {0: 2, 1: 3, 2: None, 3: None}[rank]

    # 2x1 scenes in 4 processes: dp = 2; spatial groups {0, 1} and {2, 3}; dp groups {0, 2} and {1, 3}
    ctx = SpatialContext.init("2x1")
    assert (ctx.grid, ctx.size, ctx.dp_size) == ((2, 1), 2, 2)
    assert (ctx.rank, ctx.dp_rank, ctx.coord) == (rank % 2, rank // 2, (rank % 2, 0))
    assert ctx.global_ranks == ((0, 1) if rank < 2 else (2, 3)) and ctx.global_rank_of(ctx.rank) == rank
    assert dist.get_rank(ctx.group) == ctx.rank and dist.get_rank(ctx.dp_group) == ctx.dp_rank
    assert _sum(rank, ctx.group) == (1 if rank < 2 else 5)
    assert _sum(rank, ctx.dp_group) == (2 if rank % 2 == 0 else 4)
    assert ctx.neighbour(1, 0) == (1 if ctx.rank == 0 else None)

    # 1x1 scenes: dp = 4 and no spatial group
    ctx = SpatialContext.init("1x1")
    assert ctx.group is None and ctx.size == 1 and (ctx.dp_rank, ctx.dp_size) == (rank, 4)
    assert ctx.global_ranks == (rank,) and _sum(rank, ctx.dp_group) == 6

    ctx = SpatialContext.init((1, 4))
    assert ctx.coord == (0, rank) and ctx.dp_size == 1 and _sum(1, ctx.group) == 4

    with pytest.raises(ValueError) as error:
        SpatialContext.init("1x3")
    assert str(error.value).startswith(
        "grid 1x3 needs 3 processes per scene but the world has 4; use --grid 2x2, 1x4, 4x1, 1x2, 2x1"
    )
    with pytest.raises(ValueError, match="needs 8 processes per scene but the world has 4"):
        SpatialContext.init("2x4")
    dist.barrier()  # the failed inits left every rank in step


def test_mesh_in_four_processes():
    run_in_processes(_mesh_checks, 4)
