"""What the spatial core refuses or guarantees: tiles the model accepts, strict twins, one layout exchange per
forward, and a gradient reduction in the same order on every rank."""

from __future__ import annotations

import collections
import copy
import itertools

import pytest
import torch
import torch.distributed as dist
from torch import nn

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.distributed import gather_objects
from rest_hf.spatial import (
    GradientReducer,
    SpatialContext,
    TileRule,
    parallelize_spatial,
    reduce_spatial_gradients,
)
from rest_hf.spatial.layers import HaloConv2d, SpatialBatchNorm2d
from rest_hf.spatial.partition import TilePartition
from tests.multiprocess import run_in_processes


def tiny(preset: str, **overrides) -> RestForSemanticSegmentation:
    torch.manual_seed(0)
    return RestForSemanticSegmentation(RestConfig.from_preset(preset, num_labels=3, **overrides))


# ------------------------------------------------------------------------------------------------ tile rule


@pytest.mark.parametrize("preset", ["tiny-convnext", "tiny-swin"])
def test_partition_from_the_config_never_gives_tiles_the_model_refuses(preset):
    config = RestConfig.from_preset(preset)
    rule = TileRule.from_config(config)
    for height, width, grid in itertools.product(
        range(1, 400, 17), (135, 200, 257), [(1, 2), (2, 1), (2, 3)]
    ):
        for coord in itertools.product(range(grid[0]), range(grid[1])):
            try:
                part = rule.partition(height, width, grid, coord)
            except ValueError as error:
                assert "px" in str(error) and "\n" not in str(error)
                padded = rule.padded_size(height, width, grid)
                rule.check(rule.partition(*padded, grid, coord))  # the size it names works
                continue
            rule.check(part)  # the model's own check accepts it
            assert min(part.height, part.width) >= rule.min_input


def test_the_new_users_convnext_case_is_refused_up_front_with_the_size_that_works():
    """The issue's case: 135 px wide over 1x2 with ConvNeXt; a bare alignment used to pass and fail later."""
    ctx = SpatialContext(grid=(1, 2), coord=(0, 1), rank=1, global_ranks=(0, 1))
    config = RestConfig.from_preset("tiny-convnext")
    with pytest.raises(
        ValueError, match=r"scene 135 px wide cannot be split into 2 columns.*pad the scene to at least 192"
    ):
        ctx.partition(64, 135, config)
    part = ctx.partition(64, 192, config)
    assert part.col_edges == (0, 96, 192)
    with pytest.raises(TypeError, match="pass model.config"):
        ctx.partition(64, 192, 32)


def test_the_model_check_names_a_partition_that_works():
    rule = TileRule.from_config(RestConfig.from_preset("tiny-convnext"))
    layout = TilePartition(height=64, width=200, grid=(1, 2), row_edges=(0, 64), col_edges=(0, 32, 200))
    with pytest.raises(ValueError, match=r"ctx.partition\(height, width, model.config\)"):
        rule.check(layout)


def test_feature_map_layouts_follow_the_backbone_rounding():
    layout = TilePartition(height=64, width=230, grid=(1, 2), row_edges=(0, 64), col_edges=(0, 96, 230))
    floor = TileRule(alignment=32, min_tile=96, rounding="floor", max_stride=32).at_stride(layout, 32)
    ceil = TileRule(alignment=32, rounding="ceil", max_stride=32).at_stride(layout, 32)
    assert floor.col_edges == (0, 3, 7) and ceil.col_edges == (0, 3, 8)


# --------------------------------------------------------------------------------------- strict twins


def test_parallelize_keeps_parameters_buffers_and_state_dict_keys():
    model = tiny("tiny-convnext")
    params = {name: id(p) for name, p in model.named_parameters()}
    buffers = {name: id(b) for name, b in model.named_buffers()}
    keys = list(model.state_dict())
    parallelize_spatial(model, SpatialContext.trivial())
    assert {name: id(p) for name, p in model.named_parameters()} == params
    assert {name: id(b) for name, b in model.named_buffers()} == buffers
    assert list(model.state_dict()) == keys
    assert isinstance(model.decode_head.fpn_convs[0].conv, HaloConv2d)


