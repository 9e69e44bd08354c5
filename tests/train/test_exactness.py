"""Training is exact: 3 optimizer steps on 2 processes (grids 1x2 and 2x1) give the weights and losses of the
same 3 steps on the whole scenes in one process.

Both sides run `rest_hf.training.train_step` (the step `scripts/train.py` runs) with the run's AdamW groups,
warm-up schedule and gradient clipping, on tiny-swin with interaction layers on every stage and stochastic depth
on (so the processes must also draw the same random numbers). Every rank recomputes the one-process reference.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.spatial import GradientReducer, SpatialContext, parallelize_spatial
from rest_hf.training import build_optimizer, build_scheduler, train_step
from tests.multiprocess import run_in_processes

HEIGHT, WIDTH, BATCH, STEPS = 128, 192, 2, 3
WEIGHT_TOL = 1e-5
# The paper's peak rate. AdamW scales each parameter's step to about the learning rate whatever the gradient's
# size, so a gradient that is rounding noise on both sides (e.g. the conv before a BatchNorm that sees two values
# per channel) still moves its weight by ~lr, in a direction the rounding picks: weight differences scale with lr
# (at lr 1e-3 they reach 2e-4 with every gradient matching to float precision). At 6e-5 they stay below 1e-6.
LEARNING_RATE = 6e-5


def tiny_model() -> RestForSemanticSegmentation:
    torch.manual_seed(0)
    config = RestConfig.from_preset("tiny-swin", num_labels=3, interaction_drop_path_rate=0.1)
    config.backbone_config.drop_path_rate = 0.1
    return RestForSemanticSegmentation(RestConfig.from_dict(config.to_dict()))


def scenes() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(STEPS):
        pixels = torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=generator)
        # Labels that depend on the pixels, so the loss falls and the gradients are not noise.
        labels = (pixels[:, 0] > 0.3).long() + (pixels[:, 1] > 0.5).long()
        labels[0, :20, :50] = 255
        batches.append((pixels, labels))
    return batches


def train(ctx: SpatialContext | None, accelerator: Accelerator, checkpointing: bool = False):
    """Losses and final weights of 3 steps; `ctx=None`: the whole scenes in this process."""
    model = tiny_model()
    reducer = None
    if ctx is not None:
        parallelize_spatial(model, ctx)
        reducer = GradientReducer(model, ctx, bucket_mb=0.05)  # several buckets, overlapped with backward
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = build_optimizer(model, learning_rate=LEARNING_RATE, weight_decay=0.01)
    scheduler = build_scheduler(optimizer, max_steps=10, warmup_steps=2, warmup_ratio=0.1)
    optimizer = accelerator.prepare(optimizer)
    torch.manual_seed(1)  # stochastic depth draws
    losses = []
    for pixels, labels in scenes():
        if ctx is not None:
            part = ctx.partition(HEIGHT, WIDTH, model.config)
            pixels, labels = part.local(pixels), part.local(labels)
        batch = {"pixel_values": pixels, "labels": labels, "sample_size": (HEIGHT, WIDTH)}
        result = train_step(
            model,
            [batch],
            ctx or SpatialContext.trivial(),
            optimizer,
            scheduler,
            accelerator,
            grad_clip=0.5,
            reducer=reducer,
        )
        losses.append(result.loss)
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _compare(rank: int, world_size: int) -> None:
    accelerator = Accelerator(cpu=True)
    expected_losses, expected = train(None, accelerator)
    for grid, checkpointing in (((1, 2), False), ((2, 1), False), ((1, 2), True)):
        where = f"grid {grid}{' with activation checkpointing' if checkpointing else ''}"
        losses, weights = train(SpatialContext.init(grid), accelerator, checkpointing)
        torch.testing.assert_close(losses, expected_losses, rtol=1e-6, atol=1e-6, msg=f"{where}: losses")
        for name, tensor in expected.items():
            if tensor.is_floating_point():
                diff = (weights[name] - tensor).abs().max().item()
                assert diff <= WEIGHT_TOL, f"{where}: {name} differs by {diff} after {STEPS} steps"
            else:
                assert torch.equal(weights[name], tensor), f"{where}: {name}"
    moved = max(
        (expected[k] - v).abs().max().item()
        for k, v in tiny_model().state_dict().items()
        if v.is_floating_point()
    )
    assert moved > 10 * WEIGHT_TOL, f"the weights barely moved ({moved}): the comparison would be vacuous"


def test_three_steps_on_two_processes_match_one_process():
    run_in_processes(_compare, 2)


def test_activation_checkpointing_leaves_one_process_training_unchanged():
    accelerator = Accelerator(cpu=True)
    plain_losses, plain = train(None, accelerator)
    losses, weights = train(None, accelerator, checkpointing=True)
    assert losses == pytest.approx(plain_losses, rel=1e-6)
    for name, tensor in plain.items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_gradient_accumulation_steps_the_optimizer_once_per_accumulated_batch():
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = tiny_model().train()
    optimizer = build_optimizer(model, learning_rate=LEARNING_RATE, weight_decay=0.01)
    scheduler = build_scheduler(optimizer, max_steps=10, warmup_steps=2, warmup_ratio=0.1)
    optimizer = accelerator.prepare(optimizer)
    batches = [
        {"pixel_values": pixels, "labels": labels, "sample_size": (HEIGHT, WIDTH)}
        for pixels, labels in scenes()
    ]
    before = model.decode_head.classifier.weight.detach().clone()
    result = train_step(model, batches[:2], SpatialContext.trivial(), optimizer, scheduler, accelerator)
    assert scheduler.last_epoch == 1 and result.samples == 2 * BATCH
    assert not torch.equal(model.decode_head.classifier.weight, before)
    assert all(p.grad is None for p in model.parameters()), "gradients are cleared after the step"
    with pytest.raises(ValueError, match="got 1 micro-batches for gradient_accumulation_steps=2"):
        train_step(model, batches[:1], SpatialContext.trivial(), optimizer, scheduler, accelerator)
