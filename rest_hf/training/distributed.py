"""Small collective helpers: do a check once, and make every process fail (or go on) together.

A check that raises on one process while the others wait in a collective hangs the job until the timeout. So
up-front checks run on the first process and their outcome (a value, or the error message) is broadcast:
every process then returns the same value or raises the same `ValueError`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


PR_SET_PDEATHSIG = 1


def exit_with_launcher() -> bool:
    """Make this process die when the launcher that started it dies (Linux; under torchrun/accelerate only).

    torchrun starts each worker in its own session, so killing the launcher (or its process group) leaves the
    workers training on as orphans, and a run started again would race them for the same checkpoints. With
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


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


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
        device = None
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        dist.broadcast_object_list(outcome, src=0, device=device)
    status, value = outcome[0]
    if status == "error":
        raise ValueError(value)
    return value


def all_gather_objects(value: Any) -> list[Any]:
    """`value` of every process, in rank order (a list of one value without torch.distributed)."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


__all__ = [
    "all_gather_objects",
    "barrier",
    "exit_with_launcher",
    "is_distributed",
    "rank",
    "run_on_main",
    "world_size",
]
