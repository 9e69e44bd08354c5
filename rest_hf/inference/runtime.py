"""What prediction adds to the process helpers of `rest_hf.distributed`: devices, autocast, the scene error
that every rank of a group raises alike, opening a scene on every rank, and returning cached GPU memory after
a window.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..distributed import AgreedError, agreed

__all__ = [
    "DTYPES",
    "FatalError",
    "SceneError",
    "autocast",
    "open_source",
    "released_memory",
    "resolve_device",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str | None) -> torch.device:
    """`auto` (or None): this process's GPU when CUDA is available (LOCAL_RANK picks it), else the CPU."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for but CUDA is not available here; use --device cpu"
            )
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    elif device.type != "cpu":
        raise ValueError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass (a no-op for float32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def released_memory(device: torch.device) -> Iterator[None]:
    """Return cached GPU blocks to the driver after a window (a no-op on the CPU)."""
    try:
        yield
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


class SceneError(AgreedError):
    """A scene cannot be predicted. One line naming the file; raised by every rank of the group alike (the
    failure agreement of `rest_hf.distributed.agreed`)."""


class FatalError(RuntimeError):
    """A failure inside a collective step (e.g. out of memory in the forward pass of one rank): the other
    processes are waiting in a collective call this rank will never make, so the run cannot go on."""


def open_source(path: str | Path, bands: list[int] | None = None, scope: Any = None) -> Any:
    """A `RasterSource` opened on every rank of `scope`; a failure on any rank raises the same `SceneError`
    on all."""
    from ..io import RasterSource

    return agreed(lambda: RasterSource(path, bands), scope, error=SceneError)