class PaddedConv(nn.Conv2d):
    """A subclass the twins do not know (it could compute anything)."""


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        (nn.GroupNorm(1, 16), "GroupNorm mixes pixels across the scene"),
        (
            nn.Conv2d(16, 16, 3, stride=2, padding=1),
            r"Conv2d\(kernel=\(3, 3\), stride=\(2, 2\), padding=\(1, 1\)\)",
        ),
        (PaddedConv(16, 16, 3, padding=1), "PaddedConv subclasses Conv2d"),
    ],
)
def test_parallelize_refuses_modules_that_see_beyond_their_tile(replacement, message):
    model = tiny("tiny-convnext")
    model.decode_head.fpn_bottleneck.batch_norm = replacement
    with pytest.raises(ValueError, match=rf"module 'decode_head.fpn_bottleneck.batch_norm': {message}"):
        parallelize_spatial(model, SpatialContext.trivial())


def test_regional_mode_keeps_padded_convolutions_local_but_refuses_unknown_subclasses():
    model = tiny("tiny-convnext")
    model.decode_head.fpn_bottleneck.batch_norm = nn.GroupNorm(1, 16)
    parallelize_spatial(model, SpatialContext.trivial(), mode="regional")  # per tile by design
    model = tiny("tiny-convnext")
    model.decode_head.fpn_bottleneck.batch_norm = type("MyNorm", (nn.BatchNorm2d,), {})(16)
    with pytest.raises(ValueError, match="MyNorm subclasses BatchNorm2d"):
        parallelize_spatial(model, SpatialContext.trivial(), mode="regional")


def test_adopt_refuses_a_module_of_another_type():
    ctx = SpatialContext.trivial()
    with pytest.raises(TypeError, match="HaloConv2d replaces Conv2d modules, not Linear"):
        HaloConv2d.adopt(nn.Linear(2, 2), ctx)
    with pytest.raises(TypeError, match="not PaddedConv"):
        HaloConv2d.adopt(PaddedConv(2, 2, 3, padding=1), ctx)
    with pytest.raises(TypeError, match="SpatialBatchNorm2d replaces BatchNorm2d modules, not SyncBatchNorm"):
        SpatialBatchNorm2d.adopt(nn.SyncBatchNorm(2), ctx)


# ------------------------------------------------------------------------------------- collective counts

COUNTED = ("all_reduce", "all_gather", "all_to_all_single", "all_gather_object", "broadcast", "send", "recv")


class Counter:
    """Counts torch.distributed collectives by name while active; `metadata` counts int64 all-gathers."""

    def __enter__(self):
        self.counts = collections.Counter()
        self.originals = {name: getattr(dist, name) for name in COUNTED}
        for name, original in self.originals.items():
            setattr(dist, name, self._counted(name, original))
        return self

    def __exit__(self, *exc):
        for name, original in self.originals.items():
            setattr(dist, name, original)

    def _counted(self, name, original):
        def call(*args, **kwargs):
            self.counts[name] += 1
            if name == "all_gather" and args[1].dtype == torch.int64:
                self.counts["metadata"] += 1
            return original(*args, **kwargs)

        return call


def _count(ctx, preset, depths):
    config = RestConfig.from_preset(preset, num_labels=3)
    config.backbone_config.depths = depths
    torch.manual_seed(0)
    model = parallelize_spatial(RestForSemanticSegmentation(config), ctx)
    part = ctx.partition(64, 256, model.config)
    generator = torch.Generator().manual_seed(0)
    pixels = part.local(torch.randn(2, 3, 64, 256, generator=generator))
    labels = part.local(torch.randint(0, 3, (2, 64, 256), generator=generator))
    with Counter() as forward, torch.no_grad():
        model.eval()(pixel_values=pixels)
    with Counter() as step:
        model.train()(pixel_values=pixels, labels=labels).loss.backward()
        reduce_spatial_gradients(model, ctx)
    return dict(forward.counts), dict(step.counts)


