"""Bad input refused before training (layout, labels, grid vs crop, batch size, disk space), validation windows,
and the atomic checkpoint folders that resuming picks from."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from rest_hf import RestConfig
from rest_hf.data import dataset_info, scan_layout
from rest_hf.spatial import TileRule
from rest_hf.training import (
    TrainConfig,
    check_batch_size,
    check_free_space,
    check_output_dir,
    complete_checkpoints,
    find_resume_checkpoint,
    load_run_data,
    remove_partial_writes,
    save_training_state,
)
from rest_hf.training import checkpoint as checkpoint_module
from rest_hf.training.data import (
    RunData,
    TrainingSceneDataset,
    UnreadableSceneError,
    WindowedSceneDataset,
    augment_config,
    check_crop_fits_scenes,
    check_grid_fits,
    check_training_samples,
)
from rest_hf.training.synthetic import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture
def dataset(tmp_path):
    return write_synthetic_dataset(tmp_path / "data", "shapes", num_train=3, num_val=1, size=64)


def config(dataset, **values) -> TrainConfig:
    return TrainConfig(**{"model": "tiny-swin", "dataset": str(dataset), **values})


def test_dataset_that_does_not_match_its_layout_is_refused(dataset):
    with pytest.raises(ValueError, match="glh-water"):
        load_run_data(config(dataset, layout="glh-water"))


def test_missing_and_mis_sized_labels_are_all_listed(dataset, make_geotiff):
    (dataset / "train" / "labels" / "train_0001.tif").unlink()
    make_geotiff(dataset / "train" / "labels" / "train_0002.tif", np.zeros((32, 64), np.uint8))
    with pytest.raises(ValueError) as error:
        load_run_data(config(dataset))
    message = str(error.value)
    assert "2 problem(s)" in message
    assert "train_0001.tif has no label" in message
    assert "train_0002.tif is 32x64 px but image" in message


def test_valid_dataset_gives_records_sizes_and_statistics(dataset):
    data = load_run_data(config(dataset))
    assert len(data.train) == 3 and len(data.val) == 1
    assert data.train_sizes == [(64, 64)] * 3 and data.val_sizes == [(64, 64)]
    assert data.info.num_labels == 3 and data.info.image_mean is not None


def test_crop_that_the_grid_cannot_split_is_refused_with_a_fix(dataset):
    data = RunData(str(dataset), None, [], [], [], [])
    with pytest.raises(
        ValueError, match=r"crop_size of 64x64 px cannot be split over grid 1x2.*at least 128 px wide"
    ):
        check_training_samples(
            config(dataset, crop_size="64", grid="1x2"), data, TileRule(64, 64), augment_config("rest", 3)
        )
    check_training_samples(
        config(dataset, crop_size="64x128", grid="1x2"), data, TileRule(64, 64), augment_config("rest", 3)
    )


def test_crop_larger_than_every_training_scene_is_refused_with_the_largest_that_works(dataset):
    data = load_run_data(config(dataset))
    with pytest.raises(
        ValueError,
        match=r"^--crop_size 4096 is larger than every training scene \(the largest is 64 x 64 px\); "
        r"use --crop_size 64 or less$",
    ):
        check_training_samples(
            config(dataset, crop_size="4096"), data, TileRule(32, 32), augment_config("rest", 3)
        )
    check_training_samples(config(dataset, crop_size="64"), data, TileRule(32, 32), augment_config("rest", 3))
    # A rectangular crop fits when one scene holds it; otherwise the largest piece of it that a scene holds.
    check_crop_fits_scenes((100, 200), [(64, 64), (128, 256)])
    with pytest.raises(ValueError, match=r"the largest is 96 x 300 px\); use --crop_size 96x200 or less"):
        check_crop_fits_scenes((100, 200), [(64, 64), (96, 300), (120, 90)])


def test_whole_scenes_too_small_at_the_lowest_scale_are_named(dataset):
    records = scan_layout(dataset, "folder", "train")
    data = RunData(str(dataset), None, records, [(256, 256)] * 3, [], [])
    with pytest.raises(ValueError, match=r"whole training scene train_0000 \(at scale 0.5\) of 128x128 px"):
        check_training_samples(
            config(dataset, crop_size="none", grid="1x3"), data, TileRule(64, 64), augment_config("rest", 3)
        )


def test_grid_fits_message_names_the_axis():
    with pytest.raises(ValueError, match=r"at least 192 px tall for 3 tiles"):
        check_grid_fits((128, 512), (3, 1), TileRule(64, 64), "eval_window", "use a larger eval_window")


def test_batch_of_one_is_refused_for_the_upernet_decoder():
    upernet = RestConfig.from_preset("tiny-swin", num_labels=3)
    with pytest.raises(ValueError, match="batch_size 1 cannot train the UperNet decoder"):
        check_batch_size(upernet, 1)
    check_batch_size(upernet, 2)
    check_batch_size(RestConfig.from_preset("tiny-swin", num_labels=3, decoder_variant="lwc"), 1)


def test_validation_windows_cover_large_scenes_and_pad_small_ones(dataset, make_geotiff):
    info = dataset_info("folder", dataset, "train")
    records = scan_layout(dataset, "folder", "val")
    windows = WindowedSceneDataset(records * 2, [(64, 64), (64, 64)], info, None, None, 32, TileRule())
    assert len(windows) == 8
    whole = WindowedSceneDataset(records, [(64, 64)], info, None, None, None, TileRule(64, 64), (128, 64))
    piece, scene = windows[5], whole[0]
    assert piece["sample_size"] == (32, 32) and scene["sample_size"] == (128, 64)
    np.testing.assert_array_equal(piece["labels"], scene["labels"][:32, 32:64])  # 2nd scene, top-right window
    assert (scene["labels"][64:] == info.ignore_index).all() and not scene["valid_mask"][64:].any()


def test_an_output_dir_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    taken = tmp_path / "run.txt"
    taken.write_text("keep me")
    with pytest.raises(
        ValueError, match=r"^--output_dir .*run.txt is an existing file, not a folder; choose"
    ):
        check_output_dir(taken)
    with pytest.raises(
        ValueError, match=r"^--output_dir .*run.txt/a/b cannot be created: .*run.txt is a file"
    ):
        check_output_dir(taken / "a" / "b")
    check_output_dir(tmp_path / "new" / "run")
    check_output_dir(tmp_path)
    assert taken.read_text() == "keep me" and not (tmp_path / "new").exists()


def _damage_pixels(path: Path) -> None:
    """Keep the header of a GeoTIFF (it still opens, with its size and bands) and cut off its pixel data."""
    data = path.read_bytes()
    path.write_bytes(data[:1024])


def test_a_scene_unreadable_in_a_loader_worker_is_one_line_naming_it(dataset):
    from torch.utils.data import DataLoader

    info = dataset_info("folder", dataset, "train")
    records = scan_layout(dataset, "folder", "train")
    _damage_pixels(Path(records[1].image))
    scenes = TrainingSceneDataset(records, info, None, None, crop_size=(32, 32), augment=None)
    scenes[0]  # the others still read
    loader = DataLoader(scenes, 1, sampler=[0, 1], collate_fn=lambda items: items, num_workers=1)
    with pytest.raises(UnreadableSceneError) as error:
        list(loader)
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert (
        message.startswith("cannot read scene train_0001 of split 'train': ") and records[1].image in message
    )


Usage = namedtuple("Usage", "total used free")


def test_not_enough_disk_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: Usage(10**9, 10**9, 10 * 2**20))
    with pytest.raises(
        ValueError, match=r"not enough disk space for a checkpoint in .*: about 1.06 GB needed, 10.0 MB free"
    ):
        check_free_space(tmp_path / "run", 2**30, "a checkpoint")
    with pytest.raises(ValueError, match="not enough disk space for the step-5 checkpoint"):
        save_training_state(None, tmp_path / "run", 5, {}, 2**30, keep=2)
    assert not (tmp_path / "run" / "checkpoints" / ".tmp-step-5").exists()


def _checkpoint(root: Path, name: str, complete: bool = True) -> Path:
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    (folder / "optimizer.bin").write_bytes(b"x")
    if complete:
        (folder / "train_state.json").write_text(json.dumps({"step": int(name.split("-")[-1])}))
    return folder


def test_resume_picks_the_last_complete_checkpoint_and_clears_interrupted_saves(tmp_path):
    _checkpoint(tmp_path, "step-3")
    latest = _checkpoint(tmp_path, "step-12")
    _checkpoint(
        tmp_path, "step-20", complete=False
    )  # killed before train_state.json: never renamed in reality
    partial = _checkpoint(tmp_path, ".tmp-step-24", complete=False)
    stale_model = tmp_path / ".best.tmp-abc"
    stale_model.mkdir()
    assert [step for step, _ in complete_checkpoints(tmp_path)] == [3, 12]
    assert find_resume_checkpoint(tmp_path, "auto") == latest
    assert set(remove_partial_writes(tmp_path)) == {partial, stale_model}
    assert not partial.exists() and latest.exists()
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run \\(up to step 12\\)"):
        find_resume_checkpoint(tmp_path, "never")
    with pytest.raises(ValueError, match="is not a complete checkpoint folder"):
        find_resume_checkpoint(tmp_path, str(tmp_path / "checkpoints" / "step-20"))
    assert find_resume_checkpoint(tmp_path / "elsewhere", "auto") is None


def _train(*args: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """`scripts/train.py --model tiny-swin ARGS` in a fresh process (or under `launcher`, e.g. torchrun)."""
    return subprocess.run(
        [*(launcher or [sys.executable]), str(ROOT / "scripts" / "train.py"), "--model", "tiny-swin", *args],
        capture_output=True, text=True, timeout=180,
        env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TQDM_DISABLE="1",
                 PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))),
    )  # fmt: skip


def test_train_script_prints_one_error_and_exits_2_on_a_bad_dataset(dataset):
    shutil.rmtree(dataset / "train" / "labels")
    result = _train("--dataset", str(dataset))
    assert result.returncode == 2
    assert result.stderr.startswith("train.py: error: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["crop", "output_dir_is_a_file"])
def test_train_script_refuses_an_impossible_run_in_one_line_and_writes_nothing(dataset, tmp_path, case):
    output = tmp_path / "run"
    if case == "crop":
        options, message = ["--crop_size", "4096"], "--crop_size 4096 is larger than every training scene"
    else:
        output.write_text("not a folder")
        options, message = [], "is an existing file, not a folder"
    result = _train("--dataset", str(dataset), "--output_dir", str(output), "--batch_size", "2", *options)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and message in lines[0], result.stderr
    assert output.read_text() == "not a folder" if case != "crop" else not output.exists()


@pytest.mark.parametrize("processes", [1, 2])
def test_train_script_names_a_scene_that_a_loader_worker_cannot_read(tmp_path, processes):
    # The normalisation statistics are given, so no pixel is read before training: the damaged scenes pass the
    # up-front checks (they read headers) and fail in the DataLoader workers, on every process of the group.
    if processes > 1 and not TORCHRUN.exists():
        pytest.skip(f"torchrun is not installed next to {sys.executable}")
    dataset = write_synthetic_dataset(tmp_path / "data", "shapes", num_train=3, num_val=1, size=128)
    info = json.loads((dataset / "dataset_info.json").read_text())
    info.update(image_mean=[128.0] * 3, image_std=[64.0] * 3)
    (dataset / "dataset_info.json").write_text(json.dumps(info))
    for record in scan_layout(dataset, "folder", "train"):
        _damage_pixels(Path(record.image))
    launcher = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2"] if processes > 1 else []
    result = _train("--dataset", str(dataset), "--output_dir", str(tmp_path / "run"), "--batch_size", "2",
                    "--crop_size", "128", "--grid", f"1x{processes}", "--num_workers", "1", "--max_steps", "2",
                    launcher=launcher)  # fmt: skip
    assert result.returncode == 1, result.stderr
    # One line per process that read the scene (the line may follow the progress bar, which tqdm leaves
    # without a newline); torchrun adds its own ChildFailedError report, but no frame of rest_hf's code shows.
    ours = [line for line in result.stderr.splitlines() if "train.py: error: " in line]
    assert len(ours) == processes, result.stderr
    for rank, line in enumerate(sorted(ours, key=lambda line: line.split("process ")[1])):
        assert f"error: process {rank}: cannot read scene train_000" in line, result.stderr
    assert re.search(r'File ".*/(rest_hf|scripts)/', result.stderr) is None, result.stderr
