"""`parallelize_spatial`: the one bridge between the single-device model and the split scene.

It walks the model once and switches each module that must see beyond its tile to its spatial twin, in place,
so parameters, buffers and state-dict keys do not change and a checkpoint is the same on 1 or 16 processes.

It is strict: the twins are a declared table (`TWINS`), each twin replaces exactly one class (`adopt` refuses a
subclass, which may compute otherwise), and in exact mode any module left that would see beyond its tile
without a twin (a padded strided convolution, GroupNorm, pooling windows across tiles, an unknown subclass of a
twinned class) is refused with its name, rather than silently computed per tile. Modules are judged by their
type and settings; a custom module whose own `forward` calls functional ops across pixels (e.g.
`F.interpolate`) cannot be seen from outside and stays the author's responsibility.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.modeling_rest import (
    RestForSemanticSegmentation,
    RestPyramidPoolingModule,
    RestUpsampleFirstPyramidPoolingModule,
)
from .attention import SpatialGlobalAttention
from .context import SpatialContext
from .geometry import LayoutBook
from .heads import SpatialLwcHead, SpatialUperHead
from .layers import HaloConv2d, SpatialBatchNorm2d, SpatialGRN, SpatialMixin
from .loss import SpatialSegmentationLoss
from .partition import TileRule
from .pooling import SpatialAdaptiveAvgPool2d, SpatialPyramidPooling, SpatialUpsampleFirstPyramidPooling
from .resize import ReplicatedSourceResize, SpatialBilinearResize
from .swin import SpatialSwinLayer

MODES = ("exact", "regional")

# Every twin, and the modes it is installed in. Pyramid pooling's pool and resize are installed with their
# module (`_adopt_pyramid_pooling`): its resize has a replicated source, unlike every other resize.
TWINS: tuple[tuple[type[SpatialMixin], tuple[str, ...]], ...] = (
    (SpatialGlobalAttention, MODES),
    (SpatialSegmentationLoss, MODES),
    (SpatialBatchNorm2d, MODES),
    (SpatialBilinearResize, ("exact",)),
    (HaloConv2d, ("exact",)),
    (SpatialSwinLayer, ("exact",)),
    (SpatialGRN, ("exact",)),
    (SpatialUperHead, ("exact",)),
    (SpatialLwcHead, ("exact",)),
)

# Layers whose output pixel depends on input pixels of other tiles whatever their settings.
_NON_LOCAL = (
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LocalResponseNorm,
    nn.SyncBatchNorm,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
    nn.UpsamplingBilinear2d,
    nn.UpsamplingNearest2d,
    nn.Fold,
    nn.Unfold,
    nn.MultiheadAttention,
    nn.ConvTranspose2d,
)


def spatial_min_tile(config: Any) -> int:
    """Smallest tile side in pixels for which every halo fits inside the neighbouring tile (`TileRule`)."""
    return TileRule.from_config(config).min_tile


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _sees_beyond_tile(module: nn.Module) -> str | None:
    """Why `module`, left as it is, would compute something else on a tile than on the whole scene (or None)."""
    if isinstance(module, SpatialMixin):
        return None
    for twin, _ in TWINS:
        parent = twin.parent()
        if isinstance(module, parent) and type(module) is not parent:
            return (
                f"{type(module).__name__} subclasses {parent.__name__}, whose twin expects exactly that class"
            )
    if isinstance(module, _NON_LOCAL):
        return f"{type(module).__name__} mixes pixels across the scene"
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride = _pair(module.kernel_size), _pair(module.stride)
        padding = _pair(module.padding) if not isinstance(module.padding, str) else (1, 1)
        dilation = _pair(getattr(module, "dilation", 1))
        reach = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
        if any(padding) or any(r > s for r, s in zip(reach, stride, strict=True)):
            return (
                f"{type(module).__name__}(kernel={kernel}, stride={stride}, padding={padding}) reads pixels of the "
                "neighbouring tiles and has no spatial twin (only stride-1 zero-padded convolutions do)"
            )
    return None


def _is_same_padded_conv(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and _pair(module.stride) == (1, 1)
        and module.padding_mode == "zeros"
        and isinstance(module.padding, tuple)
        and any(module.padding)
        and all(
            p == d * (k - 1) // 2
            for p, k, d in zip(module.padding, module.kernel_size, module.dilation, strict=True)
        )
    )


def _twin_for(module: nn.Module, mode: str) -> type[SpatialMixin] | None:
    for twin, modes in TWINS:
        if mode in modes and type(module) is twin.parent():
            if twin is HaloConv2d and not _is_same_padded_conv(module):
                return None
            return twin
    return None


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
        The same model object, with its modules switched in place (parameters, buffers and state-dict keys
        unchanged).

    Raises:
        ValueError: for an unknown mode, a model already parallelized, or (exact mode) a module that would see
            beyond its tile and has no twin, named by its path in the model.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if getattr(model, "spatial_context", None) is not None:
        raise ValueError("the model is already parallelized; build or load a fresh model to change its grid")
    rule = TileRule.from_config(model.config)
    book = LayoutBook(ctx, rule)
    pooled = _adopt_pyramid_pooling(model, ctx, book) if mode == "exact" else set()
    for module in list(model.modules()):
        if id(module) in pooled:
            continue
        twin = _twin_for(module, mode)
        if twin is not None:
            twin.adopt(module, ctx, book)
    if mode == "regional":
        for module in model.modules():
            if type(module) is RestPyramidPoolingModule:
                for block in module.blocks:
                    block.conv_module.batch_norm.pooled_per_tile = True
    if mode == "exact":
        refused = [(name, why) for name, m in model.named_modules() if (why := _sees_beyond_tile(m))]
    else:
        refused = [
            (name, why)
            for name, m in model.named_modules()
            if (why := _sees_beyond_tile(m)) and "subclasses" in why
        ]
    if refused:
        name, why = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ValueError(
            f"parallelize_spatial cannot split module {name or type(model).__name__!r}: {why}{more}; give it a "
            "spatial twin in rest_hf/spatial or keep the model on one process"
        )
    model.spatial_context = ctx
    model.spatial_mode = mode
    model.spatial_layouts = book
    model.register_forward_pre_hook(_learn_layout, with_kwargs=True)
    return model


def _adopt_pyramid_pooling(model: nn.Module, ctx: SpatialContext, book: LayoutBook) -> set[int]:
    """Twins of pyramid pooling: the module (all scales' bins in one sum), bins over the whole scene, a resize
    from the replicated pooled map, and the BatchNorms on pooled maps (every rank holds them whole: their local
    statistics are already global). Returns the ids of the modules handled here."""
    handled: set[int] = set()
    for module in list(model.modules()):
        if not isinstance(module, RestPyramidPoolingModule):
            continue
        twin = (
            SpatialUpsampleFirstPyramidPooling
            if isinstance(module, RestUpsampleFirstPyramidPoolingModule)
            else SpatialPyramidPooling
        )
        twin.adopt(module, ctx, book)
        handled.add(id(module))
        ReplicatedSourceResize.adopt(module.resize, ctx, book)
        handled.add(id(module.resize))
        for block in module.blocks:
            SpatialAdaptiveAvgPool2d.adopt(block.pool, ctx, book)
            handled.add(id(block.pool))
            if not isinstance(module, RestUpsampleFirstPyramidPoolingModule):
                handled.add(id(block.conv_module.batch_norm))
    return handled


def _learn_layout(model: RestForSemanticSegmentation, args: tuple, kwargs: dict) -> None:
    """The one layout exchange of a forward; in exact mode, refuse (on every rank alike) tiles that cannot
    reproduce the whole scene."""
    pixel_values = kwargs.get("pixel_values", args[0] if args else None)
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        return  # the model's own input check gives the message
    layout = model.spatial_layouts.begin(*pixel_values.shape[2:])
    if model.spatial_mode == "exact":
        model.spatial_layouts.rule.check(layout)
