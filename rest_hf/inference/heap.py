"""Keeping a long-running prediction process's heap flat over many scenes of varying sizes.

glibc's malloc serves large blocks below its mmap threshold from the heap, and raises that threshold (up to
32 MiB) each time such a block is freed; scenes of varying sizes then leave the heap fragmented, freed memory
is not returned, and peak memory creeps up scene after scene. `limit_heap_growth` fixes the mmap threshold
(which also stops its dynamic growth), so every block of 64 KiB or more is its own mapping and goes back to
the system when it is freed; `return_freed_heap` trims what is left after each scene. Both are no-ops where
the C library is not glibc (macOS, Windows, musl). Figures: `scripts/bench_predict_memory.py`,
docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
from typing import Any

__all__ = ["MMAP_THRESHOLD_BYTES", "limit_heap_growth", "return_freed_heap"]

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 64 * 1024
"""Blocks from this size up are mapped on their own (glibc's default before it adapts: 128 KiB)."""


@functools.cache
def _glibc() -> Any:
    """The C library when it is glibc (it has `mallopt` and `malloc_trim`), else None."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def limit_heap_growth(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every allocation of `threshold` bytes or more by its own mapping, from now on (glibc only).

    Returns whether the setting was applied. Call it once, before the first scene.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))


def return_freed_heap() -> None:
    """Give the heap freed by a scene back to the system (glibc keeps it otherwise). A no-op without glibc."""
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(OSError):
            libc.malloc_trim(0)
