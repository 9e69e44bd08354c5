"""Whole REST models on 2-4 gloo processes against the same model on the whole scene in one process.

Swin and ConvNeXt-V2 tiny models with interaction layers on every stage, grids 1x2, 2x1, 2x2 and 1x3, scenes
with uneven tiles, in training mode (BatchNorm batch statistics): logits, loss, input gradients, parameter
gradients after the gradient rule's sum, and BatchNorm running statistics after the step.
"""

from __future__ import annotations

import copy

import pytest
import torch

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.spatial import SpatialContext, parallelize_spatial, reduce_spatial_gradients
from tests.multiprocess import run_in_processes

# (preset, scene height, scene width) per grid; sizes leave uneven last tiles.
CASES = {
    (1, 2): [("tiny-swin", 40, 160), ("tiny-convnext", 64, 230)],
    (2, 1): [("tiny-swin", 160, 40), ("tiny-convnext", 210, 64)],
    (2, 2): [("tiny-swin", 144, 176), ("tiny-convnext", 200, 230)],
    (1, 3): [("tiny-swin", 40, 232), ("tiny-convnext", 64, 300)],
}
LOGIT_TOL = 1e-4


def build_model(preset: str, placement: str | None = None, **overrides) -> RestForSemanticSegmentation:
    torch.manual_seed(0)
    if placement:
        overrides["interaction_placement"] = placement
    model = RestForSemanticSegmentation(RestConfig.from_preset(preset, num_labels=3, **overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model


def scene(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, height, width, generator=generator)
    labels = torch.randint(0, 3, (2, height, width), generator=generator)
    labels[0, : height // 3, : width // 2] = 255
    return pixels, labels


def _check_training_step(ctx: SpatialContext, preset: str, height: int, width: int, **overrides) -> None:
    model = build_model(preset, **overrides).train()
    reference = copy.deepcopy(model)
    pixels, labels = scene(height, width)

    whole = pixels.clone().requires_grad_()
    expected = reference(whole, labels=labels)
    expected.loss.backward()

    parallelize_spatial(model, ctx)
    part = ctx.partition(height, width, model.config)
    local = part.local(pixels).clone().requires_grad_()
    output = model(pixel_values=local, labels=part.local(labels))
    where = f"{preset} {overrides or ''} grid {ctx.grid} scene {height}x{width}"
    diff = (output.logits - part.local(expected.logits.detach())).abs().max().item()
    assert diff <= LOGIT_TOL, f"{where}: logits differ by {diff}"
    torch.testing.assert_close(output.loss, expected.loss.detach(), rtol=1e-5, atol=1e-6, msg=where)

    output.loss.backward()
    torch.testing.assert_close(
        local.grad, part.local(whole.grad), rtol=1e-3, atol=1e-6, msg=f"{where}: input grad"
    )
    reduce_spatial_gradients(model, ctx)
    reference_params = dict(reference.named_parameters())
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(
            parameter.grad, reference_params[name].grad, rtol=1e-3, atol=1e-5, msg=f"{where}: grad of {name}"
        )
    reference_buffers = dict(reference.named_buffers())
    for name, buffer in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(
                buffer, reference_buffers[name], rtol=1e-4, atol=1e-6, msg=f"{where}: {name}"
            )

    model.eval()
    reference.eval()
    with torch.no_grad():
        logits = model(pixel_values=part.local(pixels)).logits
        expected_logits = reference(pixels).logits
    diff = (logits - part.local(expected_logits)).abs().max().item()
    assert diff <= LOGIT_TOL, f"{where} (eval): logits differ by {diff}"
    gathered = part.gather(logits)
    assert (gathered - expected_logits).abs().max().item() <= LOGIT_TOL


def _run_grid(rank: int, world_size: int, grid: tuple[int, int]) -> None:
    ctx = SpatialContext.init(grid=grid)
    for preset, height, width in CASES[grid]:
        _check_training_step(ctx, preset, height, width)
    if grid == (1, 2):  # the GLH-Water checkpoint's head (its own exact-mode twin)
        _check_training_step(ctx, "tiny-convnext", 64, 230, decoder_variant="lwc")


@pytest.mark.parametrize("grid", list(CASES), ids=lambda g: f"{g[0]}x{g[1]}")
def test_parallel_training_step_matches_whole_scene(grid):
    run_in_processes(_run_grid, grid[0] * grid[1], grid)


def _check_regional(rank: int, world_size: int) -> None:
    """Regional mode = each tile alone through the local layers, attention over all tiles' tokens."""
    ctx = SpatialContext.init(grid=(1, 2))
    model = build_model("tiny-swin").eval()
    reference = copy.deepcopy(model)
    pixels, _ = scene(64, 128)
    exact = parallelize_spatial(copy.deepcopy(model), ctx, mode="exact")
    regional = parallelize_spatial(model, ctx, mode="regional")
    part = ctx.partition(64, 128, model.config)
    with torch.no_grad():
        regional_logits = regional(pixel_values=part.local(pixels)).logits
        exact_logits = exact(pixel_values=part.local(pixels)).logits
        expected = _per_tile_reference(reference, pixels, part)
    torch.testing.assert_close(regional_logits, expected, rtol=1e-4, atol=1e-4)
    border = regional_logits[..., -4:] if ctx.coord[1] == 0 else regional_logits[..., :4]
    exact_border = exact_logits[..., -4:] if ctx.coord[1] == 0 else exact_logits[..., :4]
    assert (border - exact_border).abs().max() > 1e-3, (
        "regional mode should differ from exact at tile borders"
    )


def _per_tile_reference(model: RestForSemanticSegmentation, pixels: torch.Tensor, part) -> torch.Tensor:
    """The original design on a 1x2 grid of equal tiles, computed in one process.

    Each tile runs the backbone alone; each interaction layer attends over both tiles' tokens (the tiles' maps
    side by side: attention has no positional terms, so this is attention over the union of tokens); then
    each tile runs the norms and the decoder alone.
    """
    boxes = part.boxes()
    tiles = [pixels[..., b.top : b.bottom, b.left : b.right] for b in boxes]
    swin = model.backbone.swin
    states = [swin.embeddings(tile) for tile in tiles]
    hidden = [s[0] for s in states]
    dims = [s[1] for s in states]
    features = [[] for _ in tiles]
    for stage, layer in enumerate(swin.encoder.layers):
        for t in range(len(tiles)):
            for block in layer.blocks:
                hidden[t] = block(hidden[t], dims[t], always_partition=True)[0]
        maps = [h.transpose(1, 2).reshape(h.shape[0], -1, *d) for h, d in zip(hidden, dims, strict=True)]
        joined = model.interaction_layers[str(stage)](torch.cat(maps, dim=3))[0]
        widths = [m.shape[3] for m in maps]
        norm = model.backbone.hidden_states_norms[f"stage{stage + 1}"]
        for t, interacted in enumerate(joined.split(widths, dim=3)):
            tokens = interacted.flatten(2).transpose(1, 2)
            features[t].append(norm(tokens).transpose(1, 2).reshape_as(interacted))
            if layer.downsample is not None:
                hidden[t] = layer.downsample(hidden[t], dims[t])
                dims[t] = ((dims[t][0] + 1) // 2, (dims[t][1] + 1) // 2)
    mine = part.coord[1]
    logits = model.decode_head(features[mine])
    return torch.nn.functional.interpolate(
        logits, size=tiles[mine].shape[2:], mode="bilinear", align_corners=False
    )


def test_regional_mode_reproduces_the_original_per_tile_design():
    run_in_processes(_check_regional, 2)


def _check_bad_tiles(rank: int, world_size: int) -> None:
    ctx = SpatialContext.init(grid=(1, 2))
    model = parallelize_spatial(build_model("tiny-swin").eval(), ctx)
    width = 80 if ctx.coord[1] == 0 else 48  # a border at 80 px is not a multiple of the 64 px alignment
    with pytest.raises(ValueError, match="multiples of 64 px"):
        model(pixel_values=torch.zeros(1, 3, 64, width))


def test_misaligned_tiles_fail_on_every_rank_with_the_same_message():
    run_in_processes(_check_bad_tiles, 2)
