"""SPIM: exact spatial parallelism. One scene is split into a grid of tiles, one per process."""

from .comm import (
    all_gather_uneven,
    all_reduce_sum,
    all_to_all_uneven,
    distributed_roll,
    halo_exchange,
    heads_to_tokens,
    sum_partials,
    tokens_to_heads,
)
from .comm_gradients import GradientReducer, reduce_spatial_gradients
from .context import SpatialContext
from .parallelize import parallelize_spatial, spatial_min_tile
from .partition import TileBox, TilePartition, TileRule, most_square_grid, parse_grid, split_edges

__all__ = [
    "GradientReducer",
    "SpatialContext",
    "TileBox",
    "TilePartition",
    "TileRule",
    "all_gather_uneven",
    "all_reduce_sum",
    "all_to_all_uneven",
    "distributed_roll",
    "halo_exchange",
    "heads_to_tokens",
    "most_square_grid",
    "parallelize_spatial",
    "reduce_spatial_gradients",
    "spatial_min_tile",
    "parse_grid",
    "split_edges",
    "sum_partials",
    "tokens_to_heads",
]
