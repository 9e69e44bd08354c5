"""Scene datasets on the Hub: push into a local folder that mirrors a Hub repository, resume, pull back, load the
index with `datasets`, and refuse folders that do not match their layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from rest_hf.cli import main
from rest_hf.commands.dataset import LAYOUT_NAMES
from rest_hf.data import LAYOUTS, resolve_dataset_root, scan_layout
from rest_hf.hub.datasets import INDEX_COLUMNS, pull_dataset, push_dataset
from rest_hf.hub.errors import HubError

from .helpers import MirrorApi, fill_hub_cache, write_raster

REPO = "rest-hf-test/water-scenes"


def test_push_uploads_scenes_as_they_are_then_the_index_and_card(water_root, tmp_path, hub_online):
    api = MirrorApi(tmp_path / "remote")
    commits = push_dataset(
        water_root, REPO, layout="glh-water", token="hf_test", api=api, chunk_size=4, progress=False
    )

    scene_files = sorted(p.relative_to(water_root).as_posix() for p in water_root.rglob("*") if p.is_file())
    assert sorted(path for chunk in api.commits[:-1] for path in chunk) == scene_files
    assert [len(chunk) for chunk in api.commits[:-1]] == [4, 3]  # 7 files in chunks of 4
    assert sorted(api.commits[-1]) == ["README.md", "metadata/train.parquet", "metadata/val.parquet"]
    assert [c.commit_message for c in commits] == [
        "Upload scene files (1/2)",
        "Upload scene files (2/2)",
        "Upload scene index and dataset card",
    ]
    for path in scene_files:  # byte for byte: never re-encoded
        assert (api.folder / path).read_bytes() == (water_root / path).read_bytes()

    train = pq.read_table(api.folder / "metadata/train.parquet").to_pylist()
    assert tuple(pq.read_schema(api.folder / "metadata/train.parquet").names) == INDEX_COLUMNS
    first = train[0]
    assert (first["split"], first["name"], first["image"], first["label"]) == (
        "train",
        "a",
        "train/image/a.tif",
        "train/label/a.png",
    )
    assert (first["height"], first["width"], first["bands"], first["dtype"]) == (40, 48, 3, "uint8")
    assert first["crs"] == "EPSG:32618" and first["transform"] == [0.3, 0.0, 500000.0, 0.0, -0.3, 4000000.0]
    assert first["files"] == ["train/image/a.tif", "train/image/a.tif.aux.xml", "train/label/a.png"]
    assert [row["name"] for row in pq.read_table(api.folder / "metadata/val.parquet").to_pylist()] == ["c"]


def test_dataset_card_points_load_dataset_at_the_index(water_root, tmp_path, hub_online):
    api = MirrorApi(tmp_path / "remote")
    push_dataset(water_root, REPO, layout="glh-water", token="hf_test", api=api, progress=False)
    card = DatasetCard((api.folder / "README.md").read_text())
    assert card.data.configs == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "metadata/train.parquet"},
                {"split": "val", "path": "metadata/val.parquet"},
            ],
        }
    ]
    assert card.data.task_categories == ["image-segmentation"] and card.data.pretty_name == "GLH-Water"
    assert {"remote-sensing", "whole-scene", "glh-water"} <= set(card.data.tags)
    assert "| train | 2 | 2 | 3 | uint8 | 40 x 48 px | 2 |" in card.text
    assert "| 1 | water | `#ffffff` (RGB 255, 255, 255) |" in card.text
    assert "The label files store values [0, 1, 255]; rest_hf maps them to the class ids below" in card.text
    assert (
        f"rest-hf dataset pull {REPO} --split train" in card.text
        and "@inproceedings{li2024glhwater" in card.text
    )

    from datasets import load_dataset

    index = load_dataset(str(api.folder))
    assert set(index) == {"train", "val"}
    assert index["train"]["image"] == ["train/image/a.tif", "train/image/b.tif"]
    assert index["val"][0]["height"] == 32 and index["val"][0]["crs"] == "EPSG:32618"


def test_interrupted_push_resumes_without_uploading_twice(water_root, tmp_path, hub_online):
    api = MirrorApi(tmp_path / "remote", fail_after=1)
    with pytest.raises(HubError, match="the Hub cannot be reached"):
        push_dataset(
            water_root, REPO, layout="glh-water", token="hf_test", api=api, chunk_size=3, progress=False
        )
    assert len(api.commits) == 1 and not (api.folder / "README.md").exists()  # no index for missing files

    api.fail_after = None
    push_dataset(water_root, REPO, layout="glh-water", token="hf_test", api=api, chunk_size=3, progress=False)
    uploaded = [path for chunk in api.commits[:-1] for path in chunk]
    assert len(uploaded) == len(set(uploaded)) == 7  # the first 3 files were not sent again

    # A changed file is sent again; unchanged ones are not.
    (water_root / "val" / "label" / "c.png").write_bytes(
        (water_root / "val" / "label" / "c.png").read_bytes()
    )
    shutil.copy(water_root / "train" / "image" / "b.tif", water_root / "train" / "image" / "a.tif")
    before = len(api.commits)
    push_dataset(water_root, REPO, layout="glh-water", token="hf_test", api=api, progress=False)
    assert api.commits[before] == ["train/image/a.tif"]


def test_round_trip_through_the_cache_scans_like_the_original(water_root, tmp_path, hub_online, monkeypatch):
    api = MirrorApi(tmp_path / "remote")
    push_dataset(water_root, REPO, layout="glh-water", token="hf_test", api=api, progress=False)
    cache = tmp_path / "cache"
    fill_hub_cache(cache, REPO, api.folder, repo_type="dataset")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)

    folder = pull_dataset(REPO, cache_dir=cache)
    for split in ("train", "val"):
        original = scan_layout(water_root, "glh-water", split)
        pulled = scan_layout(folder, "glh-water", split)
        assert [Path(r.image).relative_to(folder) for r in pulled] == [
            Path(r.image).relative_to(water_root) for r in original
        ]
        for a, b in zip(original, pulled, strict=True):
            assert Path(a.label).read_bytes() == Path(b.label).read_bytes()
    # The training datasets take the Hub id itself.
    assert resolve_dataset_root(REPO, cache_dir=cache) == folder


def test_pull_of_one_split_downloads_only_its_scenes(water_root, tmp_path, hub_online, monkeypatch):
    api = MirrorApi(tmp_path / "remote")
    push_dataset(water_root, REPO, layout="glh-water", token="hf_test", api=api, progress=False)
    downloads = []

    def fake_snapshot_download(repo_id, *, allow_patterns=None, local_dir=None, **kwargs):
        import fnmatch

        downloads.append(allow_patterns)
        for path in (p for p in api.folder.rglob("*") if p.is_file()):
            relative = path.relative_to(api.folder).as_posix()
            if allow_patterns is None or any(fnmatch.fnmatch(relative, p) for p in allow_patterns):
                (Path(local_dir) / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, Path(local_dir) / relative)
        return str(local_dir)

    monkeypatch.setattr("rest_hf.hub.datasets.snapshot_download", fake_snapshot_download)
    local = tmp_path / "local"
    assert pull_dataset(REPO, split="val", local_dir=local) == local
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == [
        "README.md",
        "metadata/train.parquet",
        "metadata/val.parquet",
        "val/image/c.tif",
        "val/label/c.png",
    ]
    assert [r.name for r in scan_layout(local, "glh-water", "val")] == ["c"]

    other = tmp_path / "labels-only"
    pull_dataset(REPO, split="train", allow_patterns=["*/label/*"], local_dir=other)
    assert sorted(p.name for p in other.rglob("*.png")) == ["a.png", "b.png"] and not list(
        other.rglob("*.tif")
    )
    with pytest.raises(HubError, match="no split 'test'; its splits are train, val"):
        pull_dataset(REPO, split="test", local_dir=tmp_path / "x")


def test_folder_layout_uploads_its_class_file(tmp_path, hub_online):
    root = tmp_path / "generic"
    write_raster(root / "images" / "s1.tif", np.zeros((4, 16, 16), dtype=np.uint16))
    write_raster(root / "labels" / "s1.tif", np.ones((16, 16), dtype=np.uint8))
    (root / "dataset_info.json").write_text('{"classes": ["background", "field"]}')
    api = MirrorApi(tmp_path / "remote")
    push_dataset(root, REPO, layout="folder", token="hf_test", api=api, progress=False)
    assert "dataset_info.json" in api.commits[0]
    (row,) = pq.read_table(api.folder / "metadata/all.parquet").to_pylist()
    assert (row["split"], row["bands"], row["dtype"]) == ("all", 4, "uint16")
    assert "| 1 | field |" in (api.folder / "README.md").read_text()


@pytest.mark.parametrize(
    ("prepare", "layout", "message"),
    [
        (lambda root: root.mkdir(), "glh-water", "does not match the 'glh-water' layout"),
        (lambda root: None, "fbp", "does not exist"),
        (
            lambda root: write_raster(root / "images" / "s.tif", np.zeros((1, 8, 8), np.uint8)),
            "folder",
            "needs the class names",
        ),
        (
            lambda root: (
                write_raster(root / "train" / "image" / "s.tif", np.zeros((3, 8, 8), np.uint8)),
                write_raster(
                    root / "train" / "label" / "s.png",
                    np.zeros((9, 8), np.uint8),
                    driver="PNG",
                    georeferenced=False,
                ),
            ),
            "glh-water",
            r"label .*s.png is 9x8 px but its image .*s.tif is 8x8 px",
        ),
    ],
    ids=["empty", "missing", "no-classes", "label-size"],
)
def test_push_refuses_a_folder_that_does_not_match_its_layout(prepare, layout, message, tmp_path, hub_online):
    root = tmp_path / "root"
    prepare(root)
    api = MirrorApi(tmp_path / "remote")
    with pytest.raises(HubError, match=message) as error:
        push_dataset(root, REPO, layout=layout, token="hf_test", api=api, progress=False)
    assert "\n" not in str(error.value)
    assert api.commits == []


def test_dataset_commands_round_trip_and_one_line_errors(
    water_root, tmp_path, hub_online, monkeypatch, capsys
):
    api = MirrorApi(tmp_path / "remote")
    monkeypatch.setattr("rest_hf.hub.datasets.HfApi", lambda: api)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["dataset", "push", str(water_root), REPO, "--layout", "glh-water", "--chunk-size", "2"]) == 0
    assert f"pushed {water_root} to {REPO} in 5 commit(s)" in capsys.readouterr().out

    cache = tmp_path / "cache"
    fill_hub_cache(cache, REPO, api.folder, repo_type="dataset")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert main(["dataset", "pull", REPO, "--cache-dir", str(cache)]) == 0
    assert (Path(capsys.readouterr().out.strip()) / "metadata" / "train.parquet").is_file()

    assert main(["dataset", "pull", "org/unknown", "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "rest-hf dataset: error: cannot pull dataset org/unknown: dataset 'org/unknown' is not"
    )
    assert "\n" not in err
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert main(["dataset", "push", str(tmp_path / "nothing"), REPO, "--layout", "uavid"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_command_offers_every_layout():
    assert set(LAYOUT_NAMES) == set(LAYOUTS)