def _check_counts(rank: int, world_size: int) -> None:
    ctx = SpatialContext.init(grid=(1, 2))
    # ConvNeXt in evaluation: 4 halo exchanges in the backbone (depthwise 7x7); 2 in the decoder (one for the
    # whole head's reach, one for the final 4x resize); 2 all-to-alls per interaction layer; 4 GRN sums and 1
    # sum for all pyramid-pooling scales (small sums travel as all-to-alls on gloo). One more block per stage
    # adds one halo and one GRN sum each.
    shallow = _count(ctx, "tiny-convnext", [1, 1, 1, 1])
    deep = _count(ctx, "tiny-convnext", [2, 2, 2, 2])
    assert shallow[0] == {"all_gather": 1, "metadata": 1, "all_to_all_single": 19}
    assert deep[0] == {"all_gather": 1, "metadata": 1, "all_to_all_single": 27}
    # A training step: the head runs layer by layer (its BatchNorms need the scene's batch statistics at every
    # layer: 8 exchanges in the decoder, the FPN levels' together), plus BatchNorm sums, the loss, every
    # primitive's backward and one gradient bucket (the only all_reduce: large sums keep it); still one layout
    # exchange.
    assert shallow[1] == {"all_gather": 1, "metadata": 1, "all_to_all_single": 98, "all_reduce": 1}
    assert deep[1]["metadata"] == deep[1]["all_gather"] == 1
    swin = _count(ctx, "tiny-swin", [2, 2, 2, 2])
    assert swin[0]["metadata"] == swin[1]["metadata"] == swin[0]["all_gather"] == 1


def test_one_layout_exchange_per_forward_and_training_step():
    run_in_processes(_check_counts, 2)


def _regional_training_step(rank: int, world_size: int) -> None:
    ctx = SpatialContext.init(grid=(1, 2))
    model = parallelize_spatial(tiny("tiny-convnext").train(), ctx, mode="regional")
    part = ctx.partition(64, 256, model.config)
    generator = torch.Generator().manual_seed(0)
    pixels = part.local(torch.randn(2, 3, 64, 256, generator=generator))
    labels = part.local(torch.randint(0, 3, (2, 64, 256), generator=generator))
    model(pixel_values=pixels, labels=labels).loss.backward()
    # BatchNorm statistics are global in regional mode too, the per-tile pooled maps' included.
    stats = torch.cat([b.detach().flatten() for name, b in model.named_buffers() if "running" in name])
    everyone = gather_objects(stats, ctx)
    torch.testing.assert_close(everyone[0], everyone[1], rtol=0, atol=0)


def test_regional_training_keeps_batchnorm_statistics_global():
    run_in_processes(_regional_training_step, 2)


# ----------------------------------------------------------------------------------- gradient reduction


class Mixed(nn.Module):
    """Parameters of three dtypes, interleaved, so that buckets change dtype several times."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4).double()
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 4).to(torch.bfloat16)
        self.d = nn.Linear(4, 4).double()
        self.e = nn.Linear(4, 4)

    def forward(self, x):
        x = self.b(self.a(x.double()).float())
        x = self.c(x.bfloat16()).float()
        return self.e(self.d(x.double()).float()).sum()


def _check_mixed_dtypes(rank: int, world_size: int) -> None:
    ctx = SpatialContext.init(grid=(1, 2))
    torch.manual_seed(0)
    model = Mixed()
    reference = copy.deepcopy(model)
    inputs = [torch.randn(3, 4, generator=torch.Generator().manual_seed(r)) for r in range(world_size)]
    for x in inputs:
        reference(x).backward()  # the sum over ranks of every rank's gradient
    reducer = GradientReducer(model, ctx, bucket_mb=40 * 4 / 2**20)  # a bucket per ~40 floats
    assert len(reducer.buckets) >= 5 and all(len({p.dtype for p in b}) == 1 for b in reducer.buckets)
    order = []
    original = dist.all_reduce

    def recorded(tensor, *args, **kwargs):
        order.append((str(tensor.dtype), tensor.numel()))
        return original(tensor, *args, **kwargs)

    dist.all_reduce = recorded
    try:
        reducer.arm()
        model(inputs[rank]).backward()
        reducer.finish()
    finally:
        dist.all_reduce = original
    everyone = gather_objects(order, ctx)
    assert everyone[0] == everyone[1] and len(order) == len(reducer.buckets)
    for (name, param), expected in zip(model.named_parameters(), reference.parameters(), strict=True):
        tol = 1e-2 if param.dtype == torch.bfloat16 else 1e-6
        torch.testing.assert_close(param.grad, expected.grad, rtol=tol, atol=tol, msg=name)
    synchronous = copy.deepcopy(Mixed())
    synchronous.load_state_dict(model.state_dict())
    synchronous(inputs[rank]).backward()
    reduce_spatial_gradients(synchronous, ctx, bucket_mb=40 * 4 / 2**20)
    for param, other in zip(model.parameters(), synchronous.parameters(), strict=True):
        torch.testing.assert_close(param.grad, other.grad, rtol=0, atol=0)


def test_bucketed_reduction_runs_in_one_order_with_mixed_dtypes():
    run_in_processes(_check_mixed_dtypes, 2)
