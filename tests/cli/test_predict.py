"""`rest-hf predict` end to end: georeferenced outputs, 1 vs 2 processes, windowed = holistic, bad inputs.

The main runs start the command as users do (`python -m rest_hf predict`, `torchrun ... -m rest_hf predict`);
each launch costs a few seconds, so the error cases that need no new process call `rest_hf.cli.main`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rest_hf.cli import main
from tests.conftest import SAMPLE_DIR
from tests.inference.helpers import CLASS_NAMES, corrupt_blocks_from_row, save_model, synthetic_scene

from .helpers import run_cli

rasterio = pytest.importorskip("rasterio")

RGB = SAMPLE_DIR / "RGB.byte.tif"


def need_samples(*names: str) -> None:
    for name in names:
        if not (SAMPLE_DIR / name).exists():
            pytest.skip(f"sample raster {SAMPLE_DIR / name} is not available")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """A 3-band model calibrated on RGB.byte.tif and a 4-band one on RGBA.uint16.tif (save_pretrained folders)."""
    need_samples("RGB.byte.tif", "RGBA.uint16.tif")
    root = tmp_path_factory.mktemp("models")
    with rasterio.open(RGB) as ds:
        rgb = ds.read()[:, ::4, ::4]
    with rasterio.open(SAMPLE_DIR / "RGBA.uint16.tif") as ds:
        rgba = ds.read()[:, ::4, ::4]
    return {3: save_model(root / "rgb", 3, rgb), 4: save_model(root / "rgba", 4, rgba)}


@pytest.fixture(scope="module")
def single(model_dirs, tmp_path_factory):
    """One process, holistic, on RGB.byte.tif with probabilities and a preview."""
    out = tmp_path_factory.mktemp("single")
    done = run_cli(
        "predict", str(RGB), "-o", str(out / "labels.tif"), "--model", str(model_dirs[3]),
        "--probabilities", "--preview",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, done


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), {"crs": ds.crs, "transform": ds.transform, "size": (ds.height, ds.width),
                           "nodata": ds.nodata, "dtype": ds.dtypes[0], "tags": ds.tags(),
                           "colormap": ds.colormap(1) if ds.dtypes[0] == "uint8" else None}  # fmt: skip


def left_behind(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_labels_keep_the_scene_georeferencing_and_mark_nodata(single):
    out, done = single
    labels, meta = read(out / "labels.tif")
    with rasterio.open(RGB) as ds:
        assert meta["crs"] == ds.crs and meta["transform"] == ds.transform
        assert meta["size"] == (ds.height, ds.width) == (718, 791)
        from rest_hf.io import RasterSource

        with RasterSource(RGB) as source:
            valid = source.valid_mask(0, 0, ds.height, ds.width)
    assert meta["dtype"] == "uint8" and meta["nodata"] == 255
    assert (labels[0][~valid] == 255).all() and (labels[0][valid] < 4).all()
    assert len(np.unique(labels[0][valid])) >= 3  # the calibrated test model predicts several classes
    assert [meta["tags"][f"CLASS_{i}"] for i in range(4)] == CLASS_NAMES
    assert meta["colormap"][255][3] == 0  # nodata transparent

    probs, pmeta = read(out / "labels_probs.tif")
    assert probs.shape == (4, 718, 791) and pmeta["dtype"] == "float32" and pmeta["crs"] == meta["crs"]
    assert np.isnan(probs[:, ~valid]).all()
    np.testing.assert_allclose(probs[:, valid].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs[:, valid].argmax(axis=0), labels[0][valid])
    assert (out / "labels_preview.png").stat().st_size > 0

    summary = done.stdout
    assert "RGB.byte.tif: 718 x 791 px" in summary and "mode holistic, 1 process" in summary
    assert "classes (" in summary and "peak memory" in summary


def test_two_processes_write_the_labels_of_one_and_report_a_scene_that_breaks_half_way(
    single, model_dirs, tmp_path, make_geotiff
):
    # The lower half of `broken` cannot be decoded: with a 2x1 grid only process 1 fails to read its tile;
    # both agree, report it, write nothing for it, and carry on with the next scene.
    broken = make_geotiff(
        tmp_path / "in" / "broken.tif", synthetic_scene(256, 160), tiled=True, compress="deflate"
    )
    corrupt_blocks_from_row(broken, 128)
    out = tmp_path / "out"
    done = run_cli(
        "predict", str(broken), str(RGB), "-o", str(out), "--model", str(model_dirs[3]),
        "--grid", "2x1", "--probabilities", "--summary-json", str(tmp_path / "summary.json"),
        processes=2,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 processes (grid 2x1)" in done.stdout
    assert "broken.tif: FAILED: failed to read window (top=128" in done.stdout
    assert "1 of 2 scenes failed" in done.stdout
    assert left_behind(out) == ["RGB.byte.tif", "RGB.byte_probs.tif"]

    one, _ = read(single[0] / "labels.tif")
    two, meta = read(out / "RGB.byte.tif")
    np.testing.assert_array_equal(two, one)  # exact spatial parallelism: the very same labels
    with rasterio.open(RGB) as ds:
        assert (meta["crs"], meta["transform"]) == (ds.crs, ds.transform)
    p1, _ = read(single[0] / "labels_probs.tif")
    p2, _ = read(out / "RGB.byte_probs.tif")
    assert np.array_equal(np.isnan(p1), np.isnan(p2))
    assert np.nanmax(np.abs(p1 - p2)) <= 1e-4


def test_a_forward_pass_failing_on_one_process_stops_every_process_at_once(model_dirs, tmp_path):
    # The collective timeout is an hour and the launch is given far less: had the healthy process waited
    # for its peer in a collective, `run_cli` would time out (TimeoutExpired) instead of returning.
    out = tmp_path / "labels.tif"
    args = ["predict", str(RGB), "-o", str(out), "--model", str(model_dirs[3]), "--timeout", "3600"]
    done = run_cli(*args, processes=2, module="tests.cli.failing_forward", timeout=600)
    assert done.returncode != 0, done.stdout
    stderr = done.stderr
    assert "process 1: " in stderr and "RGB.byte.tif: the forward pass failed: out of memory" in stderr, (
        stderr
    )
    assert "stopping every process" in stderr, stderr
    assert left_behind(tmp_path) == []


def test_windowed_with_one_window_covering_the_scene_equals_holistic(single, model_dirs, tmp_path):
    out = tmp_path / "windowed.tif"
    code = main(
        ["predict", str(RGB), "-o", str(out), "--model", str(model_dirs[3]), "--mode", "windowed",
         "--window", "1024", "--probabilities"]
    )  # fmt: skip
    assert code == 0
    np.testing.assert_array_equal(read(out)[0], read(single[0] / "labels.tif")[0])
    np.testing.assert_array_equal(
        read(tmp_path / "windowed_probs.tif")[0], read(single[0] / "labels_probs.tif")[0]
    )


def test_each_bad_input_is_reported_and_the_others_go_on(model_dirs, tmp_path):
    need_samples("corrupt.tif", "rgb1_fake_nir_epsg3857.tif")
    out = tmp_path / "out"
    out.mkdir()
    (out / "RGB.byte.tif").write_bytes(b"already here")
    inputs = [
        tmp_path / "missing.tif",
        SAMPLE_DIR / "corrupt.tif",
        SAMPLE_DIR / "rgb1_fake_nir_epsg3857.tif",
        RGB,
    ]
    done = run_cli("predict", *map(str, inputs), "-o", str(out), "--model", str(model_dirs[3]))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    expected = {
        "missing.tif": "input raster " + str(tmp_path / "missing.tif") + " does not exist",
        "corrupt.tif": "failed to read window",
        "rgb1_fake_nir_epsg3857.tif": "has 1 band but the model expects 3; choose 3 with --bands",
        "RGB.byte.tif": "RGB.byte.tif exists; pass --overwrite to replace it",
    }
    for name, message in expected.items():
        line = next(line for line in lines if line.strip().startswith(f"{name}: FAILED: "))
        assert message in line, line
    assert "4 of 4 scenes failed" in done.stdout
    assert left_behind(out) == ["RGB.byte.tif"] and (out / "RGB.byte.tif").read_bytes() == b"already here"


def test_four_band_scenes_and_a_scene_without_valid_pixels(model_dirs, tmp_path, capsys):
    need_samples("RGBA.uint16.tif", "all-nodata.tif")
    out = tmp_path / "out"
    code = main(
        ["predict", str(SAMPLE_DIR / "RGBA.uint16.tif"), str(SAMPLE_DIR / "all-nodata.tif"),
         "-o", str(out), "--model", str(model_dirs[4])]
    )  # fmt: skip
    assert code == 1
    stdout = capsys.readouterr().out
    assert "RGBA.uint16.tif: 411 x 634 px" in stdout
    assert "all-nodata.tif: FAILED: " in stdout and "has no valid pixels" in stdout
    assert left_behind(out) == ["RGBA.uint16.tif"]
    labels, meta = read(out / "RGBA.uint16.tif")
    with rasterio.open(SAMPLE_DIR / "RGBA.uint16.tif") as ds:
        assert (meta["crs"], meta["transform"], meta["size"]) == (ds.crs, ds.transform, (ds.height, ds.width))
        alpha = ds.read(4)
    assert (labels[0][alpha == 0] == 255).all()  # the alpha band masks pixels


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, o: [str(SAMPLE_DIR / "corrupt.tif"), "-o", str(o), "--model", d], "corrupt.tif"),
        (
            lambda d, o: [str(RGB), "-o", str(o), "--model", d, "--bands", "1,2,3,4"],
            "band 4 does not exist in",
        ),
        (lambda d, o: [str(RGB), "-o", str(o), "--model", "nobody/no-such-model"], "cannot load model"),
        (lambda d, o: [str(RGB), "-o", str(o), "--model", d, "--grid", "1x2"], "grid 1x2 needs 2 processes"),
        (
            lambda d, o: [str(RGB), "-o", str(o), "--model", d, "--window", "64"],
            "--window and --overlap apply",
        ),
    ],
    ids=["corrupt", "bands", "unknown-model-offline", "grid", "window-in-holistic"],
)
def test_one_bad_input_gives_one_line_a_non_zero_exit_and_no_output(
    make_args, message, model_dirs, tmp_path, capsys, monkeypatch
):
    need_samples("corrupt.tif")
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out" / "labels.tif"
    code = main(["predict", *make_args(str(model_dirs[3]), out)])
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rest-hf predict: error: ") and message in lines[0], (
        captured.err
    )
    assert not out.parent.exists() or left_behind(out.parent) == []


def test_several_inputs_need_distinct_names_and_never_overwrite_an_input(model_dirs, tmp_path, capsys):
    shutil.copy(RGB, tmp_path / "RGB.byte.tif")
    code = main(
        [
            "predict",
            str(RGB),
            str(tmp_path / "RGB.byte.tif"),
            "-o",
            str(tmp_path),
            "--model",
            str(model_dirs[3]),
        ]
    )
    assert code == 2 and "several inputs are named 'RGB.byte'" in capsys.readouterr().err
    code = main(
        ["predict", str(tmp_path / "RGB.byte.tif"), "-o", str(tmp_path), "--model", str(model_dirs[3])]
    )
    assert code == 2 and "is one of the inputs" in capsys.readouterr().err
