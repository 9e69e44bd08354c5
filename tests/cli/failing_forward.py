"""`python -m tests.cli.failing_forward ARGS`: `rest_hf` whose forward pass fails on process 1 only.

Used under torchrun to check that a failure inside a collective step (out of memory on one GPU, say) stops
every process promptly instead of leaving the others waiting for the process-group timeout.
"""

import os
import sys

from rest_hf import RestForSemanticSegmentation
from rest_hf.cli import main

original = RestForSemanticSegmentation.forward


def forward(self, *args, **kwargs):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("out of memory (simulated on process 1)")
    return original(self, *args, **kwargs)


RestForSemanticSegmentation.forward = forward
sys.exit(main(sys.argv[1:]))
