"""Two "nodes" on this machine: two torchrun launchers that meet through a c10d rendezvous on 127.0.0.1, two
processes each, for `rest-hf predict` (a 1x2 spatial group per node, data parallelism across the nodes) and
`scripts/train.py` (one 2x2 spatial group spanning both nodes): the labels and the trained weights are those
of one process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from safetensors.torch import load_file

from rest_hf.training import read_metrics, write_synthetic_dataset
from tests.inference.helpers import save_model, synthetic_scene

rasterio = pytest.importorskip("rasterio")

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this Python")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1", GLOO_SOCKET_IFNAME="lo")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_nodes(program: list[str], tmp_path: Path, timeout: float = 400) -> None:
    """Run `program` (after torchrun's options) on two launchers of two processes each; both must succeed."""
    port = _free_port()
    launchers = []
    for node in range(2):
        command = [
            str(TORCHRUN), "--nnodes", "2", "--nproc_per_node", "2", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"test-{port}", "--local-addr", "127.0.0.1",
            *program,
        ]  # fmt: skip
        log = (tmp_path / f"node{node}.log").open("w")
        launchers.append(
            subprocess.Popen(
                command, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    try:
        for launcher in launchers:
            launcher.wait(timeout=timeout)
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
    logs = "\n".join((tmp_path / f"node{n}.log").read_text()[-3000:] for n in range(2))
    assert [launcher.returncode for launcher in launchers] == [0, 0], logs


def test_predict_on_two_nodes_writes_the_labels_of_one_process(tmp_path, make_geotiff):
    model = save_model(tmp_path / "model", 3, synthetic_scene(96, 96, seed=3))
    scenes = [
        make_geotiff(tmp_path / "in" / f"scene{i}.tif", synthetic_scene(160, 200, seed=i)) for i in range(2)
    ]
    single, multi = tmp_path / "single", tmp_path / "multi"
    one = subprocess.run(
        [sys.executable, "-m", "rest_hf", "predict", *map(str, scenes), "-o", str(single), "--model", str(model)],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    # Grid 1x2: ranks 0-1 (node 0) split one scene, ranks 2-3 (node 1) the other.
    program = ["-m", "rest_hf", "predict", *map(str, scenes), "-o", str(multi), "--model", str(model)]
    _two_nodes([*program, "--grid", "1x2", "--timeout", "120"], tmp_path)
    for scene in scenes:
        with rasterio.open(single / scene.name) as a, rasterio.open(multi / scene.name) as b:
            np.testing.assert_array_equal(b.read(), a.read())


def test_training_on_two_nodes_gives_the_weights_of_one_process(tmp_path):
    dataset = write_synthetic_dataset(tmp_path / "data", "shapes", num_train=4, num_val=1, size=128)

    def program(output: Path, grid: str) -> list[str]:
        return [
            str(ROOT / "scripts" / "train.py"), str(ROOT / "scripts" / "configs" / "tiny-cpu.yaml"),
            "--dataset", str(dataset), "--output_dir", str(output), "--grid", grid, "--crop_size", "128",
            "--batch_size", "2", "--max_steps", "2", "--save_every", "0", "--eval_every", "0",
            "--log_every", "1", "--num_workers", "0", "--warmup_steps", "1", "--augment", "none",
        ]  # fmt: skip

    one = subprocess.run(
        [sys.executable, *program(tmp_path / "one", "1x1")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
    # tiny-swin's 64 px alignment splits the 128 px crops into 2x2 tiles: rows 0 on node 0, rows 1 on node 1.
    _two_nodes(program(tmp_path / "four", "2x2"), tmp_path)
    single = load_file(tmp_path / "one" / "final" / "model.safetensors")
    multi = load_file(tmp_path / "four" / "final" / "model.safetensors")
    assert single.keys() == multi.keys()
    # Parameters and BatchNorm statistics alike; AdamW divides by the gradient's own size, so float rounding in
    # near-zero gradients moves a few biases by up to ~5e-5 (the same on one node with 2 processes).
    for name, value in single.items():
        torch.testing.assert_close(multi[name], value, rtol=0, atol=1e-4, msg=name)
    losses = [
        [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["kind"] == "train"]
        for run in ("one", "four")
    ]
    assert len(losses[0]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_killing_the_launcher_stops_the_predict_workers(tmp_path, make_geotiff):
    """SIGKILL of torchrun must not leave workers predicting on as orphans (they would race a restarted job)."""
    model = save_model(tmp_path / "model", 3, synthetic_scene(96, 96, seed=3))
    scenes = [
        make_geotiff(tmp_path / "in" / f"s{i}.tif", synthetic_scene(512, 512, seed=i)) for i in range(6)
    ]
    command = [
        str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "rest_hf", "predict", *map(str, scenes),
        "-o", str(tmp_path / "out"), "--model", str(model), "--grid", "1x2",
    ]  # fmt: skip
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen(
        command, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        workers: list[psutil.Process] = []
        while len(workers) < 2:
            assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the workers did not start"
            workers = [
                p
                for p in psutil.Process(launcher.pid).children(recursive=True)
                if "rest_hf" in " ".join(p.cmdline())
            ]
            time.sleep(0.1)
        time.sleep(3)  # the workers are importing or predicting
    finally:
        os.killpg(
            launcher.pid, signal.SIGKILL
        )  # the launcher only: torchrun puts its workers in new sessions
        launcher.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers {[p.pid for p in alive]} outlived the killed launcher"
