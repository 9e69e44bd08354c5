"""Streaming segmentation metrics: a confusion matrix that is updated tile by tile and summed across processes.

The results use the keys and formulas of the `evaluate` library's `mean_iou` metric (which needs the Hub, so it
is not imported here):

- `per_category_iou[k] = TP / (TP + FP + FN)`, NaN when class k is absent from both reference and prediction;
- `per_category_accuracy[k] = TP / (TP + FN)` (recall), NaN when class k is absent from the reference;
- `overall_accuracy = sum(TP) / number of counted pixels`;
- `mean_iou`, `mean_accuracy` are NaN-ignoring means over classes (`np.nanmean`).

Added: `per_category_f1[k] = 2 TP / (2 TP + FP + FN)` (NaN like the IoU) and its nanmean `mean_f1`.

The matrix has rows = reference (target) classes and columns = predicted classes.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .io.classes import class_names

__all__ = ["ConfusionMatrix", "format_table", "metrics_to_json"]


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(np.asarray(x))
    except Exception as error:  # pragma: no cover - defensive
        raise TypeError(f"{name} must be a torch tensor or a numpy array, got {type(x).__name__}") from error


class ConfusionMatrix:
    """A (K, K) int64 confusion matrix accumulated over any number of `update` calls.

    Args:
        num_classes: K, the number of classes; labels are 0..K-1.
        ignore_index: reference value that is never counted (e.g. 255 for "no label").
        device: where the matrix lives (default CPU). Updates may come from any device.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(pred_tile, label_tile, valid_mask=valid_tile)   # per tile, any shapes
        >>> cm.all_reduce()                                           # sum over processes (no-op without dist)
        >>> metrics = cm.compute()
        >>> print(format_table(metrics, id2label))
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, device: str | torch.device = "cpu"):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self._matrix = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ state
    @property
    def matrix(self) -> torch.Tensor:
        """The (K, K) int64 counts: rows = reference class, columns = predicted class."""
        return self._matrix

    @property
    def num_pixels(self) -> int:
        """How many pixels have been counted so far."""
        return int(self._matrix.sum())

    def reset(self) -> None:
        self._matrix.zero_()

    def update(self, pred: Any, target: Any, valid_mask: Any = None) -> ConfusionMatrix:
        """Count one batch or tile.

        Args:
            pred: predicted class ids, any shape (torch tensor or numpy array, integer values in 0..K-1).
            target: reference class ids, same shape; pixels equal to `ignore_index` are not counted.
            valid_mask: optional boolean array of the same shape; pixels where it is False are not counted
                (e.g. nodata input pixels, whose prediction is meaningless).

        Raises:
            ValueError: shapes differ, or a counted pixel has a class id outside 0..K-1.
        """
        pred_t = _as_tensor(pred, "pred")
        target_t = _as_tensor(target, "target")
        if pred_t.shape != target_t.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {tuple(pred_t.shape)} and {tuple(target_t.shape)}"
            )
        device = target_t.device
        pred_t = pred_t.to(device=device).reshape(-1)
        target_t = target_t.reshape(-1)
        if pred_t.is_floating_point() or target_t.is_floating_point():
            pred_t = pred_t.round()
            target_t = target_t.round()
        pred_t = pred_t.to(torch.int64)
        target_t = target_t.to(torch.int64)

        keep = None
        if self.ignore_index is not None:
            keep = target_t != self.ignore_index
        if valid_mask is not None:
            mask_t = _as_tensor(valid_mask, "valid_mask").to(device=device)
            if mask_t.numel() != target_t.numel():
                raise ValueError(
                    f"valid_mask must have the shape of target {tuple(_as_tensor(target, 'target').shape)}, "
                    f"got {tuple(mask_t.shape)}"
                )
            mask_t = mask_t.reshape(-1).to(torch.bool)
            keep = mask_t if keep is None else keep & mask_t
        if keep is not None:
            pred_t = pred_t[keep]
            target_t = target_t[keep]
        if target_t.numel() == 0:
            return self

        k = self.num_classes
        for name, values in (("target", target_t), ("pred", pred_t)):
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= k:
                bad = lo if lo < 0 else hi
                hint = (
                    f" (target pixels equal to ignore_index={self.ignore_index} are skipped)"
                    if name == "target"
                    else " (pass valid_mask to leave out pixels without a prediction, e.g. nodata)"
                )
                raise ValueError(f"{name} contains class id {bad} outside 0..{k - 1}{hint}")
        counts = torch.bincount(target_t * k + pred_t, minlength=k * k).reshape(k, k)
        self._matrix += counts.to(device=self._matrix.device, dtype=torch.int64)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts into this one (same num_classes); returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one"
            )
        self._matrix += other.matrix.to(self._matrix.device)
        return self

    def all_reduce(self, group: Any = None) -> ConfusionMatrix:
        """Sum the matrix over a torch.distributed process group, in place.

        A no-op when torch.distributed is unavailable or not initialised. In a group without a CPU backend
        (NCCL alone) the counts travel through a GPU copy (`rest_hf.distributed.all_reduce_`). Every process of
        the group must call it.
        """
        from .distributed import all_reduce_

        all_reduce_(self._matrix, group)
        return self

    # ---------------------------------------------------------------- results
    def compute(self, id2label: Mapping[int, str] | Sequence[str] | None = None) -> dict[str, Any]:
        """Metrics from the counts so far.

        Returns:
            A dict with evaluate's `mean_iou` keys: `mean_iou`, `mean_accuracy`, `overall_accuracy` (floats)
            and `per_category_iou`, `per_category_accuracy` (float64 numpy arrays of length K); plus
            `per_category_f1`, `mean_f1`, `num_pixels` (int), `confusion_matrix` (int64 numpy (K, K)) and,
            when `id2label` is given, `class_names` (list of K names).
        """
        cm = self._matrix.detach().cpu().to(torch.float64).numpy()
        tp = np.diag(cm)
        ref = cm.sum(axis=1)  # TP + FN
        pred = cm.sum(axis=0)  # TP + FP
        union = ref + pred - tp  # TP + FP + FN
        total = cm.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(ref > 0, tp / ref, np.nan)
            f1 = np.where(union > 0, 2 * tp / (ref + pred), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN -> NaN, silently
            result: dict[str, Any] = {
                "mean_iou": float(np.nanmean(iou)),
                "mean_accuracy": float(np.nanmean(acc)),
                "overall_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
                "per_category_iou": iou,
                "per_category_accuracy": acc,
                "per_category_f1": f1,
                "mean_f1": float(np.nanmean(f1)),
            }
        result["num_pixels"] = int(total)
        result["confusion_matrix"] = self._matrix.detach().cpu().numpy().copy()
        if id2label is not None:
            result["class_names"] = _class_names(id2label, self.num_classes)
        return result

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, pixels={self.num_pixels})"


