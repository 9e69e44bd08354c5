"""The loss of a split scene and the gradient rule of spatial training.

Gradient rule: every rank back-propagates `loss_sum_of_its_tile / valid_pixels_of_the_scene`, its share of
the scene's mean loss. Communication primitives carry every cross-tile dependency, so each rank's parameter
gradients are partial sums; summed over the spatial group they equal the single-process gradients.
`comm_gradients.reduce_spatial_gradients` (or its overlapped form, `GradientReducer`) performs that sum (and
the average over data-parallel groups).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
