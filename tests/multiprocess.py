"""Run a test body in several gloo processes (one per simulated GPU).

``run_in_processes(fn, nprocs, *args)`` spawns ``nprocs`` processes; each sets one thread, joins a gloo
process group through a fresh file store, calls ``fn(rank, nprocs, *args)`` and destroys the group.
``fn`` must be a module-level (picklable) function. An exception in any rank fails the calling test
with the traceback of the rank that failed first (peers that then lose their connection are listed
after it); a hang is bounded by ``timeout`` seconds (collectives time out too).
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
import traceback
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank, fn, nprocs, tmp, timeout, args):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(tmp, 'store')}",
        rank=rank,
        world_size=nprocs,
        timeout=timedelta(seconds=timeout),
    )
    try:
        dist.barrier()  # every pair is connected before any rank can finish and close its sockets
        fn(rank, nprocs, *args)
        dist.barrier()
    except BaseException:
        with open(os.path.join(tmp, f"rank{rank}.err"), "w") as f:
            f.write(f"{time.time()!r}\n{traceback.format_exc()}")
        raise
    finally:
        dist.destroy_process_group()


def _failures(tmp: str, nprocs: int) -> str:
    reports = []
    for path in glob.glob(os.path.join(tmp, "rank*.err")):
        with open(path) as f:
            stamp, text = f.read().split("\n", 1)
        reports.append((float(stamp), int(os.path.basename(path)[4:-4]), text))
    reports.sort()
    return "\n".join(f"rank {rank} of {nprocs} failed:\n{text}" for _, rank, text in reports)


def run_in_processes(fn, nprocs: int, *args, timeout: float = 180) -> None:
    name = getattr(fn, "__name__", repr(fn))
    with tempfile.TemporaryDirectory() as tmp:
        context = mp.start_processes(
            _worker, args=(fn, nprocs, tmp, timeout, args), nprocs=nprocs, join=False, start_method="spawn"
        )
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=0.2):
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} in {nprocs} processes did not finish in {timeout} s", pytrace=False)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
            pytest.fail(f"{name}: {_failures(tmp, nprocs) or error}", pytrace=False)
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
            for process in context.processes:
                process.join(5)
