"""Every spatial layer against its unsplit parent, forward and backward, in fp64, on 2-4 gloo processes.

Each rank builds the whole input and the plain layer from one seed, runs the unsplit reference itself (so the
check does not rely on the gather under test), then runs the spatial twin on its tile and compares its tile of
the output, its tile of the input gradient and the parameter gradients summed over the group.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import SwinConfig
from transformers.models.convnextv2.modeling_convnextv2 import ConvNextV2GRN
from transformers.models.swin.modeling_swin import SwinLayer

from rest_hf.models.modeling_rest import RestBilinearResize, RestGlobalAttention, RestSegmentationLoss
from rest_hf.spatial import SpatialContext
from rest_hf.spatial.attention import SpatialGlobalAttention
from rest_hf.spatial.layers import HaloConv2d, SpatialBatchNorm2d, SpatialGRN
from rest_hf.spatial.loss import SpatialSegmentationLoss
from rest_hf.spatial.partition import TileRule
from rest_hf.spatial.pooling import SpatialAdaptiveAvgPool2d
from rest_hf.spatial.resize import ReplicatedSourceResize, SpatialBilinearResize
from rest_hf.spatial.swin import SpatialSwinLayer
from tests.multiprocess import run_in_processes

TOL = {"rtol": 1e-10, "atol": 1e-10}
GRIDS = {2: [(1, 2), (2, 1)], 3: [(1, 3), (3, 1)], 4: [(2, 2)]}


def _summed_param_grads(layer: nn.Module, ctx: SpatialContext) -> dict[str, torch.Tensor]:
    grads = {}
    for name, parameter in layer.named_parameters():
        grad = parameter.grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        grads[name] = grad
    return grads


def _compare(name, plain, spatial, ctx, whole, local, run, to_local_out, to_local_in, local_upstream=None):
    """Run `run(layer, x)` on the whole input and on this rank's tile; compare outputs and gradients.

    `local_upstream` gives this rank's share of the upstream gradient (default: its tile of it); for outputs
    every rank holds whole, the shares must add up to the upstream gradient (gradient rule).
    """
    whole = whole.clone().requires_grad_()
    reference = run(plain, whole)
    torch.manual_seed(1234)
    upstream = torch.randn_like(reference)
    reference.backward(upstream)

    local = local.clone().requires_grad_()
    output = run(spatial, local)
    torch.testing.assert_close(output, to_local_out(reference.detach()), **TOL, msg=f"{name}: forward")
    output.backward((local_upstream or to_local_out)(upstream))
    torch.testing.assert_close(local.grad, to_local_in(whole.grad), **TOL, msg=f"{name}: input gradient")
    summed = _summed_param_grads(spatial, ctx)
    for param_name, parameter in plain.named_parameters():
        torch.testing.assert_close(
            summed[param_name], parameter.grad, **TOL, msg=f"{name}: grad of {param_name}"
        )


def _map_cases(ctx: SpatialContext, height: int, width: int, alignment: int):
    """Whole (B, C, H, W) fp64 input and this rank's partition."""
    torch.manual_seed(0)
    whole = torch.randn(2, 6, height, width, dtype=torch.float64)
    return whole, ctx.partition(height, width, TileRule(alignment=alignment))


def _check_map_layers(ctx: SpatialContext) -> None:
    whole, part = _map_cases(ctx, 23, 29, alignment=4)
    local = part.local(whole)

    def run_plain(layer, x):
        return layer(x)

    for conv in (
        nn.Conv2d(6, 5, 3, padding=1),
        nn.Conv2d(6, 6, 7, padding=3, groups=6),
        nn.Conv2d(6, 4, 3, padding=2, dilation=2, bias=False),
    ):
        conv = conv.double()
        spatial = HaloConv2d.adopt(copy.deepcopy(conv), ctx)
        _compare(
            f"conv{conv.kernel_size}", conv, spatial, ctx, whole, local, run_plain, part.local, part.local
        )

    norm = nn.BatchNorm2d(6).double().train()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    spatial_norm = SpatialBatchNorm2d.adopt(copy.deepcopy(norm), ctx)
    _compare("batch norm", norm, spatial_norm, ctx, whole, local, run_plain, part.local, part.local)
    torch.testing.assert_close(spatial_norm.running_mean, norm.running_mean, **TOL)
    torch.testing.assert_close(spatial_norm.running_var, norm.running_var, **TOL)

    for scale in (1, 2, 3, 6):
        pool = nn.AdaptiveAvgPool2d(scale)
        spatial_pool = SpatialAdaptiveAvgPool2d.adopt(copy.deepcopy(pool), ctx)
        _compare(
            f"pool {scale}",
            pool,
            spatial_pool,
            ctx,
            whole,
            local,
            run_plain,
            lambda y: y,
            part.local,
            local_upstream=lambda g: g if ctx.rank == 0 else torch.zeros_like(g),
        )


