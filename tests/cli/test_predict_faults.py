"""`rest-hf predict` under faults: a full disk, a failing preview, SIGKILL, SIGHUP, odd output paths.

Every fault is injected deterministically: the file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so that a
write fails with EFBIG as on a full disk) in a subprocess, a monkeypatched preview renderer, and a forward pass
that stalls (`tests.cli.stalling_forward`) so that a signal arrives while the temporaries exist.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rest_hf.cli import main
from tests.conftest import write_geotiff
from tests.inference.helpers import save_model, synthetic_scene

rasterio = pytest.importorskip("rasterio")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny 3-band model folder and a 96 x 128 px scene."""
    root = tmp_path_factory.mktemp("faults")
    scene = synthetic_scene(96, 128, seed=3)
    model = save_model(root / "model", 3, scene)
    return model, write_geotiff(root / "scene.tif", scene)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def snapshot(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def start(args: list[str], module: str = "rest_hf", **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_full_disk_while_finishing_the_probabilities_keeps_every_previous_output(setup, tmp_path):
    model, scene = setup
    out = tmp_path / "labels.tif"
    args = ["predict", str(scene), "-o", str(out), "--model", str(model), "--probabilities", "--preview"]
    assert main(args) == 0
    outputs = [out, tmp_path / "labels_probs.tif", tmp_path / "labels_preview.png"]
    before = snapshot(outputs)
    assert (
        max(len(b) for b in before[::2]) < 32_000 < len(before[1])
    )  # labels, preview fit; probabilities not

    def full_disk() -> None:  # writes past 32 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32_000, 32_000))

    process = start([*args, "--overwrite"], preexec_fn=full_disk)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    # libtiff prints its own "_tiffWriteProc: File too large." lines (its default handler, below GDAL's);
    # ours is the one line of the command
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("_tiffWriteProc: ")]
    assert (
        len(lines) == 1 and lines[0].startswith("rest-hf predict: error: ") and "labels_probs.tif" in lines[0]
    )
    assert snapshot(outputs) == before  # nothing of the old scene was deleted or replaced
    assert files(tmp_path) == sorted(p.name for p in outputs)


def test_a_preview_that_cannot_be_written_keeps_every_previous_output(setup, tmp_path, monkeypatch, capsys):
    import rest_hf.io.preview

    model, scene = setup
    out = tmp_path / "labels.tif"
    args = ["predict", str(scene), "-o", str(out), "--model", str(model), "--probabilities", "--preview"]
    assert main(args) == 0
    outputs = [out, tmp_path / "labels_probs.tif", tmp_path / "labels_preview.png"]
    before = snapshot(outputs)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rest_hf.io.preview, "render_preview_png", no_space)
    capsys.readouterr()
    assert main([*args, "--overwrite", "--mode", "sliding", "--window", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed to write preview" in err[0] and "No space left" in err[0], err
    assert snapshot(outputs) == before
    assert files(tmp_path) == sorted(p.name for p in outputs)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP], ids=["sigkill", "sighup"])
def test_a_killed_run_leaves_no_temporary_for_long(setup, tmp_path, how):
    # SIGHUP (a closed terminal) is handled like SIGTERM: the scene is aborted and its temporaries removed.
    # SIGKILL cannot be handled: the temporaries stay until the next run in that folder removes them.
    model, scene = setup
    out = tmp_path / "out" / "labels.tif"
    marker = tmp_path / "forward-started"
    args = ["predict", str(scene), "-o", str(out), "--model", str(model), "--probabilities"]
    process = start(args, module="tests.cli.stalling_forward", env={"REST_HF_TEST_STALL_MARKER": str(marker)})
    wait_for(marker, process)
    temporaries = files(out.parent)
    assert len(temporaries) == 2 and all(name.startswith(".rest-hf-") for name in temporaries), temporaries
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    if how == signal.SIGHUP:
        assert process.returncode == 128 + signal.SIGHUP, stderr
        assert files(out.parent) == []
        return
    assert files(out.parent) == temporaries  # what SIGKILL leaves
    done = start(args)
    _, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr
    assert "removed 2 temporary files left by a killed run" in stderr
    assert files(out.parent) == ["labels.tif", "labels_probs.tif"]


