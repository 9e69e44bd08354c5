"""How much work and memory a scene will take, estimated before it starts, so that work that cannot finish
is refused with the option that fixes it instead of running for hours or dying in an allocation.

Both estimates are deliberately lower bounds (they count only what must exist), so a refusal is never wrong;
the limits are far beyond any sensible setting.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["MAX_WORK_FACTOR", "available_memory_bytes", "check_memory", "check_work", "holistic_bytes"]

MAX_WORK_FACTOR = 16.0
"""Refuse windowed and sliding runs that compute every pixel of the scene more than this many times."""


def check_work(
    path: Any,
    mode: str,
    windows: int,
    window: int,
    padded: tuple[int, int],
    scene: tuple[int, int],
    hint: str,
) -> None:
    """Refuse `windows` windows each computed at `padded` size when they compute the scene's pixels more than
    `MAX_WORK_FACTOR` times (a window of 1 px, an overlap of 0.9).

    Raises:
        ValueError: naming the count, the factor and `hint` (the option that fixes it).
    """
    factor = windows * padded[0] * padded[1] / max(1, scene[0] * scene[1])
    if factor > MAX_WORK_FACTOR:
        raise ValueError(
            f"{path}: --mode {mode} would compute every pixel about {factor:,.0f} times ({windows:,} windows of "
            f"{window} px, each computed at {padded[0]} x {padded[1]} px); {hint}"
        )


def holistic_bytes(config: Any, pixels: int) -> int:
    """A lower bound of the memory one process needs to predict `pixels` pixels of a scene at once.

    Counted per pixel: the float32 input (C bands), the float32 logits and their softmax (2K), the labels
    (1 byte), and the UperNet fusion input (4 pyramid levels of `hidden_size` float32 channels at 1/4 of
    the resolution: `hidden_size` bytes). Activations of the backbone, which are larger still, are not.
    """
    per_pixel = 4 * int(config.num_channels) + 8 * int(config.num_labels) + 1 + int(config.hidden_size)
    return per_pixel * int(pixels)


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory this process may still allocate on `device`: free GPU memory, or MemAvailable (bounded by the
    cgroup limit) on the CPU; None where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        return None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and available is not None:
            available = min(available, int(text))
    return available


def check_memory(path: Any, config: Any, tile: tuple[int, int], processes: int, device: torch.device) -> None:
    """Refuse a holistic prediction whose tile (per process) cannot fit in memory, before reading it.

    Raises:
        ValueError: naming both figures and the fixes (--mode windowed, more processes).
    """
    need = holistic_bytes(config, tile[0] * tile[1])
    available = available_memory_bytes(device)
    if available is None or need <= available:
        return
    more = max(2, math.ceil(processes * need / available))
    raise ValueError(
        f"{path}: holistic prediction needs at least {_gib(need)} per process for its {tile[0]} x {tile[1]} px "
        f"tile, but {_gib(available)} {'are' if available != 1 else 'is'} free on {device}; use --mode windowed "
        f"(e.g. --window 2048), or split the scene over {more} or more processes"
    )


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB"
