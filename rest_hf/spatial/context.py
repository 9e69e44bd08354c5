"""Which tile of which scene this process holds: the (data-parallel x spatial) process mesh.

Processes are started by `torchrun` or `accelerate launch` (which initialise `torch.distributed`); one
process alone needs nothing. The world of W processes forms a (dp, sp) mesh with sp = rows * cols: spatial
group g holds global ranks ``[g * sp, (g + 1) * sp)`` and shares one scene, split into a `rows x cols` grid of
tiles (spatial rank ``s = row * cols + col`` holds tile (row, col)); the data-parallel groups join the ranks
with the same spatial rank across spatial groups, which read different scenes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .. import distributed
from .comm import all_gather_uneven
from .partition import TilePartition, TileRule, most_square_grid, parse_grid


def _grids_that_fit(world: int, limit: int = 6) -> list[str]:
    grids = [
        (r, c) for r in range(1, world + 1) for c in range(1, world + 1) if r * c > 1 and world % (r * c) == 0
    ]
    grids.sort(key=lambda g: (-g[0] * g[1], abs(g[0] - g[1]), g[0]))
    return [f"{r}x{c}" for r, c in grids[:limit]] or ["1x1"]


@dataclass(frozen=True)
class SpatialContext:
    """This process's place in the mesh.

    Attributes:
        group: Process group of the spatial group (None when it has one process).
        grid: ``(rows, cols)`` of tiles per scene.
        coord: ``(row, col)`` of this process's tile.
        rank: Rank within the spatial group, ``row * cols + col`` (also the rank within `group`).
        global_ranks: Global rank of every spatial rank of this group.
        dp_group: Process group of the data-parallel group (None when dp_size is 1).
        dp_rank: Index of this spatial group (= rank within `dp_group`).
        dp_size: Number of spatial groups (scenes processed at once).
        device: The device feature maps travel on (the GPU of this process under NCCL, else the CPU).
        metadata_device: The device small integer collectives travel on: the CPU when the groups have a CPU
            backend (gloo, ``cpu:gloo,cuda:nccl``), else `device` (NCCL alone).
    """

    group: Any = None
    grid: tuple[int, int] = (1, 1)
    coord: tuple[int, int] = (0, 0)
    rank: int = 0
    global_ranks: tuple[int, ...] = (0,)
    dp_group: Any = None
    dp_rank: int = 0
    dp_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    metadata_device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def trivial(cls) -> SpatialContext:
        """One process, one tile: every communication primitive is the identity."""
        return cls(global_ranks=(distributed.rank(),))

    @classmethod
    def init(
        cls, grid: tuple[int, int] | str | None = None, timeout: timedelta | None = None
    ) -> SpatialContext:
        """Build the mesh from the initialised default process group (collective: call on every rank).

        Args:
            grid: Tiles per scene, ``(rows, cols)`` or ``"RxC"``. None: all processes share one scene, in the
                most square grid (4 -> 2x2, 6 -> 2x3). Otherwise ``rows * cols`` must divide the world size;
                the quotient is the number of data-parallel groups.
            timeout: Bound on every collective of the spatial and data-parallel groups; None: the default
                group's (``init_process_group(timeout=...)``, `rest-hf predict --timeout`).

        Raises:
            ValueError: if the grid asks for more processes than are running, or does not divide the world.
        """
        if isinstance(grid, str):
            grid = parse_grid(grid)
        if not distributed.is_distributed():
            if grid is not None and grid[0] * grid[1] > 1:
                raise ValueError(
                    f"grid {grid[0]}x{grid[1]} needs {grid[0] * grid[1]} processes, but torch.distributed is not "
                    f"initialised; launch with `torchrun --nproc-per-node {grid[0] * grid[1]} ...` or "
                    f"`accelerate launch --num-processes {grid[0] * grid[1]} ...`"
                )
            return cls.trivial()
        world, me = dist.get_world_size(), dist.get_rank()
        rows, cols = most_square_grid(world) if grid is None else (int(grid[0]), int(grid[1]))
        if rows < 1 or cols < 1:
            raise ValueError(f"grid {rows}x{cols} must have at least one row and one column")
        sp = rows * cols
        if world % sp:
            raise ValueError(
                f"grid {rows}x{cols} needs {sp} processes per scene but the world has {world}; "
                f"use --grid {', '.join(_grids_that_fit(world))} (or run {sp} x k processes)"
            )
        dp = world // sp
        dp_rank, rank = divmod(me, sp)
        group = dp_group = None
        # Every rank creates every group, in the same order.
        for g in range(dp if sp > 1 else 0):
            created = distributed.new_group(range(g * sp, (g + 1) * sp), timeout)
            if g == dp_rank:
                group = created
        for s in range(sp if dp > 1 else 0):
            created = distributed.new_group([g * sp + s for g in range(dp)], timeout)
            if s == rank:
                dp_group = created
        if group is not None and dist.get_rank(group) != rank:
            raise RuntimeError(f"spatial group rank {dist.get_rank(group)} differs from the mesh rank {rank}")
        return cls(
            group=group,
            grid=(rows, cols),
            coord=divmod(rank, cols),
            rank=rank,
            global_ranks=tuple(range(dp_rank * sp, (dp_rank + 1) * sp)),
            dp_group=dp_group,
            dp_rank=dp_rank,
            dp_size=dp,
            device=distributed.communication_device(group),
            metadata_device=distributed.metadata_device(group),
        )

    @property
    def rows(self) -> int:
        return self.grid[0]

    @property
    def cols(self) -> int:
        return self.grid[1]

    @property
    def size(self) -> int:
        """Processes (tiles) per scene."""
        return self.grid[0] * self.grid[1]

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    @property
    def is_first_row(self) -> bool:
        return self.coord[0] == 0

    @property
    def is_last_row(self) -> bool:
        return self.coord[0] == self.rows - 1

    @property
    def is_first_col(self) -> bool:
        return self.coord[1] == 0

    @property
    def is_last_col(self) -> bool:
        return self.coord[1] == self.cols - 1

    def neighbour(self, drow: int, dcol: int, wrap: bool = False) -> int | None:
        """Spatial rank of the tile `(drow, dcol)` away; None past the scene's edge unless `wrap` (torus)."""
        row, col = self.coord[0] + drow, self.coord[1] + dcol
        if wrap:
            row, col = row % self.rows, col % self.cols
        elif not (0 <= row < self.rows and 0 <= col < self.cols):
            return None
        return row * self.cols + col

    def global_rank_of(self, spatial_rank: int) -> int:
        """Global rank of a spatial rank of this group (for point-to-point calls)."""
        return self.global_ranks[spatial_rank]

    def partition(self, height: int, width: int, rule: Any) -> TilePartition:
        """Split a `height x width` scene over this grid into tiles `rule` accepts.

        Args:
            height: Scene height in pixels.
            width: Scene width in pixels.
            rule: The model's `TileRule`, or its config (`RestConfig`; the rule is derived from it), or a
                model (its config is used). Tiles are aligned and large enough for every layer, so the model
                never refuses them.

        Returns:
            The partition; it knows this rank's tile and can `gather` the whole scene.

        Raises:
            ValueError: if the grid cannot give every tile an aligned tile the model accepts; the message says
                which grid or scene size would work.
        """
        return TileRule.of(rule).partition(height, width, self.grid, self.coord, ctx=self)

    def gather_tiles(self, local: torch.Tensor, part: TilePartition) -> torch.Tensor:
        """The whole (..., H, W) map of `part` from every rank's tile (see `TilePartition.gather`)."""
        lead = local.shape[:-2]
        boxes = part.boxes()
        sizes = [b.height * b.width for b in boxes]
        flat = all_gather_uneven(local.reshape(*lead, -1), self, dim=-1, sizes=sizes)
        pieces = [
            p.reshape(*lead, b.height, b.width) for p, b in zip(flat.split(sizes, -1), boxes, strict=True)
        ]
        rows = [torch.cat(pieces[r * self.cols : (r + 1) * self.cols], dim=-1) for r in range(self.rows)]
        return torch.cat(rows, dim=-2)
