"""The gradient rule of spatial training, reduced the way DDP does it: fixed buckets, launched in a fixed order,
overlapped with the backward pass.

Each rank's parameter gradients are partial sums (see `loss.py`): summed over the spatial group they equal the
single-process gradients; averaged over the data-parallel groups they give the mean over scenes. The
parameters are cut once into buckets (about `bucket_mb` MiB each, one dtype per bucket, in reverse
registration order, roughly the order backward produces gradients). With a `GradientReducer` attached, a
bucket's all-reduce starts as soon as every gradient in it is final (`register_post_accumulate_grad_hook`),
while backward computes the rest; buckets are launched strictly in index order on every rank (a bucket ready
early waits for the ones before it), so the collectives never interleave differently between processes, even
with mixed parameter dtypes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from .context import SpatialContext

DEFAULT_BUCKET_MB = 25.0


def gradient_buckets(model: nn.Module, bucket_mb: float = DEFAULT_BUCKET_MB) -> list[list[nn.Parameter]]:
    """Trainable parameters in buckets: reverse registration order, one dtype per bucket, at most `bucket_mb`
    MiB each (a larger parameter gets a bucket of its own). The same on every rank of identical models."""
    limit = bucket_mb * 2**20
    buckets: list[list[nn.Parameter]] = []
    size = 0.0
    for param in reversed([p for p in model.parameters() if p.requires_grad]):
        nbytes = param.numel() * param.element_size()
        if not buckets or buckets[-1][0].dtype != param.dtype or size + nbytes > limit:
            buckets.append([])
            size = 0.0
        buckets[-1].append(param)
        size += nbytes
    return buckets


def _flat(bucket: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in bucket])


def _write_back(bucket: list[nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for param in bucket:
        if param.grad is not None:
            param.grad.copy_(flat[offset : offset + param.numel()].view_as(param.grad))
        offset += param.numel()


def _needs_reduction(ctx: SpatialContext) -> bool:
    return ctx.size > 1 or ctx.dp_size > 1


def _reduce_dp(flat: torch.Tensor, ctx: SpatialContext) -> None:
    if ctx.dp_size > 1:
        dist.all_reduce(flat, group=ctx.dp_group)
        flat /= ctx.dp_size


@torch.no_grad()
def reduce_spatial_gradients(
    model: nn.Module, ctx: SpatialContext, bucket_mb: float = DEFAULT_BUCKET_MB
) -> None:
    """Apply the gradient rule after `backward()`: sum over the spatial group, average over data-parallel groups.

    The synchronous form of `GradientReducer` (same buckets, same order). Call before clipping or the optimizer
    step. A no-op for one process.
    """
    if not _needs_reduction(ctx):
        return
    for bucket in gradient_buckets(model, bucket_mb):
        if all(p.grad is None for p in bucket):
            continue
        flat = _flat(bucket)
        if ctx.size > 1:
            dist.all_reduce(flat, group=ctx.group)
        _reduce_dp(flat, ctx)
        _write_back(bucket, flat)


class GradientReducer:
    """Reduces gradients bucket by bucket during backward (the gradient rule, overlapped like DDP).

    Usage per optimizer step: ``reducer.arm()`` before the backward of the last micro-batch (earlier micro-batches
    only accumulate), then ``reducer.finish()`` after it: it launches the buckets that got no gradient, waits for
    every all-reduce and writes the reduced gradients back. Between `arm` and `finish` every rank must run the
    same backward (as every spatial primitive requires anyway).

    Args:
        model: The parallelized model (hooks are registered on its trainable parameters).
        ctx: The spatial context.
        bucket_mb: Bucket size in MiB.
    """

    def __init__(self, model: nn.Module, ctx: SpatialContext, bucket_mb: float = DEFAULT_BUCKET_MB) -> None:
        self.ctx = ctx
        self.buckets = gradient_buckets(model, bucket_mb)
        self._where = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket}
        self._armed = False
        self._ready: list[int] = []
        self._flats: list[torch.Tensor | None] = []
        self._works: list[Any] = []
        self._next = 0
        self._handles = []
        if _needs_reduction(ctx):
            for bucket in self.buckets:
                for param in bucket:
                    self._handles.append(param.register_post_accumulate_grad_hook(self._on_grad))

    def arm(self) -> None:
        """Reduce during the next backward."""
        self._armed = True
        self._ready = [0] * len(self.buckets)
        self._flats = [None] * len(self.buckets)
        self._works = [None] * len(self.buckets)
        self._next = 0

    def _launch(self, index: int) -> None:
        flat = _flat(self.buckets[index])
        self._flats[index] = flat
        if self.ctx.size > 1:
            self._works[index] = dist.all_reduce(flat, group=self.ctx.group, async_op=True)

    def _on_grad(self, param: nn.Parameter) -> None:
        if not self._armed:
            return
        index = self._where[id(param)]
        self._ready[index] += 1
        # Launch in index order only, so every rank issues the same collectives in the same order.
        while self._next < len(self.buckets) and self._ready[self._next] == len(self.buckets[self._next]):
            self._launch(self._next)
            self._next += 1

    @torch.no_grad()
    def finish(self) -> None:
        """Launch what is left, wait for every bucket, average over data-parallel groups, write back."""
        if not self._armed:
            return
        self._armed = False
        if not _needs_reduction(self.ctx):
            return
        while self._next < len(self.buckets):
            if any(p.grad is not None for p in self.buckets[self._next]):  # the same on every rank
                self._launch(self._next)
            self._next += 1
        for index, bucket in enumerate(self.buckets):
            if self._works[index] is not None:
                self._works[index].wait()
            flat = self._flats[index]
            if flat is None:
                continue
            _reduce_dp(flat, self.ctx)
            _write_back(bucket, flat)
        self._flats = []
        self._works = []

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


__all__ = ["DEFAULT_BUCKET_MB", "GradientReducer", "gradient_buckets", "reduce_spatial_gradients"]
