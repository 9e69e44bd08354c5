"""Process set-up for prediction: the process group from a launcher's environment, devices, autocast,
agreement on failures across ranks, moving tiles to rank 0, peak memory.

Nothing here runs at import time; `init_distributed` is called once by the entry point (`rest-hf predict`)
and `destroy_distributed` at its exit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DTYPES",
    "FatalError",
    "SceneError",
    "agreed",
    "open_source",
    "agree",
    "agree_max",
    "autocast",
    "destroy_distributed",
    "gather_objects",
    "init_distributed",
    "is_distributed",
    "one_line",
    "peak_memory_bytes",
    "released_memory",
    "resolve_device",
    "send_tiles_to_root",
    "world_rank",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun / accelerate launch (1 when started directly)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


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


def init_distributed(device: torch.device, timeout_s: float = 600.0) -> bool:
    """Join the process group that torchrun / accelerate launch describe in the environment.

    Does nothing (returns False) when the process was started alone (no WORLD_SIZE, or WORLD_SIZE=1) or a group
    already exists. Backend: NCCL for CUDA devices, gloo for the CPU. `timeout_s` bounds every collective, so a
    peer that dies or stops answering makes the others fail after at most that long instead of hanging.

    Returns:
        True when this call created the group (the caller then destroys it with `destroy_distributed`).
    """
    if launched_world_size() <= 1 or is_distributed():
        return False
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run one process")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)
    return True


def destroy_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass (a no-op for float32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _members(scope: Any) -> tuple[Any, int]:
    """(process group, size) of a scope: a `SpatialContext` (its spatial group) or None (every process)."""
    if not is_distributed():
        return None, 1
    if scope is None:
        return None, dist.get_world_size()
    return scope.group, scope.size


def gather_objects(obj: Any, scope: Any = None) -> list[Any]:
    """Collective: every rank's `obj` (picklable), in rank order, on every rank of the scope.

    `scope` is a `SpatialContext` (the processes sharing its scene) or None (every process).
    """
    group, size = _members(scope)
    if size == 1:
        return [obj]
    objects: list[Any] = [None] * size
    dist.all_gather_object(objects, obj, group=group)
    return objects


def agree(message: str | None, scope: Any = None) -> str | None:
    """Collective: the first failure message of any rank of the scope (lowest rank first), or None.

    Every rank calls it at the same point with its own message (None when it succeeded); all get the same
    answer, so all take the same branch afterwards and none waits for a peer that gave up.
    """
    return next((m for m in gather_objects(message, scope) if m is not None), None)


def agree_max(value: float, scope: Any = None, device: torch.device | None = None) -> float:
    """Collective: the maximum of a number over the scope."""
    group, size = _members(scope)
    if size == 1:
        return float(value)
    on = device if dist.get_backend(group) == "nccl" and device is not None else torch.device("cpu")
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=on)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return float(tensor.item())


def send_tiles_to_root(
    tensors: Sequence[torch.Tensor],
    specs: Callable[[int], Sequence[tuple[tuple[int, ...], torch.dtype]]],
    ranks: Sequence[int],
    me: int,
    emit: Callable[[int, list[torch.Tensor]], None],
    device: torch.device,
) -> str | None:
    """Move each rank's tensors to the first rank of `ranks`, one rank at a time, and `emit` them there.

    Point-to-point (gloo and NCCL, uneven shapes), so the root never holds more than one rank's tensors at
    once on top of its own.

    Args:
        tensors: This rank's tensors (an empty list when it has nothing to send this round).
        specs: `specs(i)` gives the (shape, dtype) of each tensor the i-th rank of `ranks` sends (empty: none).
        ranks: Global ranks taking part, the root first.
        me: This rank's index in `ranks`.
        emit: Called on the root as `emit(i, tensors)` for every rank that sent something, in order.
        device: Where the root receives (the device of the tensors).

    Returns:
        On the root, the first error `emit` raised, as a one-line message (the root keeps receiving after it,
        so no sender is left blocked; the caller then `agree`s on it). None elsewhere.
    """
    if me != 0:
        for tensor in tensors:
            dist.send(tensor.contiguous(), dst=ranks[0])
        return None
    failure: str | None = None
    for index, rank in enumerate(ranks):
        if index == 0:
            received = list(tensors)
        else:
            received = []
            for shape, dtype in specs(index):
                buffer = torch.empty(shape, dtype=dtype, device=device)
                dist.recv(buffer, src=rank)
                received.append(buffer)
        if not received or failure is not None:
            continue
        try:
            emit(index, received)
        except Exception as error:  # reported once every tile has arrived
            failure = one_line(error)
    return failure


def one_line(error: BaseException) -> str:
    """The message of an exception on one line (its type when it has none)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process so far: CUDA allocations on a GPU, else the maximum resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


@contextlib.contextmanager
def released_memory(device: torch.device) -> Iterator[None]:
    """Return cached GPU blocks to the driver after a window (a no-op on the CPU)."""
    try:
        yield
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


class SceneError(Exception):
    """A scene cannot be predicted. One line naming the file; raised by every rank of the group alike."""


class FatalError(RuntimeError):
    """A failure inside a collective step (e.g. out of memory in the forward pass of one rank): the other
    processes are waiting in a collective call this rank will never make, so the run cannot go on."""


def agreed(step: Callable[[], Any], scope: Any = None, here: bool = True) -> Any:
    """Run `step` (on this rank when `here`); if it failed on any rank of `scope`, every rank raises that
    rank's one-line message as `SceneError`. Collective over `scope` (a `SpatialContext`, or None: every
    process). Returns the step's value (None where it did not run)."""
    value, failure = None, None
    if here:
        try:
            value = step()
        except Exception as error:
            failure = one_line(error)
    failure = agree(failure, scope)
    if failure is not None:
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise SceneError(failure)
    return value


def open_source(path: str | Path, bands: list[int] | None = None, scope: Any = None) -> Any:
    """A `RasterSource` opened on every rank of `scope`; a failure on any rank raises the same `SceneError`
    on all."""
    from ..io import RasterSource

    return agreed(lambda: RasterSource(path, bands), scope)
