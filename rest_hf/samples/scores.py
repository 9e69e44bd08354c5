"""Reference scores of a sample dataset that any trained model must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def majority_baseline(info: Mapping[str, Any], split: str = "test") -> dict[str, Any]:
    """Scores of predicting the most frequent TRAIN class everywhere on `split`, from `dataset_info.json`.

    The mean IoU averages over the classes present in `split` (the convention of `rest-hf evaluate` for a
    prediction that is one class everywhere: absent classes that are never predicted have no IoU).

    Returns:
        ``mean_iou``, ``overall_accuracy``, ``per_category_iou`` (None for classes absent from `split`) and
        ``majority_class`` (its name).
    """
    train, target = info["class_pixels"]["train"], info["class_pixels"][split]
    majority = max(range(len(train)), key=train.__getitem__)
    total = sum(target)
    iou: list[float | None] = [None if n == 0 else 0.0 for n in target]
    iou[majority] = target[majority] / total  # predicted everywhere: TP / (TP + FP), 0 when absent
    present = [v for v in iou if v is not None]
    return {
        "mean_iou": sum(present) / len(present),
        "overall_accuracy": target[majority] / total,
        "per_category_iou": iou,
        "majority_class": info["classes"][majority],
    }


__all__ = ["majority_baseline"]
