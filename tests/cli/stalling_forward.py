"""`python -m tests.cli.stalling_forward ARGS`: `rest_hf` whose forward pass announces itself and then stalls.

The forward pass creates the file named by `REST_HF_TEST_STALL_MARKER` and sleeps: a test waits for that file,
so it knows the outputs' temporaries exist, and then kills or hangs up the process at a known point.
"""

import os
import sys
import time
from pathlib import Path

from rest_hf import RestForSemanticSegmentation
from rest_hf.cli import main


def forward(self, *args, **kwargs):
    Path(os.environ["REST_HF_TEST_STALL_MARKER"]).touch()
    time.sleep(120)
    raise RuntimeError("the test did not stop this process")


RestForSemanticSegmentation.forward = forward
sys.exit(main(sys.argv[1:]))
