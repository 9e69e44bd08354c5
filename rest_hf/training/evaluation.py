"""Validation through the same spatial path as training: each process predicts its tile of each scene.

Every process counts its own tile's pixels into a confusion matrix; one all-reduce over all processes then adds
the tiles of each scene (spatial group) and the scenes of every data-parallel group, so the metrics are those of
the whole validation set, computed by `rest_hf.metrics` (the same code as `rest-hf evaluate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..metrics import ConfusionMatrix


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    num_labels: int,
    ignore_index: int,
    accelerator: Any,
    id2label: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Metrics of `model` on `batches` (collated validation samples, this process's tiles), on every process.

    The model is left in eval mode; the caller restores its training mode (frozen stages stay in eval).

    Returns:
        `ConfusionMatrix.compute()`'s dict: `mean_iou`, `overall_accuracy`, `mean_f1`, per-class arrays, ...
    """
    model.eval()
    device = accelerator.device
    matrix = ConfusionMatrix(num_labels, ignore_index, device=device)
    for batch in batches:
        if "labels" not in batch:
            raise ValueError(f"validation scene {batch['name']} has no labels; validate on a labelled split")
        with accelerator.autocast():
            logits = model(pixel_values=batch["pixel_values"].to(device)).logits
        matrix.update(
            logits.argmax(dim=1), batch["labels"].to(device), valid_mask=batch["valid_mask"].to(device)
        )
    matrix.all_reduce()
    return matrix.compute(id2label)


__all__ = ["evaluate"]
