"""`--summary-json` and `rest-hf evaluate --json` (issue 12, item 10): an unusable path is refused before any
work, in one line; a write that fails after the work (a full disk) is one line too and leaves nothing behind."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rest_hf.cli import main
from rest_hf.io import LabelWriter, RasterSource
from tests.conftest import write_geotiff
from tests.inference.helpers import save_model, synthetic_scene

pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    scene = synthetic_scene(64, 64, seed=4)
    path = write_geotiff(root / "scene.tif", scene)
    labels = root / "labels.tif"
    with RasterSource(path) as source, LabelWriter(labels, source.georef, 4) as writer:
        writer.write(np.arange(64 * 64).reshape(64, 64) % 4)
    return save_model(root / "model", 3, scene), path, labels


def run(args, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err.strip().splitlines()


def bad_paths(tmp_path):
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("")
    return {
        "folder": (tmp_path / "folder", "is a folder"),
        "fifo": (tmp_path / "fifo", "is not a regular file"),
        "under-a-file": (tmp_path / "file" / "s.json", "is a file, not a folder"),
    }


@pytest.mark.parametrize("case", ["folder", "fifo", "under-a-file"])
def test_an_unusable_summary_path_is_refused_before_any_work(case, setup, tmp_path, capsys):
    model, scene, _ = setup
    target, message = bad_paths(tmp_path)[case]
    out = tmp_path / "out" / "labels.tif"
    code, err = run(["predict", str(scene), "-o", str(out), "--model", str(model), "--summary-json", str(target)],
                    capsys)  # fmt: skip
    assert code == 2 and len(err) == 1 and err[0].startswith("rest-hf predict: error: --summary-json: "), err
    assert message in err[0], err
    assert not out.parent.exists()  # refused before the scene was predicted


@pytest.mark.parametrize("case", ["folder", "fifo", "under-a-file"])
def test_an_unusable_evaluate_json_path_is_refused_before_any_work(case, setup, tmp_path, capsys):
    _, _, labels = setup
    target, message = bad_paths(tmp_path)[case]
    code, err = run(["evaluate", str(labels), "--reference", str(labels), "--json", str(target)], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("rest-hf evaluate: error: --json: "), err
    assert message in err[0], err


def no_space(fd):
    raise OSError(28, "No space left on device")


def test_a_full_disk_when_writing_the_summary_is_one_line(setup, tmp_path, capsys, monkeypatch):
    import rest_hf.io.writer.temporary as temporary

    model, scene, labels = setup
    monkeypatch.setattr(temporary.os, "fsync", no_space)
    summary = tmp_path / "summary.json"
    out = tmp_path / "labels.tif"
    code, err = run(["predict", str(scene), "-o", str(out), "--model", str(model), "--summary-json", str(summary)],
                    capsys)  # fmt: skip
    assert code == 1 and err == [f"rest-hf predict: error: --summary-json: cannot write {summary}: No space left on "
                                 "device"], err  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]  # the labels are done; no temporary
    code, err = run(["evaluate", str(labels), "--reference", str(labels), "--json", str(summary)], capsys)
    assert code == 1 and err == [f"rest-hf evaluate: error: --json: cannot write {summary}: No space left on "
                                 "device"], err  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]