def _class_names(id2label: Mapping[Any, str] | Sequence[str] | None, num_classes: int) -> list[str]:
    """K display names: from id2label (int or str keys, or a list), `str(id)` where missing."""
    return class_names(id2label, num_classes, unnamed="{}")


def _num_classes(metrics: Mapping[str, Any]) -> int:
    return len(np.asarray(metrics["per_category_iou"]))


def _fmt(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100.0 * value:.2f}"


def format_table(
    metrics: Mapping[str, Any], id2label: Mapping[int, str] | Sequence[str] | None = None
) -> str:
    """A plain-text table: one row per class (id, name, IoU, accuracy, F1 in percent), then the means.

    Classes whose value is NaN (absent from reference and prediction) show `-`.
    """
    k = _num_classes(metrics)
    if id2label is None and "class_names" in metrics:
        id2label = metrics["class_names"]
    names = _class_names(id2label, k)
    iou = np.asarray(metrics["per_category_iou"], dtype=np.float64)
    acc = np.asarray(metrics["per_category_accuracy"], dtype=np.float64)
    f1 = np.asarray(metrics.get("per_category_f1", np.full(k, np.nan)), dtype=np.float64)
    name_w = max([len("class"), len("overall acc."), *(len(n) for n in names)])
    id_w = max(2, len(str(k - 1)))
    header = f"{'id':>{id_w}}  {'class':<{name_w}}  {'IoU':>7}  {'Acc':>7}  {'F1':>7}"
    rule = "-" * len(header)
    lines = [header, rule]
    for i in range(k):
        lines.append(
            f"{i:>{id_w}}  {names[i]:<{name_w}}  {_fmt(iou[i]):>7}  {_fmt(acc[i]):>7}  {_fmt(f1[i]):>7}"
        )
    lines.append(rule)
    mean_f1 = metrics.get("mean_f1", float("nan"))
    lines.append(
        f"{'':>{id_w}}  {'mean':<{name_w}}  {_fmt(metrics['mean_iou']):>7}  "
        f"{_fmt(metrics['mean_accuracy']):>7}  {_fmt(mean_f1):>7}"
    )
    lines.append(f"{'':>{id_w}}  {'overall acc.':<{name_w}}  {'':>7}  {_fmt(metrics['overall_accuracy']):>7}")
    if "num_pixels" in metrics:
        lines.append(f"({metrics['num_pixels']} pixels counted; values in percent)")
    else:
        lines.append("(values in percent)")
    return "\n".join(lines)


def _json_float(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def metrics_to_json(
    metrics: Mapping[str, Any], id2label: Mapping[int, str] | Sequence[str] | None = None
) -> dict[str, Any]:
    """A JSON-serialisable copy of `compute()`'s result: NaN -> None (null), arrays -> lists.

    Per-class values are given both as lists indexed by class id (`per_category_iou`, ...) and under
    `per_class`, keyed by class name: `{"water": {"id": 1, "iou": ..., "accuracy": ..., "f1": ...}}`.
    """
    k = _num_classes(metrics)
    if id2label is None and "class_names" in metrics:
        id2label = metrics["class_names"]
    names = _class_names(id2label, k)
    out: dict[str, Any] = {}
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy", "mean_f1"):
        if key in metrics:
            out[key] = _json_float(metrics[key])
    per_keys = {"per_category_iou": "iou", "per_category_accuracy": "accuracy", "per_category_f1": "f1"}
    for key in per_keys:
        if key in metrics:
            out[key] = [_json_float(v) for v in np.asarray(metrics[key]).reshape(-1)]
    if "num_pixels" in metrics:
        out["num_pixels"] = int(metrics["num_pixels"])
    out["class_names"] = names
    per_class: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        key = name if name not in per_class else f"{name} ({i})"
        entry: dict[str, Any] = {"id": i}
        for list_key, short in per_keys.items():
            if list_key in out:
                entry[short] = out[list_key][i]
        per_class[key] = entry
    out["per_class"] = per_class
    if "confusion_matrix" in metrics:
        out["confusion_matrix"] = np.asarray(metrics["confusion_matrix"]).astype(np.int64).tolist()
    json.dumps(out)  # fail here, not in the caller's writer, if anything is not serialisable
    return out
