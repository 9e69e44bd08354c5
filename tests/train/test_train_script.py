"""End to end: `scripts/train.py` under 2 CPU processes (torchrun, grid 1x2) with validation and checkpoints,
killed after its first checkpoint and started again with the same command; it continues from the saved step,
and its final folder loads with `from_pretrained` and predicts with `python -m rest_hf predict`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from rest_hf import RestForSemanticSegmentation
from rest_hf.training import complete_checkpoints, read_metrics, write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
MAX_STEPS, SAVE_EVERY = 9, 3


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _command(dataset: Path, output: Path) -> list[str]:
    return [
        str(TORCHRUN), "--standalone", "--nproc_per_node", "2",
        str(ROOT / "scripts" / "train.py"), str(ROOT / "scripts" / "configs" / "tiny-cpu.yaml"),
        "--dataset", str(dataset), "--output_dir", str(output), "--grid", "1x2", "--crop_size", "128",
        "--batch_size", "2", "--max_steps", str(MAX_STEPS), "--save_every", str(SAVE_EVERY),
        "--eval_every", str(SAVE_EVERY), "--log_every", "1", "--num_workers", "0", "--warmup_steps", "2",
    ]  # fmt: skip


def _logged_after_checkpoint(output: Path) -> bool:
    found = complete_checkpoints(output)
    if not found or not (output / "metrics.jsonl").is_file():
        return False
    steps = {r["step"] for r in read_metrics(output / "metrics.jsonl") if r["kind"] == "train"}
    return found[0][0] + 1 in steps


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this Python")
def test_killed_run_resumes_from_its_last_checkpoint_and_its_model_predicts(tmp_path):
    dataset = write_synthetic_dataset(tmp_path / "data", "shapes", num_train=6, num_val=2, size=128)
    output = tmp_path / "run"
    command = _command(dataset, output)
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        command, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        # Kill once the step after the first checkpoint is logged: that step then runs twice, before the kill
        # and after the resume, and must give the same loss (weights, optimizer, sampler and RNG restored).
        while not _logged_after_checkpoint(output):
            assert first.poll() is None, (
                f"training exited early:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        workers = psutil.Process(first.pid).children(recursive=True)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the launcher, mid-run
        first.wait()
    # torchrun starts its workers in their own sessions: they must go down with it, not train on as orphans.
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers {[p.pid for p in alive]} outlived the killed launcher"
    saved = complete_checkpoints(output)[-1][0]
    assert saved < MAX_STEPS and not (output / "final").exists(), "the run should have been killed mid-way"
    before_kill = {
        r["step"]: r["loss"] for r in read_metrics(output / "metrics.jsonl") if r["kind"] == "train"
    }

    second = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    records = read_metrics(output / "metrics.jsonl")
    resumes = [r for r in records if r["kind"] == "resume"]
    assert [r["step"] for r in resumes] == [saved]
    after = records[records.index(resumes[0]) + 1 :]
    steps = [r["step"] for r in after if r["kind"] == "train"]
    assert steps == list(range(saved + 1, MAX_STEPS + 1)), f"resumed run logged steps {steps}"
    resumed = {r["step"]: r["loss"] for r in after if r["kind"] == "train"}
    repeated = [step for step in before_kill if step > saved]
    assert repeated, f"the first run logged no step after its checkpoint {saved}"
    for step in repeated:
        assert resumed[step] == pytest.approx(before_kill[step], rel=1e-6), (
            f"step {step} differs after resuming"
        )
    assert any(r["kind"] == "eval" and r["step"] == MAX_STEPS for r in after)
    assert after[-1]["kind"] == "end" and after[-1]["step"] == MAX_STEPS
    assert [step for step, _ in complete_checkpoints(output)][-1] == MAX_STEPS

    model = RestForSemanticSegmentation.from_pretrained(output / "final")
    assert model.config.id2label == {0: "background", 1: "red shape", 2: "blue shape"}
    assert (output / "final" / "README.md").is_file() and (
        output / "final" / "preprocessor_config.json"
    ).is_file()
    scene = dataset / "val" / "images" / "val_0000.tif"
    prediction = tmp_path / "labels.tif"
    predicted = subprocess.run(
        [sys.executable, "-m", "rest_hf", "predict", str(scene), "-o", str(prediction), "--model", str(output / "final")],
        env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    import rasterio

    with rasterio.open(prediction) as labels:
        assert (labels.height, labels.width) == (128, 128)
        values = np.unique(labels.read(1))
    assert set(values.tolist()) <= {0, 1, 2}
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 128, 128)).logits
    assert logits.shape == (1, 3, 128, 128)
