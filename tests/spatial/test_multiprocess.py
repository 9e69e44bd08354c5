"""The multi-process helper itself: results flow, failures and hangs fail the test."""

import pytest
import torch
import torch.distributed as dist

from tests.multiprocess import run_in_processes


def _sum_ranks(rank, nprocs):
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    assert t.item() == sum(range(nprocs))


def _fail_on_rank_one(rank, nprocs):
    if rank == 1:
        raise ValueError("boom on rank one")
    dist.barrier()


def test_all_reduce_in_three_processes():
    run_in_processes(_sum_ranks, 3)


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
        run_in_processes(_sleep_forever, 2, timeout=4)
