"""Swin blocks on a split scene: shifted windows through a distributed roll, masks from global positions.

transformers' `SwinLayer.forward` pads the tokens to whole windows, rolls them, attends within windows with a
mask for the windows that wrap around, and rolls back. With tile borders on window borders at every stage
(the partitioner's alignment), only two of its steps see the split: the roll, which must run on the torus of
the whole (padded) scene, and the mask, which marks the wrap-around regions that exist only in the last
window row and column of the scene. This twin overrides exactly those two methods.
"""

from __future__ import annotations

import torch
from transformers.models.swin.modeling_swin import SwinLayer, window_partition

from .comm import distributed_roll
from .layers import SpatialMixin


class SpatialSwinLayer(SpatialMixin, SwinLayer):
    """`SwinLayer` whose cyclic shift and attention mask are those of the whole scene.

    Padding needs no change: interior tiles are whole windows, and the last tile of each row and column pads
    exactly as the whole scene does at its end. The shift (under one window) always fits in a tile aligned to
    whole windows, so the roll skips its per-call geometry check.
    """

    def cyclic_shift(self, hidden_states: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """Roll (B, H, W, C) tokens by -shift (or +shift in reverse) over the whole scene's torus."""
        if self.shift_size <= 0:
            return hidden_states
        shift = self.shift_size if reverse else -self.shift_size
        return distributed_roll(hidden_states, self.ctx, shifts=(shift, shift), dims=(1, 2), check=False)

    def get_attn_mask(
        self, height: int, width: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor | None:
        """Window mask (num_windows, ws*ws, ws*ws) of this tile's padded (height, width) tokens.

        Tokens are grouped in 3 regions per axis (0: not wrapped, 1: last window before the shift, 2: the
        wrapped-in shift); tokens of different regions may not attend to each other. Regions 1 and 2 lie in the
        scene's last window row/column, i.e. in the last tile of the grid.
        """
        if self.shift_size <= 0:
            return None
        last_row = self.ctx.coord[0] == self.ctx.grid[0] - 1
        last_col = self.ctx.coord[1] == self.ctx.grid[1] - 1
        h_index = torch.arange(height, device=device)
        w_index = torch.arange(width, device=device)
        h_region = (
            (h_index >= height - self.window_size).long() + (h_index >= height - self.shift_size).long()
        ) * last_row
        w_region = (
            (w_index >= width - self.window_size).long() + (w_index >= width - self.shift_size).long()
        ) * last_col
        regions = (h_region[None, :, None, None] * 3 + w_region[None, None, :, None]).to(dtype)
        windows = window_partition(regions, self.window_size).view(-1, self.window_size * self.window_size)
        mask = windows.unsqueeze(1) - windows.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
