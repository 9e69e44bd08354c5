"""The one home of process helpers: joining and leaving the process group, ranks, groups with timeouts, moving
objects and tiles between processes, agreeing on failures, and peak memory.

Nothing here runs at import time. Entry points (`rest-hf predict`, `scripts/train.py`) join the group that
`torchrun` / `accelerate launch` describe; libraries pass process groups (or a `SpatialContext`) explicitly.
Apart from `rest_hf/spatial/comm*.py` (the differentiable primitives of a spatial group), this is the only
module that calls `torch.distributed` collectives (`tests/test_distributed.py` walks the sources to check it).

Devices. A collective must send tensors on a device its backend accepts: NCCL takes only CUDA tensors, gloo
takes CPU tensors. `init_distributed` on a GPU joins a ``cpu:gloo,cuda:nccl`` group, so small metadata
(integers, pickled objects) may travel on the CPU while feature maps travel on the GPU; a group created by
someone else with NCCL alone gets its metadata on the GPU (`metadata_device`).

Timeouts. `dist.new_group` does not inherit the timeout of `init_process_group` (it falls back to torch's
default of 30 minutes for gloo), so a stopped peer would hang the others that long: `new_group` here gives
every group the timeout of the default group unless told otherwise.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

__all__ = [
    "AgreedError",
    "agree",
    "agree_max",
    "agree_or_raise",
    "agreed",
    "all_reduce_",
    "attempt",
    "barrier",
    "communication_device",
    "destroy_distributed",
    "exit_alone",
    "exit_with_launcher",
    "gather_objects",
    "group_timeout",
    "init_distributed",
    "is_distributed",
    "launched_world_size",
    "metadata_device",
    "new_group",
    "one_line",
    "peak_memory_bytes",
    "rank",
    "report_once",
    "run_on_main",
    "send_tiles_to_root",
    "world_size",
]

PR_SET_PDEATHSIG = 1
DEFAULT_TIMEOUT_S = 600.0


# ----------------------------------------------------------------------------------------- joining, ranks


def is_distributed() -> bool:
    """Whether this process belongs to an initialised `torch.distributed` group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank of this process (0 without torch.distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes of the job (1 without torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun / accelerate launch (1 when started directly)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def exit_with_launcher() -> bool:
    """Make this process die when the launcher that started it dies (Linux; under torchrun/accelerate only).

    torchrun starts each worker in its own session, so killing the launcher (or its process group) with SIGKILL
    leaves the workers running as orphans, and a job started again would race them for the same outputs. With
    the kernel's parent-death signal the workers go down with the launcher. Returns whether it was set.
    """
    if not sys.platform.startswith("linux") or "LOCAL_RANK" not in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the launcher died before the signal was armed
        os._exit(1)
    return True


def init_distributed(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group that torchrun / accelerate launch describe in the environment.

    Does nothing (returns False) when the process was started alone (no WORLD_SIZE, or WORLD_SIZE=1) or a group
    already exists. Ties the process to its launcher (`exit_with_launcher`). Backend: ``cpu:gloo,cuda:nccl``
    for CUDA devices (feature maps on NCCL, small metadata on gloo), gloo for the CPU. `timeout_s` bounds every
    collective of this group and of the groups `new_group` creates later, so a peer that dies or stops
    answering makes the others fail after at most that long instead of hanging.

    Returns:
        True when this call created the group (the caller then destroys it with `destroy_distributed`).
    """
    if launched_world_size() <= 1 or is_distributed():
        return False
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run one process")
    exit_with_launcher()
    kwargs: dict[str, Any] = {"backend": "gloo", "timeout": timedelta(seconds=timeout_s)}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs.update(backend="cpu:gloo,cuda:nccl", device_id=device)
    dist.init_process_group(**kwargs)
    return True


def destroy_distributed() -> None:
    """Leave the process group (a no-op without one)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier(group: Any = None) -> None:
    """Wait for every process of `group` (None: all); a no-op without torch.distributed."""
    if is_distributed():
        dist.barrier(group=group)


# --------------------------------------------------------------------------------------------- groups


def group_timeout(group: Any = None) -> timedelta:
    """The timeout of `group`'s collectives (None: the default group), as its backends hold it."""
    group = dist.distributed_c10d._get_default_group() if group is None else group
    for device in (torch.device("cpu"), torch.device("cuda")):
        try:
            # torch keeps the timeout only in each backend's options (no public getter).
            return group._get_backend(device).options._timeout
        except (RuntimeError, AttributeError, ValueError):
            continue
    return timedelta(seconds=DEFAULT_TIMEOUT_S)


def new_group(ranks: Sequence[int], timeout: timedelta | None = None) -> Any:
    """`dist.new_group(ranks)` with a timeout: by default that of the default group (collective over the world:
    every process calls it, in the same order, for every group)."""
    return dist.new_group(ranks=list(ranks), timeout=timeout or group_timeout())


def _backend_config(group: Any) -> str:
    return str(dist.get_backend_config(group)).lower()


def communication_device(group: Any = None) -> torch.device:
    """The device feature maps travel on: this process's GPU when the group has NCCL, else the CPU."""
    if not is_distributed() or "nccl" not in _backend_config(group):
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def metadata_device(group: Any = None) -> torch.device:
    """The device small metadata (sizes, flags) travels on: the CPU when the group has a CPU backend (gloo, or
    ``cpu:gloo,cuda:nccl``), else the communication device (an NCCL-only group, e.g. made by accelerate)."""
    config = _backend_config(group) if is_distributed() else "gloo"
    if "gloo" in config or "mpi" in config:
        return torch.device("cpu")
    return communication_device(group)


def _members(scope: Any) -> tuple[Any, int]:
    """(process group, size) of a scope: a `SpatialContext` (its spatial group), a process group, or None
    (every process)."""
    if not is_distributed():
        return None, 1
    if scope is None:
        return None, dist.get_world_size()
    if hasattr(scope, "size") and hasattr(scope, "group") and not callable(scope.size):
        return scope.group, scope.size
    return scope, dist.get_world_size(scope)


# ----------------------------------------------------------------------------------- objects, agreement


def gather_objects(obj: Any, scope: Any = None) -> list[Any]:
    """Collective: every rank's `obj` (picklable), in rank order, on every rank of the scope.

    `scope` is a `SpatialContext` (the processes sharing its scene), a process group, or None (every process).
    """
    group, size = _members(scope)
    if size == 1:
        return [obj]
    objects: list[Any] = [None] * size
    dist.all_gather_object(objects, obj, group=group)
    return objects


class AgreedError(Exception):
    """A failure that every process of a scope raises alike: the one-line message of the first (lowest rank)
    process that failed."""


def attempt(step: Callable[[], Any]) -> str | None:
    """Run `step`; None when it succeeded, else its error as one line (to be `agree`d on)."""
    try:
        step()
    except Exception as error:
        return one_line(error)
    return None


def agree(message: str | None, scope: Any = None) -> str | None:
    """Collective: the first failure message of any rank of the scope (lowest rank first), or None.

    Every rank calls it at the same point with its own message (None when it succeeded); all get the same
    answer, so all take the same branch afterwards and none waits for a peer that gave up.
    """
    return next((m for m in gather_objects(message, scope) if m is not None), None)


def agree_or_raise(message: str | None, scope: Any = None, error: type[Exception] = AgreedError) -> None:
    """Collective: raise `error(first message)` on every rank of the scope when any rank brought a message."""
    failure = agree(message, scope)
    if failure is not None:
        raise error(failure)


def agreed(
    step: Callable[[], T],
    scope: Any = None,
    here: bool = True,
    *,
    error: type[Exception] = AgreedError,
    catch: type[Exception] | tuple[type[Exception], ...] = Exception,
) -> T | None:
    """Collective: run `step` (on this rank when `here`); if it raised `catch` on any rank of `scope`, every
    rank raises `error` with that rank's one-line message (a value this rank made is closed first, when it
    has a `close`). Returns the step's value (None where it did not run).
    """
    value, failure = None, None
    if here:
        try:
            value = step()
        except catch as caught:
            failure = one_line(caught)
    failure = agree(failure, scope)
    if failure is not None:
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise error(failure)
    return value


def _print_line(line: str) -> None:
    """Write `line` and its newline to stderr in one system call, so that processes printing at the same
    moment into one pipe or terminal never interleave inside a line (`print` writes the newline apart, which
    an unbuffered stderr, as under some launchers, sends as a second write)."""
    sys.stderr.flush()
    try:
        descriptor = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced stderr (a test's capture, a notebook)
        print(line, file=sys.stderr, flush=True)
        return
    os.write(descriptor, f"{line}\n".encode(errors="replace"))


def report_once(message: str, program: str, scope: Any = None) -> None:
    """Collective: the first process of the scope prints `PROGRAM: error: MESSAGE`; every process returns
    only once it has (a peer that exits first makes torchrun SIGTERM the first one, maybe before it prints)."""
    if rank() == 0:
        _print_line(f"{program}: error: {message}")
    gather_objects(None, scope)


def exit_alone(message: str, program: str) -> NoReturn:
    """A failure the other processes cannot learn about (they wait in a collective this one will never make):
    print `PROGRAM: error: process N: MESSAGE` and exit now with 1 (the launcher, or the others' timeout,
    stops the rest)."""
    _print_line(f"{program}: error: process {rank()}: {message}")
    os._exit(1)


def agree_max(value: float, scope: Any = None) -> float:
    """Collective: the maximum of a number over the scope."""
    group, size = _members(scope)
    if size == 1:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=metadata_device(group))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return float(tensor.item())


def run_on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on global rank 0 only and give its result to every process.

    Raises:
        ValueError: on every process, with rank 0's message, when `fn` raised a `ValueError` (or `OSError`).
    """
    outcome: list[Any] = [None]
    if rank() == 0:
        try:
            outcome = [("ok", fn())]
        except (ValueError, OSError) as error:
            outcome = [("error", str(error))]
    if is_distributed():
        dist.broadcast_object_list(outcome, src=0, device=metadata_device())
    status, value = outcome[0]
    if status == "error":
        raise ValueError(value)
    return value


def one_line(error: BaseException) -> str:
    """The message of an exception on one line (its type when it has none)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


# ------------------------------------------------------------------------------------------------ tensors


def all_reduce_(tensor: torch.Tensor, group: Any = None, mean: bool = False) -> torch.Tensor:
    """Sum (or average) `tensor` over `group` in place, on a device the group's backend accepts.

    A CPU tensor in a group without a CPU backend (NCCL alone) travels through the communication device and
    back. Returns `tensor`. A no-op without torch.distributed.
    """
    group_, size = _members(group)
    if size == 1:
        return tensor
    device = tensor.device
    if device.type == "cpu" and metadata_device(group_).type != "cpu":
        device = communication_device(group_)
    moved = tensor if device == tensor.device else tensor.to(device)
    dist.all_reduce(moved, group=group_)
    if mean:
        moved /= size
    if moved is not tensor:
        tensor.copy_(moved)
    return tensor


Box = tuple[int, int, int, int]
"""(top, left, height, width) of a tile, in the coordinates its receiver places it in."""


def send_tiles_to_root(
    tiles: Sequence[torch.Tensor],
    boxes: Sequence[Box | None],
    kinds: Sequence[tuple[tuple[int, ...], torch.dtype]],
    ranks: Sequence[int],
    me: int,
    deliver: Callable[[int, int, list[torch.Tensor]], None],
    device: torch.device,
    bounds: tuple[int, int] | None = None,
) -> str | None:
    """The one transport from finished tiles to the process that writes them: each rank's tile goes to the
    first rank of `ranks`, one rank at a time, and is delivered there with its place.

    Point-to-point (gloo and NCCL, uneven tiles), so the root never holds more than one rank's tile at once
    on top of its own. Every rank calls it with the same `boxes`, `kinds` and `bounds`.

    Args:
        tiles: This rank's tensors, each (*leading, height, width) of its box, the leading shape and dtype of
            `kinds` (empty where this rank's box is None).
        boxes: `boxes[i]`: the box of the tile of the i-th rank of `ranks`; None: it sends nothing this time.
        kinds: (leading shape, dtype) of each tensor of a tile, the same for every rank; e.g.
            `[((), torch.uint8), ((K,), torch.float32)]` for (h, w) labels and (K, h, w) probabilities.
        ranks: Global ranks taking part, the root first.
        me: This rank's index in `ranks`.
        deliver: Called on the root as `deliver(top, left, tensors)` for every tile, in rank order, with the
            tensors on the CPU and cropped to `bounds`.
        device: Where the root receives (the device of the tiles).
        bounds: (rows, cols) past which a tile is padding, cropped off (a tile wholly in it is not delivered).

    Returns:
        On the root, the first error `deliver` raised, as a one-line message (the root keeps receiving after
        it, so no sender is left blocked; the caller then `agree`s on it). None elsewhere.
    """
    if me != 0:
        if boxes[me] is not None:
            for tile in tiles:
                dist.send(tile.contiguous(), dst=ranks[0])
        return None
    failure: str | None = None
    for index, source in enumerate(ranks):
        box = boxes[index]
        if box is None:
            continue
        top, left, height, width = box
        if index == 0:
            received = list(tiles)
        else:
            received = []
            for leading, dtype in kinds:
                buffer = torch.empty((*leading, height, width), dtype=dtype, device=device)
                dist.recv(buffer, src=source)
                received.append(buffer)
        rows, cols = (height, width) if bounds is None else (bounds[0] - top, bounds[1] - left)
        rows, cols = min(rows, height), min(cols, width)
        if failure is not None or rows <= 0 or cols <= 0:
            continue
        try:
            deliver(top, left, [t[..., :rows, :cols].cpu() for t in received])
        except Exception as error:  # reported once every tile has arrived
            failure = one_line(error)
    return failure


# ----------------------------------------------------------------------------------------------- memory


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process so far: CUDA allocations on a GPU, else the maximum resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # KiB on Linux, bytes on macOS
