"""Every way a model can fail to load gives one line naming what is wrong (issue 12, items 3 and 9)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rest_hf.cli import main
from tests.conftest import write_geotiff
from tests.inference.helpers import save_model, synthetic_scene

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    scene = write_geotiff(root / "scene.tif", synthetic_scene(64, 64))
    return save_model(root / "good", 3), scene


def variant(good_folder: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(good_folder, folder)
    change(folder)
    return folder


def without_decode_head(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("decode_head.")},
              folder / "model.safetensors", metadata={"format": "pt"})  # fmt: skip


def truncated(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def wrong_type(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = "sixteen"
    (folder / "config.json").write_text(json.dumps(config))


CASES = {
    "missing-weights-of-the-decode-head": (
        without_decode_head, "weights do not cover the model: ", "missing (decode_head."),
    "no-weights": (lambda f: (f / "model.safetensors").unlink(), "has a config.json but no weights", ""),
    "broken-config": (lambda f: (f / "config.json").write_text("{\"model_type\": "), "config.json is not valid JSON", ""),
    "truncated-weights": (truncated, "damaged weights", ""),
    "empty-weights": (lambda f: (f / "model.safetensors").write_bytes(b""), "damaged weights", ""),
    "wrong-type": (wrong_type, "invalid config.json", ""),
}  # fmt: skip


def predict(model: str, scene: Path, out: Path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["predict", str(scene), "-o", str(out), "--model", model])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_model_folder_is_refused_in_one_line(case, good, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    change, message, detail = CASES[case]
    folder = variant(good[0], tmp_path, change)
    code, err = predict(str(folder), good[1], tmp_path / "out" / "labels.tif", capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("rest-hf predict: error: "), err
    assert message in err[0] and detail in err[0] and "HF_HUB_OFFLINE" not in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tiny-swim", "did you mean 'tiny-swin'? presets: "),
        ("./no/such/folder", "no such folder"),
        ("/no/such/folder", "no such folder"),
        ("org/na me!", "not a folder here, a preset, or a valid Hub id"),
    ],
    ids=["preset-typo", "relative-folder", "absolute-folder", "invalid-id"],
)
def test_a_model_name_that_names_nothing_says_what_it_is_not(
    name, message, good, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = predict(name, good[1], tmp_path / "labels.tif", capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_a_complete_folder_still_loads(good):
    from rest_hf.loading import load_model

    assert load_model(str(good[0])).config.num_labels == 4
