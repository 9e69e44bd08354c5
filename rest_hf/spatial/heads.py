"""Spatial twins of the decode heads: in inference, the whole head from one halo exchange.

The head has some ten layers that read beyond a pixel (3x3 convolutions, bilinear resizes) between the
backbone's features and its logits; exchanging a halo for each costs one synchronisation of the group each,
and a small decoder computes for less time than that. With its BatchNorms on running statistics (evaluation),
everything else in the head is pointwise or reads the pooled maps every rank holds, so the twins work out
(`windows.py`) how far beyond its tile each feature map must reach for the rank's own logits, send that much
of all four in one exchange (while the pyramid pooling's sum travels too), and compute every layer on exactly
the region the next one reads: the same pixels as the whole scene's head, one synchronisation instead of ten.

In training the BatchNorms need the scene's batch statistics at every layer anyway, so the head runs layer by
layer, with the FPN levels' halos exchanged together (`convolve_together`, `resize_together`); likewise where
the reach would not fit in the neighbouring tiles (tiles near the minimum size), or on one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.modeling_rest import RestConvModule, RestLwcHead, RestUperHead
from .comm_halo import start_halos
from .layers import SpatialMixin, convolve_together
from .partition import TileBox, TilePartition
from .windows import (
    Region,
    Window,
    conv_at,
    conv_source,
    frame_window,
    resize_at,
    resize_source,
    widest_reach,
)


def _conv_module_at(module: RestConvModule, window: Window, region: Region) -> Window:
    """conv -> BatchNorm (running statistics) -> ReLU on `region`."""
    return conv_at(module.conv, window, region, then=lambda x: module.activation(module.batch_norm(x)))


@dataclass(frozen=True)
class _Reach:
    """The regions one tile's head computes, per level: features read, laterals after the top-down pathway
    (the last one is the pyramid-pooling bottleneck's output), FPN convolutions' outputs, and the fused map."""

    inputs: tuple[Region, ...]
    laterals: tuple[Region, ...]
    fpn: tuple[Region, ...]
    fused: Region


@dataclass(frozen=True)
class _Plan:
    """This rank's `_Reach`, and the halo widths (top, bottom, left, right) of each level, alike on all ranks."""

    reach: _Reach
    widths: tuple[tuple[int, int, int, int], ...]


class _SplitSceneHead(SpatialMixin):
    """The twins' shared steps: the head from one exchange (`_fused_window`), and in training `fpn_outputs`
    with one halo exchange for all levels' convolutions and one for all their resizes."""

    def fpn_outputs(self, laterals: list[torch.Tensor]) -> list[torch.Tensor]:
        modules = [self.fpn_convs[i] for i in range(len(laterals) - 1)]
        convolved = convolve_together([module.conv for module in modules], laterals[:-1])
        outputs = [
            module.activation(module.batch_norm(output))
            for module, output in zip(modules, convolved, strict=True)
        ]
        outputs.append(laterals[-1])
        return [outputs[0], *self.resize.resize_together(outputs[1:], outputs[0].shape[2:])]

    def _reach(self, fused: Region, sizes: list[tuple[int, int]]) -> _Reach:
        """What `fuse` reads of every map for its output on `fused` (level 0), walking the head backwards."""
        concatenated = conv_source(fused, self.fpn_bottleneck.conv, sizes[0])
        top = len(sizes) - 1
        fpn = [concatenated] + [resize_source(concatenated, sizes[i], sizes[0]) for i in range(1, top)]
        laterals: list[Region] = []
        for i in range(top):
            need = conv_source(fpn[i], self.fpn_convs[i].conv, sizes[i])
            if i:  # the level below adds this lateral, resized, to its own
                need = need.hull(resize_source(laterals[i - 1], sizes[i], sizes[i - 1]))
            laterals.append(need)
        pooled_top = resize_source(concatenated, sizes[top], sizes[0]).hull(
            resize_source(laterals[-1], sizes[top], sizes[top - 1])
        )
        laterals.append(pooled_top)
        inputs = [conv_source(laterals[i], self.lateral_convs[i].conv, sizes[i]) for i in range(top)]
        inputs.append(conv_source(pooled_top, self.bottleneck.conv, sizes[top]))
        return _Reach(tuple(inputs), tuple(laterals), tuple(fpn), fused)

    def _output_region(self, boxes: list[TileBox], sizes: list[tuple[int, int]]) -> Region:
        """The region of the fused map (level 0) from which this head's forward makes a tile's logits."""
        return Region.of(boxes[0])

    def _plan(self, layouts: list[TilePartition]) -> _Plan | None:
        """The reach of this rank's tile and the widths every rank exchanges (the largest reach of any tile on
        each axis, both sides alike so the halo is differentiable), or None if a width would not fit in the
        neighbouring tiles. Cached per input layout: the walk over every tile is the same at every forward."""
        key = tuple((layout.row_edges, layout.col_edges) for layout in layouts)
        cached = getattr(self, "_cached_plan", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        sizes = [(layout.height, layout.width) for layout in layouts]
        boxes = [layout.boxes() for layout in layouts]
        everyone = list(zip(*boxes, strict=True))  # per tile, its box at every level
        reaches = [self._reach(self._output_region(list(tile), sizes), sizes) for tile in everyone]
        widths = []
        for level, level_boxes in enumerate(boxes):
            top, bottom, left, right = widest_reach([reach.inputs[level] for reach in reaches], level_boxes)
            # Both sides alike, so that the halo is differentiable (on an unsplit axis both are 0).
            halo_h, halo_w = max(top, bottom), max(left, right)
            widths.append((halo_h, halo_h, halo_w, halo_w))
        fits = all(
            halo_h <= min(box.height for box in level_boxes)
            and halo_w <= min(box.width for box in level_boxes)
            for level_boxes, (halo_h, _, halo_w, _) in zip(boxes, widths, strict=True)
        )
        mine = [layout.box() for layout in layouts]
        plan = _Plan(self._reach(self._output_region(mine, sizes), sizes), tuple(widths)) if fits else None
        self._cached_plan = (key, plan)
        return plan

    def _one_exchange_plan(self, features: list[torch.Tensor]) -> tuple[_Plan, list[TilePartition]] | None:
        """The plan of the head from one exchange, or None where it runs layer by layer (see the module)."""
        if self.ctx.size == 1 or any(m.training for m in self.modules() if isinstance(m, nn.BatchNorm2d)):
            return None
        layouts = [self.layouts.layout(*f.shape[2:], what="decode head input") for f in features]
        plan = self._plan(layouts)
        return None if plan is None else (plan, layouts)

    def _fused_window(
        self, features: list[torch.Tensor], plan: _Plan, layouts: list[TilePartition]
    ) -> Window:
        """`fuse` of the whole scene on `plan.reach.fused`, from one halo exchange of the four feature maps.

        In steps whose intermediate maps die when the step returns, as in the layer-by-layer head: kept to the
        end, they would raise the peak by their size (some 20 MB on a 1024 x 512 tile of the tiny model).
        """
        reach, sizes = plan.reach, [(layout.height, layout.width) for layout in layouts]
        levels = self._fpn_levels_at(self._top_down_at(features, plan, layouts), reach, sizes)
        return _conv_module_at(self.fpn_bottleneck, levels, reach.fused)

    def _top_down_at(
        self, features: list[torch.Tensor], plan: _Plan, layouts: list[TilePartition]
    ) -> list[Window]:
        """The exchange, then the laterals after the top-down pathway (the last: pooling's bottleneck)."""
        reach, sizes = plan.reach, [(layout.height, layout.width) for layout in layouts]
        pendings = start_halos(features, self.ctx, list(plan.widths))
        pooled = self.psp_modules.pooled(features[-1])  # its sum travels while the halos do
        inputs = [
            frame_window(pending.wait(), layout.box(), size).cropped(region)
            for pending, layout, size, region in zip(pendings, layouts, sizes, reach.inputs, strict=True)
        ]
        top = len(features) - 1
        laterals = [_conv_module_at(self.lateral_convs[i], inputs[i], reach.laterals[i]) for i in range(top)]
        pooled_maps = self.psp_modules.maps_at(pooled, sizes[top], reach.inputs[top])
        stacked = inputs[top].like(torch.cat([inputs[top].tensor, *pooled_maps], dim=1))
        laterals.append(_conv_module_at(self.bottleneck, stacked, reach.laterals[top]))
        for i in range(top, 0, -1):
            resized = resize_at(laterals[i], sizes[i - 1], reach.laterals[i - 1])
            laterals[i - 1] = laterals[i - 1].like(laterals[i - 1].tensor + resized.tensor)
        return laterals

    def _fpn_levels_at(self, laterals: list[Window], reach: _Reach, sizes: list[tuple[int, int]]) -> Window:
        """The FPN convolutions' outputs (and the top lateral) resized to level 0 and concatenated."""
        top = len(laterals) - 1
        outputs = [_conv_module_at(self.fpn_convs[i], laterals[i], reach.fpn[i]) for i in range(top)]
        outputs.append(laterals[top])
        region = reach.fpn[0]
        levels = [
            outputs[0].crop(region),
            *(resize_at(output, sizes[0], region).tensor for output in outputs[1:]),
        ]
        return Window(torch.cat(levels, dim=1), region, sizes[0])


class SpatialUperHead(_SplitSceneHead, RestUperHead):
    """`RestUperHead` on a split scene: one exchange in inference, the FPN levels together in training."""

    def fuse(self, features: list[torch.Tensor]) -> torch.Tensor:
        planned = self._one_exchange_plan(features)
        if planned is None:
            return super().fuse(features)
        return self._fused_window(features, *planned).tensor


class SpatialLwcHead(_SplitSceneHead, RestLwcHead):
    """`RestLwcHead` on a split scene: one exchange in inference (its object head and its resize to the last
    stage's size included), the FPN levels together in training."""

    def _output_region(self, boxes: list[TileBox], sizes: list[tuple[int, int]]) -> Region:
        logits = resize_source(Region.of(boxes[-1]), sizes[0], sizes[-1])
        return conv_source(logits, self.object_head.conv, sizes[0])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        planned = self._one_exchange_plan(features)
        if planned is None:
            return super().forward(features)
        plan, layouts = planned
        sizes = [(layout.height, layout.width) for layout in layouts]
        logits_region = resize_source(Region.of(layouts[-1].box()), sizes[0], sizes[-1])
        objects = _conv_module_at(
            self.object_head, self._fused_window(features, plan, layouts), logits_region
        )
        logits = conv_at(self.classifier, objects, logits_region)
        return resize_at(logits, sizes[-1], Region.of(layouts[-1].box())).tensor


__all__ = ["SpatialLwcHead", "SpatialUperHead"]
