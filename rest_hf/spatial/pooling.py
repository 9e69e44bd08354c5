"""Spatial twins of pooling: adaptive average pooling over the whole scene, and pyramid pooling in one sum.

A pooled bin of the whole scene is the sum of every tile's part of it: each rank computes its parts locally
and one sum over the spatial group completes them. Pyramid pooling pools at several scales; its twin sums the
parts of every scale in one collective instead of one per scale.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.modeling_rest import RestPyramidPoolingModule, RestUpsampleFirstPyramidPoolingModule
from .comm import all_reduce_sum
from .layers import SpatialMixin
from .windows import Region, geometry_constant


@geometry_constant
def _bin_matrix(
    bins: int, length: int, start: int, stop: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(bins, stop - start) weights: 1/bin_size where global row `start + j` lies in adaptive bin i. Cached:
    read only."""
    rows = torch.arange(start, stop, device=device)
    lower = torch.tensor([(i * length) // bins for i in range(bins)], device=device)
    upper = torch.tensor([-((-(i + 1) * length) // bins) for i in range(bins)], device=device)
    inside = (rows[None, :] >= lower[:, None]) & (rows[None, :] < upper[:, None])
    return inside.to(dtype) / (upper - lower).to(dtype)[:, None]


class SpatialAdaptiveAvgPool2d(SpatialMixin, nn.AdaptiveAvgPool2d):
    """Adaptive average pooling with bins over the whole scene; every rank gets the whole pooled map.

    Each rank sums its part of every global bin (bins are those of `adaptive_avg_pool2d`: start
    floor(i*H/s), end ceil((i+1)*H/s)), and one all-reduce adds the parts. Backward of that all-reduce is an
    all-reduce too, because every rank's pooled map feeds its own tile of the loss.
    """

    def partial_bins(self, hidden_state: torch.Tensor) -> torch.Tensor:
        """This tile's share (B, C, s_h, s_w) of every bin of the whole scene's pooling (no communication)."""
        out_h, out_w = (
            (self.output_size, self.output_size) if isinstance(self.output_size, int) else self.output_size
        )
        layout = self.layouts.layout(*hidden_state.shape[2:], what="pyramid pooling input")
        box = layout.box()
        kwargs = {"dtype": hidden_state.dtype, "device": hidden_state.device}
        row_weights = _bin_matrix(out_h, layout.height, box.top, box.bottom, **kwargs)
        col_weights = _bin_matrix(out_w, layout.width, box.left, box.right, **kwargs)
        return torch.einsum("ih,bchw,jw->bcij", row_weights, hidden_state, col_weights)

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(self.partial_bins(hidden_state), self.ctx)


def _pooled_at_every_scale(
    module: RestPyramidPoolingModule, hidden_state: torch.Tensor
) -> list[torch.Tensor]:
    """Every block's pooled map of the whole scene (B, C, s, s), from one sum over the spatial group.

    The blocks' pools must be `SpatialAdaptiveAvgPool2d` twins (`parallelize_spatial` installs them)."""
    parts = [block.pool.partial_bins(hidden_state) for block in module.blocks]
    total = all_reduce_sum(torch.cat([part.flatten(2) for part in parts], dim=2), module.ctx)
    sizes = [part.shape[2] * part.shape[3] for part in parts]
    return [pooled.view(part.shape) for pooled, part in zip(total.split(sizes, dim=2), parts, strict=True)]


class _PooledOnce(SpatialMixin):
    """Pyramid pooling split in its two steps, so a caller can compute the maps on any region of the scene."""

    def pooled(self, hidden_state: torch.Tensor) -> list[torch.Tensor]:
        """Collective: every block's pooled map of the whole scene, (B, C, s, s) each, from one sum."""
        return _pooled_at_every_scale(self, hidden_state)

    def forward(self, hidden_state: torch.Tensor) -> list[torch.Tensor]:
        target = self.layouts.layout(*hidden_state.shape[2:], what="pyramid pooling input")
        return self.maps_at(self.pooled(hidden_state), (target.height, target.width), Region.of(target.box()))


class SpatialPyramidPooling(_PooledOnce, RestPyramidPoolingModule):
    """UperNet's pyramid pooling over the whole scene: the bins of all scales summed in one collective.

    FORWARD: as `RestPyramidPoolingModule` (pool, conv module, resize to this tile); the pooled maps are the
    whole scene's and every rank holds them whole, so the conv modules (and their BatchNorms) see global maps.
    BACKWARD: through the one sum, whose backward sums the pooled maps' gradients over the group once.
    """

    def maps_at(
        self, pooled: list[torch.Tensor], size: tuple[int, int], region: Region
    ) -> list[torch.Tensor]:
        """The blocks' maps (B, channels, ...) on `region` of the pooled input's (H, W) = `size` scene."""
        return [
            self.resize.at(block.conv_module(bins), size, region)
            for block, bins in zip(self.blocks, pooled, strict=True)
        ]


class SpatialUpsampleFirstPyramidPooling(_PooledOnce, RestUpsampleFirstPyramidPoolingModule):
    """The GLH-Water head's pyramid pooling (resize, then conv module) over the whole scene, in one sum.

    FORWARD/BACKWARD: as `SpatialPyramidPooling`, with the order of `RestUpsampleFirstPyramidPoolingModule`.
    """

    def maps_at(
        self, pooled: list[torch.Tensor], size: tuple[int, int], region: Region
    ) -> list[torch.Tensor]:
        """The blocks' maps (B, channels, ...) on `region` of the pooled input's (H, W) = `size` scene."""
        return [
            block.conv_module(self.resize.at(bins, size, region))
            for block, bins in zip(self.blocks, pooled, strict=True)
        ]


__all__ = ["SpatialAdaptiveAvgPool2d", "SpatialPyramidPooling", "SpatialUpsampleFirstPyramidPooling"]
