"""`python -m tests.cli.announcing_forward ARGS`: `rest_hf` whose forward pass first writes the process's pid.

Each process writes `rank-<RANK>.pid` into the folder `REST_HF_TEST_PID_DIR` when its forward pass starts; the
process whose rank is `REST_HF_TEST_PAUSE_RANK` then waits 60 s before running the real forward pass, so a
test can stop it (SIGSTOP) at a known point, while the others already wait for it in the forward's collectives.
"""

import os
import sys
import time
from pathlib import Path

from rest_hf import RestForSemanticSegmentation
from rest_hf.cli import main

_forward = RestForSemanticSegmentation.forward


def forward(self, *args, **kwargs):
    rank = os.environ.get("RANK", "0")
    folder = Path(os.environ["REST_HF_TEST_PID_DIR"])
    (folder / f".rank-{rank}.pid").write_text(str(os.getpid()))
    (folder / f".rank-{rank}.pid").rename(folder / f"rank-{rank}.pid")  # complete when it appears
    if rank == os.environ.get("REST_HF_TEST_PAUSE_RANK"):
        time.sleep(60)
    return _forward(self, *args, **kwargs)


RestForSemanticSegmentation.forward = forward
sys.exit(main(sys.argv[1:]))
