"""Spatial twins of the decode heads: the FPN levels' halos exchanged together.

In `RestUperHead.fpn_outputs` the levels are independent: a 3x3 conv module on each level but the top, then a
resize of each to the first level's size. On a split scene each of those six layers needs a halo, and on a
small decoder the synchronisation costs more than the computation it waits for. The twins compute the same
thing with two exchanges: one for the three convolutions' halos (`convolve_together`), one for the three
resizes' (`SpatialBilinearResize.resize_together`). Everything else of the head is inherited unchanged.
"""

from __future__ import annotations

import torch

from ..models.modeling_rest import RestLwcHead, RestUperHead
from .layers import SpatialMixin, convolve_together


class _FpnLevelsTogether(SpatialMixin):
    """`fpn_outputs` with one halo exchange for all levels' convolutions and one for all their resizes (the
    convolutions are `HaloConv2d` and the resize a `SpatialBilinearResize`: exact mode installs both)."""

    def fpn_outputs(self, laterals: list[torch.Tensor]) -> list[torch.Tensor]:
        modules = [self.fpn_convs[i] for i in range(len(laterals) - 1)]
        convolved = convolve_together([module.conv for module in modules], laterals[:-1])
        outputs = [
            module.activation(module.batch_norm(output))
            for module, output in zip(modules, convolved, strict=True)
        ]
        outputs.append(laterals[-1])
        return [outputs[0], *self.resize.resize_together(outputs[1:], outputs[0].shape[2:])]


class SpatialUperHead(_FpnLevelsTogether, RestUperHead):
    """`RestUperHead` with the FPN levels' halos exchanged together (same outputs, fewer synchronisations)."""


class SpatialLwcHead(_FpnLevelsTogether, RestLwcHead):
    """`RestLwcHead` with the FPN levels' halos exchanged together (same outputs, fewer synchronisations)."""


__all__ = ["SpatialLwcHead", "SpatialUperHead"]
