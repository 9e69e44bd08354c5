"""The loss of a split scene and the gradient rule of spatial training.

Gradient rule: every rank back-propagates `loss_sum_of_its_tile / valid_pixels_of_the_scene`, its share of
the scene's mean loss. Communication primitives carry every cross-tile dependency, so each rank's parameter
gradients are partial sums; summed over the spatial group they equal the single-process gradients.
`reduce_spatial_gradients` performs that sum (and the average over data-parallel groups).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..models.modeling_rest import RestSegmentationLoss
from .comm import all_reduce_sum, sum_partials
from .layers import SpatialMixin


class SpatialSegmentationLoss(SpatialMixin, RestSegmentationLoss):
    """Cross-entropy averaged over the valid pixels of the whole scene.

    Forward: every rank returns the scene's loss (sums and counts all-reduced). Backward: each rank's gradient
    is that of its own share only (`sum_partials` has an identity backward), per the gradient rule above.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss_sum = F.cross_entropy(logits, labels, ignore_index=self.ignore_index, reduction="sum")
        local_count = (labels != self.ignore_index).sum().to(loss_sum.dtype)
        scene_count = all_reduce_sum(local_count.reshape(1), self.ctx).detach()[0]
        return sum_partials(self.reduce(loss_sum, scene_count).reshape(1), self.ctx)[0]


@torch.no_grad()
def reduce_spatial_gradients(model: nn.Module, ctx) -> None:
    """Apply the gradient rule: sum gradients over the spatial group, then average over data-parallel groups.

    Call after `backward()` and before clipping or the optimizer step. Gradients are flattened into one
    buffer per dtype so that the whole model costs one all-reduce per group.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or (ctx.size == 1 and ctx.dp_size == 1):
        return
    for dtype in {g.dtype for g in grads}:
        group_grads = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in group_grads])
        if ctx.size > 1:
            dist.all_reduce(flat, group=ctx.group)
        if ctx.dp_size > 1:
            dist.all_reduce(flat, group=ctx.dp_group)
            flat /= ctx.dp_size
        offset = 0
        for grad in group_grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()
