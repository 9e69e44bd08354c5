"""One optimizer step of spatial training: forward and backward on this process's tiles, the gradient rule,
clipping, AdamW, the schedule.

The model is never wrapped in `DistributedDataParallel` (nor passed to `accelerator.prepare`): DDP would
all-reduce (average) gradients over every process, but a spatial group's processes hold *parts* of one sample's
gradient, which must be *summed* over the group and only averaged across data-parallel groups.
A `GradientReducer` does exactly that during the backward of the last micro-batch (bucketed all-reduces in a
fixed order, overlapped with the backward pass, like DDP); without one, `reduce_spatial_gradients` does it after
that backward. Accelerate
still provides autocast, loss scaling (fp16), the accumulation counter and the optimizer wrapper that skips the
step on micro-batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..distributed import all_reduce_
from ..spatial import GradientReducer, SpatialContext, reduce_spatial_gradients


@dataclass
class StepResult:
    """What one optimizer step reports (the same on every process).

    Attributes:
        loss: Mean training loss of the step's samples (over micro-batches and data-parallel groups).
        grad_norm: Global gradient norm before clipping (of the whole model's gradient, identical everywhere).
        learning_rate: Learning rate the step used (first parameter group).
        samples: Samples the step trained on, over all data-parallel groups.
        pixels: Sample pixels the step trained on, over all data-parallel groups.
    """

    loss: float
    grad_norm: float
    learning_rate: float
    samples: int
    pixels: int


def _to_device(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if "labels" not in batch:
        raise ValueError(
            f"training batch of scenes {batch.get('name')} has no labels; train on a labelled split"
        )
    return (
        batch["pixel_values"].to(device, non_blocking=True),
        batch["labels"].to(device, non_blocking=True),
    )


def train_step(
    model: nn.Module,
    micro_batches: list[dict[str, Any]],
    ctx: SpatialContext,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any,
    grad_clip: float = 0.0,
    reducer: GradientReducer | None = None,
) -> StepResult:
    """Run one optimizer step over `micro_batches` (as many as `accelerator.gradient_accumulation_steps`).

    Args:
        model: The parallelized model (`parallelize_spatial`), in training mode.
        micro_batches: Collated batches (`collate_samples`): this process's tiles, `pixel_values` (B, C, h, w) and
            `labels` (B, h, w).
        ctx: The spatial context the model was parallelized with.
        optimizer: The optimizer, prepared by `accelerator.prepare` (it skips the step until gradients sync).
        scheduler: The learning-rate scheduler (not prepared: accelerate would step it once per process).
        accelerator: An `accelerate.Accelerator` (autocast, loss scaling, accumulation).
        grad_clip: Maximum global gradient norm; 0 measures the norm without clipping.
        reducer: The model's `GradientReducer` (overlaps the gradient reduction with backward); None reduces
            after backward.

    Returns:
        A `StepResult`, identical on every process.
    """
    if len(micro_batches) != accelerator.gradient_accumulation_steps:
        raise ValueError(
            f"got {len(micro_batches)} micro-batches for gradient_accumulation_steps="
            f"{accelerator.gradient_accumulation_steps}"
        )
    learning_rate = optimizer.param_groups[0]["lr"]
    losses = []
    for batch in micro_batches:
        pixel_values, labels = _to_device(batch, accelerator.device)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                loss = model(pixel_values=pixel_values, labels=labels).loss
            # The loss is the sample's mean over its valid pixels, the same value on every process of the
            # group; each process's backward yields its share of the gradients (the gradient rule).
            accelerator.backward(loss)
            losses.append(loss.detach().float())
            if accelerator.sync_gradients:
                reduce_spatial_gradients(model, ctx)
                # After the reduction every process holds the whole gradient: the norm, the clipping and the
                # update are identical everywhere, so the replicas never drift apart.
                params = [p for p in model.parameters() if p.grad is not None]
                grad_norm = accelerator.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
            optimizer.step()
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    if not accelerator.sync_gradients:
        raise RuntimeError(
            "the accumulation counter is out of step: the last micro-batch did not sync gradients"
        )
    loss = torch.stack(losses).mean()
    if ctx.dp_size > 1:
        all_reduce_(loss, ctx.dp_group, mean=True)
    samples = sum(int(b["pixel_values"].shape[0]) for b in micro_batches)
    pixels = sum(int(b["pixel_values"].shape[0]) * math.prod(b["sample_size"]) for b in micro_batches)
    return StepResult(
        loss=float(loss),
        grad_norm=float(grad_norm),
        learning_rate=float(learning_rate),
        samples=samples * ctx.dp_size,
        pixels=pixels * ctx.dp_size,
    )


__all__ = ["StepResult", "train_step"]
