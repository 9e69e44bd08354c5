"""glibc heap settings of `rest_hf.inference.heap`, each in a fresh interpreter (they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import rest_hf.inference.heap
from rest_hf.inference.heap import _glibc

# Three 8 MiB blocks malloc'ed, written and freed, ten times, straight through glibc: its default returns the
# top of the heap to the system after each pass (the next pass faults it in again, some 6,000 pages); kept,
# every pass after the first reuses it. The module is loaded from its file, so that the interpreter does not
# import torch and transformers with the package (6 s here) and allocates nothing else between the passes.
_PASSES = textwrap.dedent(
    """
    import ctypes, importlib.util, json, resource, sys
    spec = importlib.util.spec_from_file_location("heap", sys.argv[1])
    heap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heap)
    kept = heap.keep_freed_heap() if sys.argv[2] == "keep" else False
    libc = heap._glibc()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    faults = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [libc.malloc(8 * 2**20) for _ in range(3)]
        for block in blocks:
            ctypes.memset(block, 1, 8 * 2**20)
        for block in blocks:
            libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"kept": kept, "faults": faults}))
    """
)


def _page_faults_per_pass(heap: str) -> dict:
    module = rest_hf.inference.heap.__file__
    result = subprocess.run(
        [sys.executable, "-c", _PASSES, module, heap], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


@pytest.mark.skipif(_glibc() is None, reason="needs glibc")
def test_kept_heap_serves_repeated_passes_without_page_faults():
    kept, default = (_page_faults_per_pass(heap) for heap in ("keep", "default"))
    assert kept["kept"] and not default["kept"]
    # A few stray faults are the interpreter's own; a refaulted block would be 2,048.
    assert max(kept["faults"][1:]) < 200, kept
    # The comparison means something only while the default does refault the freed top of the heap.
    assert min(default["faults"][1:]) > 2000, default
