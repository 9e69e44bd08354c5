"""Running the `rest-hf` command line in fresh processes, as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TORCHRUN = Path(sys.executable).parent / "torchrun"


def run_cli(
    *args: str, processes: int = 1, timeout: float = 300, module: str = "rest_hf"
) -> subprocess.CompletedProcess:
    """`python -m rest_hf ARGS`, or under `torchrun --standalone` (a free port) with several processes."""
    if processes == 1:
        command = [sys.executable, "-m", module, *args]
    else:
        if not TORCHRUN.exists():
            pytest.skip(f"torchrun is not installed next to {sys.executable}")
        command = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes), "-m", module, *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
