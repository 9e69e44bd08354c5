"""glibc heap settings of `rest_hf.inference.heap`, each in a fresh interpreter (they are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rest_hf.inference.heap import _glibc

# Three 8 MiB blocks allocated, touched and freed, six times: glibc's default returns the top of its heap to the
# system after each pass (the next pass faults it in again, some 4,000 pages); kept, later passes reuse it.
_PASSES = textwrap.dedent(
    """
    import json, resource, sys, torch
    from rest_hf.inference.heap import keep_freed_heap
    kept = keep_freed_heap()
    faults = []
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [torch.ones(2 * 2**20) for _ in range(3)]
        del blocks
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"kept": kept, "faults": faults}))
    """
)


@pytest.mark.skipif(_glibc() is None, reason="needs glibc")
def test_kept_heap_serves_repeated_passes_without_page_faults():
    result = subprocess.run([sys.executable, "-c", _PASSES], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["kept"]
    # The first passes grow the heap; the later ones find it (the default would fault ~4,000 pages each).
    assert max(report["faults"][2:]) < 200, report
