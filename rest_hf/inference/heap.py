"""Keeping a long-running prediction process's memory flat over many scenes of varying sizes.

Peak memory used to creep up scene after scene (+148 MiB over 182 scenes in `scripts/bench_predict_memory.py`,
the largest scene alone needing about 470 MiB). Two causes: glibc's malloc keeps the heap freed by scenes of
varying sizes, and two caches keyed by input shape keep the convolutions of every scene size seen, oneDNN's
primitive cache and PyTorch's ideep cache in front of it (1,024 entries each by default).
`cap_convolution_caches` caps both; `return_freed_heap` trims the heap after each scene. Together: +5 MiB
over the same 182 scenes, at no measurable cost in speed (docs/benchmarks.md). Fixing glibc's mmap threshold
as well (`MALLOC_MMAP_THRESHOLD_=65536`) lowered the peak by 13 MiB but added no flatness and cost about a
fifth of the time of a small scene, so it is left to the environment.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Any

__all__ = ["CACHE_CAPACITIES", "cap_convolution_caches", "return_freed_heap"]

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
