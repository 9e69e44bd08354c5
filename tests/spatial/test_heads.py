"""The decode heads' twins against the unsplit heads, in fp64, forward and backward, on 2-4 gloo processes.

In evaluation a twin computes the whole head from one halo exchange of its four inputs (plus the pyramid
pooling's sum); where that reach does not fit in the neighbouring tiles, or in training, it runs layer by
layer. Both must give the whole scene's logits on every tile, and the features' gradients.
"""

from __future__ import annotations

import collections
import copy

import pytest
import torch
import torch.distributed as dist

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.spatial import SpatialContext, parallelize_spatial
from rest_hf.spatial.partition import TilePartition, partition
from tests.multiprocess import run_in_processes

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _model(decoder_variant: str) -> RestForSemanticSegmentation:
    torch.manual_seed(0)
    config = RestConfig.from_preset("tiny-convnext", num_labels=3, decoder_variant=decoder_variant)
    model = RestForSemanticSegmentation(config).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.2)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model


class _CountedAllToAll:
    """Counts `all_to_all_single` calls while active (every exchange of the heads is one)."""

    def __enter__(self):
        self.calls = 0
        self.original = dist.all_to_all_single

        def counted(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        dist.all_to_all_single = counted
        return self

    def __exit__(self, *exc):
        dist.all_to_all_single = self.original


def _check_head(ctx: SpatialContext, decoder_variant: str, layout: TilePartition) -> int:
    """Compare the twin with the unsplit head on an input split as `layout`; returns the number of exchanges
    of the twin's forward."""
    model = _model(decoder_variant)
    spatial = parallelize_spatial(copy.deepcopy(model), ctx)
    spatial.spatial_layouts.begin(layout.box().height, layout.box().width)  # as the model's pre-hook does
    rule = spatial.spatial_layouts.rule
    levels = [rule.at_stride(layout, stride) for stride in (4, 8, 16, 32)]
    generator = torch.Generator().manual_seed(1)
    channels = model.config.backbone_config.hidden_sizes
    whole = [
        torch.randn(
            2, c, level.height, level.width, generator=generator, dtype=torch.float64
        ).requires_grad_()
        for c, level in zip(channels, levels, strict=True)
    ]
    local = [level.local(f.detach()).clone().requires_grad_() for level, f in zip(levels, whole, strict=True)]

    expected = model.decode_head(whole)
    upstream = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    expected.backward(upstream)
    out_level = levels[0] if decoder_variant == "upernet" else levels[-1]
    with _CountedAllToAll() as counter:
        output = spatial.decode_head(local)
    where = f"{decoder_variant} tiles {layout.row_edges} x {layout.col_edges}"
    torch.testing.assert_close(output, out_level.local(expected.detach()), **TOL, msg=f"{where}: forward")
    output.backward(out_level.local(upstream))
    for i, (level, f, g) in enumerate(zip(levels, whole, local, strict=True)):
        torch.testing.assert_close(g.grad, level.local(f.grad), **TOL, msg=f"{where}: gradient of level {i}")
    return counter.calls


# Input sizes per grid: aligned tiles; a last tile uneven at every stride; tiles that reach their neighbours by
# different amounts (the one-exchange head sends the most any tile needs, each tile reads what it needs).
CASES = {
    (1, 2): [(96, 192), (141, 269), (64, 230)],
    (2, 1): [(210, 64)],
    (2, 2): [(192, 192), (237, 269)],
    (1, 3): [(96, 288), (141, 365)],
}


def _heads(rank: int, world_size: int, grid: tuple[int, int]) -> None:
    ctx = SpatialContext.init(grid=grid)
    counts = collections.Counter()
    for variant in ("upernet", "lwc"):
        for height, width in CASES[grid]:
            layout = partition(height, width, grid, ctx.coord, alignment=32, min_tile=96)
            counts[variant, "fits"] = _check_head(ctx, variant, layout)
    # One exchange for all halos, one for the pyramid pooling's sum.
    assert counts["upernet", "fits"] == counts["lwc", "fits"] == 2, counts
    if grid == (1, 2):
        # A last tile of 1 px at stride 32 cannot give its neighbour the 3 px the one-exchange head would read
        # there: the head runs layer by layer.
        layout = TilePartition(64, 160, grid, (0, 64), (0, 128, 160), ctx.coord)
        for variant in ("upernet", "lwc"):
            assert _check_head(ctx, variant, layout) > 2


@pytest.mark.parametrize("grid", list(CASES), ids=lambda g: f"{g[0]}x{g[1]}")
def test_heads_match_the_unsplit_head_forward_and_backward(grid):
    run_in_processes(_heads, grid[0] * grid[1], grid)
