"""`parallelize_spatial`: the one bridge between the single-device model and the split scene.

It walks the model once and switches each module that must see beyond its tile to its spatial twin, in place,
so parameters, buffers and state-dict keys do not change and a checkpoint is the same on 1 or 16 processes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.models.convnextv2.modeling_convnextv2 import ConvNextV2GRN
from transformers.models.swin.modeling_swin import SwinLayer

from ..models.modeling_rest import (
    RestBilinearResize,
    RestForSemanticSegmentation,
    RestGlobalAttention,
    RestPyramidPoolingModule,
    RestSegmentationLoss,
)
from .attention import SpatialGlobalAttention
from .context import SpatialContext
from .geometry import gather_layout
from .layers import (
    HaloConv2d,
    ReplicatedSourceResize,
    SpatialAdaptiveAvgPool2d,
    SpatialBatchNorm2d,
    SpatialBilinearResize,
    SpatialGRN,
)
from .loss import SpatialSegmentationLoss
from .swin import SpatialSwinLayer

MODES = ("exact", "regional")
# ConvNeXt's 7x7 depthwise convolutions need 3 pixels of every neighbour at the deepest stage.
CONVNEXT_DEEPEST_HALO = 3


def spatial_min_tile(config: Any) -> int:
    """Smallest tile side in pixels for which every halo fits inside the neighbouring tile."""
    if config.backbone_config.model_type == "swin":
        return config.spatial_alignment
    return max(config.spatial_alignment, CONVNEXT_DEEPEST_HALO * config.total_stride)


def _is_same_padded_conv(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.stride == (1, 1)
        and module.padding_mode == "zeros"
        and isinstance(module.padding, tuple)
        and any(module.padding)
    )


def _replicated_batch_norms(model: RestForSemanticSegmentation) -> set[int]:
    """BatchNorms that run on pooled maps every rank holds whole: their local statistics are already global."""
    if model.config.decoder_variant == "lwc":
        return set()
    return {
        id(block.conv_module.batch_norm)
        for module in model.modules()
        if isinstance(module, RestPyramidPoolingModule)
        for block in module.blocks
    }


def parallelize_spatial(
    model: RestForSemanticSegmentation, ctx: SpatialContext, mode: str = "exact"
) -> RestForSemanticSegmentation:
    """Make `model` run on one tile per process of `ctx`'s spatial group.

    Args:
        model: A `RestForSemanticSegmentation` (single-device code, any weights).
        ctx: The spatial context (`SpatialContext.init(...)`); a one-process context changes nothing numerically.
        mode: `"exact"`: the logits, loss and summed gradients equal those of the whole scene in one process.
            `"regional"`: the original REST behaviour for its released checkpoints: convolutions, windows,
            pooling and resizing see only their tile; interaction attention and BatchNorm statistics are global.

    Returns:
        The same model object, with its modules switched in place.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if getattr(model, "spatial_context", None) is not None:
        raise ValueError("the model is already parallelized; build or load a fresh model to change its grid")
    replicated = _replicated_batch_norms(model) if mode == "exact" else set()
    for module in list(model.modules()):
        if isinstance(module, RestGlobalAttention):
            SpatialGlobalAttention.adopt(module, ctx)
        elif isinstance(module, RestSegmentationLoss):
            SpatialSegmentationLoss.adopt(module, ctx)
        elif type(module) is nn.BatchNorm2d and id(module) not in replicated:
            SpatialBatchNorm2d.adopt(module, ctx)
        elif mode == "exact":
            _adopt_exact(module, ctx)
    model.spatial_context = ctx
    model.spatial_mode = mode
    if mode == "exact":
        model.register_forward_pre_hook(_check_tiles, with_kwargs=True)
    return model


def _adopt_exact(module: nn.Module, ctx: SpatialContext) -> None:
    if isinstance(module, RestPyramidPoolingModule):
        ReplicatedSourceResize.adopt(module.resize, ctx)
        for block in module.blocks:
            SpatialAdaptiveAvgPool2d.adopt(block.pool, ctx)
    elif type(module) is RestBilinearResize:
        SpatialBilinearResize.adopt(module, ctx)
    elif _is_same_padded_conv(module):
        HaloConv2d.adopt(module, ctx)
    elif type(module) is SwinLayer:
        SpatialSwinLayer.adopt(module, ctx)
    elif type(module) is ConvNextV2GRN:
        SpatialGRN.adopt(module, ctx)


def _check_tiles(model: RestForSemanticSegmentation, args: tuple, kwargs: dict) -> None:
    """Refuse, on every rank alike, tiles that cannot reproduce the whole scene exactly."""
    pixel_values = kwargs.get("pixel_values", args[0] if args else None)
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        return  # the model's own input check gives the message
    ctx = model.spatial_context
    layout = gather_layout(ctx, *pixel_values.shape[2:], what="pixel_values")
    alignment, min_tile = model.config.spatial_alignment, spatial_min_tile(model.config)
    for axis, (edges, size, name) in enumerate(
        ((layout.row_edges, layout.height, "tall"), (layout.col_edges, layout.width, "wide"))
    ):
        parts = len(edges) - 1
        if parts == 1:
            continue
        extents = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        misaligned = [e for e in edges[1:-1] if e % alignment]
        if misaligned or min(extents) < min_tile:
            fits = max(1, size // min_tile)
            grid_hint = f"{fits}x{ctx.grid[1]}" if axis == 0 else f"{ctx.grid[0]}x{fits}"
            raise ValueError(
                f"scene {size} px {name} split into tiles of {extents} px: tile borders must be multiples of "
                f"{alignment} px and tiles at least {min_tile} px; use ctx.partition(height, width, "
                f"{alignment}, min_tile={min_tile}), a grid of at most {grid_hint}, or pad the scene to "
                f"{parts * min_tile} px"
            )
