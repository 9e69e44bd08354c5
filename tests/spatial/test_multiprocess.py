"""The multi-process helper itself: failures and hangs fail the test (every spatial test shows that it runs)."""

import pytest
import torch.distributed as dist

from tests.multiprocess import run_in_processes


def _fail_on_rank_one(rank, nprocs):
    if rank == 1:
        raise ValueError("boom on rank one")
    dist.barrier()


def test_failure_reports_rank_traceback():
    with pytest.raises(
        pytest.fail.Exception, match=r"^_fail_on_rank_one: rank 1 of 2 failed:(?s:.*)boom on rank one"
    ):
        run_in_processes(_fail_on_rank_one, 2, timeout=60)


def _sleep_forever(rank, nprocs):
    import time

    time.sleep(600)


def test_hang_is_bounded_by_timeout():
    with pytest.raises(pytest.fail.Exception, match="did not finish"):
        run_in_processes(_sleep_forever, 1, timeout=4)
