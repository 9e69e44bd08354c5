"""Run logs: `metrics.jsonl` (one JSON object per line), TensorBoard when installed, peak memory.

Only the first process writes. Each line has a `kind`: `train` (loss, learning rate, gradient norm, throughput,
peak memory per process), `eval` (validation metrics), `checkpoint`, `resume` or `end`; and the `step`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunLog:
    """Appends records to `output_dir/metrics.jsonl` and, when `tensorboard` is importable, to
    `output_dir/tensorboard/`. A no-op on processes other than the first (`enabled=False`)."""

    def __init__(self, output_dir: str | Path, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def write(self, kind: str, step: int, **values: Any) -> None:
        """One JSONL line `{"kind", "step", "time", **values}`; numbers also go to TensorBoard as `kind/name`."""
        if not self.enabled:
            return
        record = _clean({"kind": kind, "step": int(step), "time": round(time.time(), 3), **values})
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"{kind}/{name}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl` file (a torn last line from a killed run is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


__all__ = ["RunLog", "read_metrics"]
