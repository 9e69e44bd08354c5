"""Interaction attention over the whole scene when each process holds one tile's tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.modeling_rest import RestGlobalAttention
from .comm import all_gather_uneven, heads_to_tokens, tokens_to_heads
from .layers import SpatialMixin


class SpatialGlobalAttention(SpatialMixin, RestGlobalAttention):
    """`RestGlobalAttention` whose keys and values are every tile's tokens.

    - Heads divisible by the group size P (Ulysses): one all-to-all turns query, key and value
      (3, B, heads, N_tile, d) into (3, B, heads/P, N_scene, d), each rank attends for its heads over the whole
      scene, and the inverse all-to-all returns (B, heads, N_tile, d).
    - Otherwise: keys and values of all tiles are all-gathered (uneven sizes) and the local queries attend to
      them. More memory (every rank holds all keys and values) but any head count works.

    Attention has no positional terms, so the order in which tiles' tokens are joined changes nothing. Every
    tile's token count comes from the model's layout book, so attention adds no metadata exchange.
    """

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        if self.ctx.size == 1:
            return F.scaled_dot_product_attention(query, key, value)
        counts = self.layouts.token_counts(query.shape[2])
        if self.num_heads % self.ctx.size == 0:
            _, scene = heads_to_tokens(torch.stack((query, key, value)), self.ctx, counts)
            attended = F.scaled_dot_product_attention(*scene.unbind(0))
            return tokens_to_heads(attended, self.ctx, counts)
        key_value = all_gather_uneven(torch.stack((key, value)), self.ctx, dim=3, sizes=counts)
        return F.scaled_dot_product_attention(query, *key_value.unbind(0))

    def attention_weights(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if self.ctx.size == 1:
            return super().attention_weights(query, key)
        raise ValueError(
            "output_attentions=True is not supported on a split scene: the interaction layers' weights span every "
            "tile; run the scene in one process to get them, or call the model without output_attentions"
        )

    def extra_repr(self) -> str:
        mode = "ulysses" if self.num_heads % self.ctx.size == 0 else "all-gather kv"
        return f"heads={self.num_heads}, grid={self.ctx.grid}, {mode}"