def _check_resizes(ctx: SpatialContext) -> None:
    # Source maps at stride 4 of a scene whose last tile is uneven; targets at stride 2 and 1 and odd ratios.
    scene_h, scene_w = 4 * 23, 4 * 29
    source_part = ctx.partition(23, 29, TileRule(alignment=4))
    torch.manual_seed(0)
    whole = torch.randn(1, 3, 23, 29, dtype=torch.float64)
    for target in ((46, 58), (scene_h, scene_w), (47, 61)):
        plain = RestBilinearResize()
        spatial = SpatialBilinearResize.adopt(RestBilinearResize(), ctx)
        rows = [e * target[0] // 23 if e < 23 else target[0] for e in source_part.row_edges]
        cols = [e * target[1] // 29 if e < 29 else target[1] for e in source_part.col_edges]
        row, col = ctx.coord
        local_target = (rows[row + 1] - rows[row], cols[col + 1] - cols[col])

        def to_target(y, rows=rows, cols=cols, row=row, col=col):
            return y[..., rows[row] : rows[row + 1], cols[col] : cols[col + 1]]

        _compare(
            f"resize to {target}",
            plain,
            spatial,
            ctx,
            whole,
            source_part.local(whole),
            lambda layer, x, t=target, lt=local_target, p=plain: layer(x, t if layer is p else lt),
            to_target,
            source_part.local,
        )

    pooled = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    target_part = ctx.partition(23, 29, TileRule(alignment=4))
    box = target_part.box()
    plain = RestBilinearResize()
    replicated = ReplicatedSourceResize.adopt(RestBilinearResize(), ctx)
    pooled_leaf = pooled.clone().requires_grad_()
    reference = plain(pooled_leaf, (23, 29))
    reference.backward(torch.ones_like(reference))
    local_leaf = pooled.clone().requires_grad_()
    output = replicated(local_leaf, (box.height, box.width))
    torch.testing.assert_close(output, target_part.local(reference.detach()), **TOL)
    output.backward(torch.ones_like(output))
    summed = local_leaf.grad.clone()
    dist.all_reduce(summed, group=ctx.group)
    torch.testing.assert_close(
        summed, pooled_leaf.grad, **TOL, msg="replicated resize: summed source gradient"
    )


def _check_grn(ctx: SpatialContext) -> None:
    whole, part = _map_cases(ctx, 20, 28, alignment=4)
    channels_last = whole.permute(0, 2, 3, 1).contiguous()
    # A channel that is zero over the whole scene (a constant nodata crop gives them): its norm's gradient is 0.
    channels_last[..., 2] = 0.0
    grn = ConvNextV2GRN(6).double()
    with torch.no_grad():
        grn.weight.normal_()
        grn.bias.normal_()
    spatial = SpatialGRN.adopt(copy.deepcopy(grn), ctx)
    box = part.box()

    def local_cl(y):
        return y[:, box.top : box.bottom, box.left : box.right]

    _compare(
        "grn",
        grn,
        spatial,
        ctx,
        channels_last,
        local_cl(channels_last),
        lambda m, x: m(x),
        local_cl,
        local_cl,
    )


def _check_swin(ctx: SpatialContext) -> None:
    # window 3, shift 1; the scene's last tile is padded to whole windows, as the whole scene is.
    config = SwinConfig(embed_dim=8, window_size=3, num_heads=[2], depths=[2], drop_path_rate=0.0)
    torch.manual_seed(0)
    height, width = 14, 17
    part = ctx.partition(height, width, TileRule(alignment=3))
    for shift in (0, 1):
        layer = SwinLayer(
            config, dim=8, input_resolution=(height, width), num_heads=2, shift_size=shift
        ).double()
        with torch.no_grad():
            for parameter in layer.parameters():
                parameter.normal_(0, 0.3)
        spatial = SpatialSwinLayer.adopt(copy.deepcopy(layer), ctx)
        tokens = torch.randn(2, height * width, 8, dtype=torch.float64)
        box = part.box()

        def local_tokens(y, box=box):
            grid = y.view(2, height, width, 8)[:, box.top : box.bottom, box.left : box.right]
            return grid.reshape(2, -1, 8)

        def run(module, x, layer=layer, box=box):
            dims = (height, width) if module is layer else (box.height, box.width)
            return module(x, dims, always_partition=True)[0]

        _compare(
            f"swin shift {shift}",
            layer,
            spatial,
            ctx,
            tokens,
            local_tokens(tokens),
            run,
            local_tokens,
            local_tokens,
        )


def _check_attention(ctx: SpatialContext) -> None:
    torch.manual_seed(0)
    counts = [5 + 3 * r for r in range(ctx.size)]  # uneven token counts per rank
    starts = [sum(counts[:r]) for r in range(ctx.size)]
    tokens = torch.randn(2, sum(counts), 12, dtype=torch.float64)

    def local(y):
        return y[:, starts[ctx.rank] : starts[ctx.rank] + counts[ctx.rank]]

    for heads in (ctx.size, 2 * ctx.size, 1, 3 if ctx.size != 3 else 2):
        if 12 % heads:
            continue
        attention = RestGlobalAttention(12, heads).double()
        spatial = SpatialGlobalAttention.adopt(copy.deepcopy(attention), ctx)
        _compare(
            f"attention {heads} heads",
            attention,
            spatial,
            ctx,
            tokens,
            local(tokens),
            lambda m, x: m(x)[0],
            local,
            local,
        )


def _check_loss(ctx: SpatialContext) -> None:
    torch.manual_seed(0)
    part = ctx.partition(11, 13, TileRule(alignment=1))
    logits = torch.randn(2, 4, 11, 13, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 11, 13))
    labels[:, :3] = 255
    whole = logits.clone().requires_grad_()
    reference = RestSegmentationLoss(255)(whole, labels)
    reference.backward()
    local = part.local(logits).clone().requires_grad_()
    loss = SpatialSegmentationLoss.adopt(RestSegmentationLoss(255), ctx)(local, part.local(labels))
    torch.testing.assert_close(loss, reference.detach(), **TOL)
    loss.backward()
    torch.testing.assert_close(local.grad, part.local(whole.grad), **TOL)


def _all_layers(rank: int, world_size: int) -> None:
    for grid in GRIDS[world_size]:
        ctx = SpatialContext.init(grid=grid)
        for check in (
            _check_map_layers,
            _check_resizes,
            _check_grn,
            _check_swin,
            _check_attention,
            _check_loss,
        ):
            check(ctx)


def test_spatial_layers_match_unsplit_on_two_processes():
    run_in_processes(_all_layers, 2)


def test_spatial_layers_match_unsplit_on_three_processes():
    run_in_processes(_all_layers, 3)


def test_spatial_layers_match_unsplit_on_four_processes():
    run_in_processes(_all_layers, 4)


def test_one_process_twins_equal_their_parents():
    ctx = SpatialContext.init()
    torch.manual_seed(0)
    x = torch.randn(1, 4, 9, 11, dtype=torch.float64)
    conv = nn.Conv2d(4, 4, 3, padding=1).double()
    torch.testing.assert_close(HaloConv2d.adopt(copy.deepcopy(conv), ctx)(x), conv(x), **TOL)
    torch.testing.assert_close(
        SpatialBilinearResize.adopt(RestBilinearResize(), ctx)(x, (20, 13)),
        F.interpolate(x, size=(20, 13), mode="bilinear", align_corners=False),
        **TOL,
    )
