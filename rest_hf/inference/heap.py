"""Keeping a long-running prediction process's memory flat over many scenes of varying sizes.

Peak memory used to creep up scene after scene (+148 MiB over 182 scenes in `scripts/bench_predict_memory.py`,
the largest scene alone needing about 470 MiB). Two causes: glibc's malloc keeps the heap freed by scenes of
varying sizes, and two caches keyed by input shape keep the convolutions of every scene size seen, oneDNN's
primitive cache and PyTorch's ideep cache in front of it (1,024 entries each by default).
`cap_convolution_caches` caps both; `return_freed_heap` trims the heap after each scene. Together: +5 MiB
over the same 182 scenes, at no measurable cost in speed (docs/benchmarks.md). Fixing glibc's mmap threshold
as well (`MALLOC_MMAP_THRESHOLD_=65536`) lowered the peak by 13 MiB but added no flatness and cost about a
fifth of the time of a small scene, so it is left to the environment.

`keep_freed_heap` is the opposite trade, for a process that runs the same forward pass again and again (a
benchmark, a training loop on CPU): glibc returns freed memory at the top of its heap to the system and the
next pass faults it in again page by page, which on a virtual machine costs up to a fifth of a tiny model's
forward pass (`scripts/bench_spatial.py --heap keep`, docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Any

__all__ = ["CACHE_CAPACITIES", "cap_convolution_caches", "keep_freed_heap", "return_freed_heap"]

CACHE_CAPACITIES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0", "LRU_CACHE_CAPACITY": "1"}
"""Entries of oneDNN's primitive cache and of ideep's cache: none and one (ideep crashes with none). A
convolution's primitive is then made again at nearly every call, a fraction of a millisecond each."""


def cap_convolution_caches() -> None:
    """Cap oneDNN's and ideep's caches of convolution primitives at `CACHE_CAPACITIES`, unless the
    environment already sets them.

    Both read their capacity from the environment once, when the process runs its first oneDNN convolution:
    call this before the first forward pass of the process (later it changes nothing).
    """
    for variable, capacity in CACHE_CAPACITIES.items():
        os.environ.setdefault(variable, capacity)


@functools.cache
def _glibc() -> Any:
    """The C library when it is glibc (it has `malloc_trim`), else None."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 (musl has none)
    except (OSError, AttributeError):
        return None
    return libc


def return_freed_heap() -> None:
    """Give the heap freed by a scene back to the system (glibc keeps it otherwise). A no-op without glibc."""
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(OSError):
            libc.malloc_trim(0)


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit systems.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_LARGEST_MMAP_THRESHOLD = 32 * 2**20


def keep_freed_heap() -> bool:
    """Make glibc keep freed memory for the next allocations instead of returning it to the system.

    Blocks up to 32 MiB come from the heap (not from fresh mappings), the heap is never trimmed, and it grows
    with 64 MiB of slack: after the first pass, a repeated forward pass allocates without a page fault. The
    price is memory: the process keeps its peak. Process-wide; call it once, before the work.

    Returns:
        Whether the settings took (False without glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    settings = (
        (_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, 2**31 - 1),
        (_M_TOP_PAD, 64 * 2**20),
    )
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