def test_a_temporary_of_a_live_process_is_kept(tmp_path):
    from rest_hf.io.writer.temporary import remove_stale_temporaries, temporary_path

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = temporary_path(tmp_path / "x.tif")
        live = Path(str(mine).replace(f"-{os.getpid()}-", f"-{sleeper.pid}-"))
        other = tmp_path / ".rest-hf-zzzzzz-1-0123abcd.tmp"  # not this command's pattern: never touched
        for path in (live, other):
            path.write_bytes(b"")
        assert remove_stale_temporaries([tmp_path]) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temporaries([tmp_path]) == [live]
    assert files(tmp_path) == [other.name]


def test_an_output_name_of_250_bytes_is_written(setup, tmp_path):
    model, scene = setup
    out = tmp_path / ("n" * 246 + ".tif")
    assert len(os.fsencode(out.name)) == 250
    assert main(["predict", str(scene), "-o", str(out), "--model", str(model)]) == 0
    assert files(tmp_path) == [out.name]


def test_a_fifo_is_refused_even_with_overwrite(setup, tmp_path, capsys):
    model, scene = setup
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    code = main(["predict", str(scene), "-o", str(fifo), "--model", str(model), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "is not a regular file" in err[0], err
    assert fifo.is_fifo()


@pytest.mark.parametrize(
    ("output", "message"),
    [("", "-o is empty"), ("parent-is-a-file/labels.tif", "is a file, not a folder")],
    ids=["empty", "file-as-parent"],
)
def test_unusable_output_paths_are_named_in_one_line(setup, tmp_path, capsys, monkeypatch, output, message):
    model, scene = setup
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parent-is-a-file").write_bytes(b"")
    code = main(["predict", str(scene), "-o", output, "--model", str(model)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err
    assert files(tmp_path) == ["parent-is-a-file"]


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--grid", "2x2"], "grid 2x2 needs 4 processes"), (["--timeout", "0"], "--timeout must be a positive")],
    ids=["grid", "timeout"],
)
def test_a_configuration_error_on_two_processes_is_one_line_without_tracebacks(
    setup, tmp_path, option, message
):
    from .helpers import run_cli

    model, scene = setup
    done = run_cli("predict", str(scene), "-o", str(tmp_path / "labels.tif"), "--model", str(model), *option,
                   processes=2, timeout=300)  # fmt: skip
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("rest-hf predict: error: ")]
    assert len(ours) == 1 and message in ours[0], done.stderr
    # torchrun prints its own ChildFailedError report; no frame of rest_hf's code appears in it or elsewhere
    assert re.search(r'File ".*/rest_hf/', done.stderr) is None, done.stderr
    assert files(tmp_path) == []


def test_a_stopped_process_makes_predict_end_within_its_timeout(setup, tmp_path):
    # Issue 12 item 6 through the command: process 1 is stopped (SIGSTOP) in its forward pass while process 0
    # waits for it in the forward's collectives; with --timeout 10, process 0 must give up with one line.
    import psutil

    from .helpers import TORCHRUN

    if not TORCHRUN.exists():
        pytest.skip(f"torchrun is not installed next to {sys.executable}")
    model, _ = setup
    scene = write_geotiff(tmp_path / "wide.tif", synthetic_scene(64, 256, seed=4))
    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.update(REST_HF_TEST_PID_DIR=str(pids), REST_HF_TEST_PAUSE_RANK="1", TQDM_DISABLE="1")
    launcher = subprocess.Popen(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "tests.cli.announcing_forward",
         "predict", str(scene), "-o", str(out / "labels.tif"), "--model", str(model), "--grid", "1x2",
         "--timeout", "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    stopped, stderr = None, ""
    try:
        for rank in (0, 1):
            wait_for(pids / f"rank-{rank}.pid", launcher, seconds=240)
        first = psutil.Process(int((pids / "rank-0.pid").read_text()))
        stopped = psutil.Process(int((pids / "rank-1.pid").read_text()))
        stopped.send_signal(signal.SIGSTOP)
        # 10 s of timeout, plus a generous margin for a loaded machine (no timing claim beyond "it ended").
        psutil.wait_procs([first], timeout=120)
        assert not first.is_running() or first.status() == psutil.STATUS_ZOMBIE, (
            "process 0 still waits for the stopped process"
        )
    finally:
        if stopped is not None and stopped.is_running():
            stopped.send_signal(signal.SIGCONT)
            stopped.kill()
        _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    ours = [line for line in stderr.splitlines() if line.startswith("rest-hf predict: error: ")]
    assert len(ours) == 1, stderr
    assert re.search(r'File ".*/rest_hf/', stderr) is None, stderr
    assert not out.exists() or files(out) == []
