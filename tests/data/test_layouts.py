"""Scanning the four paper datasets' folder layouts and the generic one; label mappings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rest_hf.data import (
    FBP,
    GLH_WATER,
    LAYOUTS,
    UAVID,
    WHU_OHS,
    ColourMap,
    DatasetInfo,
    ValueMap,
    dataset_info,
    scan_layout,
)
from rest_hf.data.reading import open_raster


def read_label(record, info):
    with open_raster(record.label, mask_alpha=False) as source:
        return info.map_labels(source.read(0, 0, source.height, source.width))


def test_every_layout_is_registered_with_its_classes():
    assert set(LAYOUTS) == {"glh-water", "fbp", "whu-ohs", "uavid", "folder"}
    assert GLH_WATER.id2label == {0: "background", 1: "water"}
    assert FBP.num_labels == 24 and FBP.id2label[0] == "industrial area" and FBP.id2label[23] == "airport"
    assert WHU_OHS.num_labels == 24 and WHU_OHS.num_bands == 32 and WHU_OHS.image_mean is None
    assert UAVID.num_labels == 8 and UAVID.palette[1] == (128, 0, 0)
    for info in (GLH_WATER, FBP, WHU_OHS, UAVID):
        kwargs = info.config_kwargs()
        assert kwargs["num_labels"] == len(kwargs["palette"]) == len(kwargs["label2id"])
        assert kwargs["loss_ignore_index"] == 255


def test_glh_water_masks_0_255_become_background_water(build):
    root = build.glh_water()
    train = scan_layout(root, "glh-water", "train")
    assert [r.name for r in train] == ["train_0", "train_1"] and {r.split for r in train} == {"train"}
    assert len(scan_layout(root, "glh-water")) == 4
    info = dataset_info("glh-water", root)
    for record in train:
        _, raw = build.truth[record.name]
        ids = read_label(record, info)
        np.testing.assert_array_equal(ids, (raw == 255).astype(np.int64))
        assert set(np.unique(ids)) <= {0, 1}


def test_glh_water_whole_scene_img_folder_with_jpeg(build, tmp_path):
    from PIL import Image

    root = tmp_path / "water_ori"
    (root / "test" / "img").mkdir(parents=True)
    (root / "test" / "label").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "test" / "img" / "scene.jpg")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "test" / "label" / "scene.png")
    (record,) = scan_layout(root, "glh-water", "test")
    assert record.image.endswith("scene.jpg") and record.label.endswith("scene.png")


def test_fbp_official_release_unlabeled_zero_is_ignored_and_rgb_bands_selected(build):
    root = build.fbp_official()
    records = scan_layout(root, "fbp")
    assert len(records) == 2 and all(r.label.endswith("_24label.png") for r in records)
    info = dataset_info("fbp", root)
    assert info.bands == (2, 3, 4) and info.num_bands == 3
    for record in records:
        nirrgb, raw = build.truth[record.name]
        ids = read_label(record, info)
        np.testing.assert_array_equal(ids, np.where(raw == 0, 255, raw.astype(np.int64) - 1))
        with open_raster(record.image, info.bands) as source:
            np.testing.assert_array_equal(source.read(0, 0, source.height, source.width), nirrgb[1:])


def test_fbp_official_has_no_split_unless_in_split_folders(build):
    root = build.fbp_official()
    with pytest.raises(ValueError, match="no 'train' split.*split sub-folders"):
        scan_layout(root, "fbp", "train")


def test_fbp_official_split_folders(build):
    root = build.fbp_official(split="train")
    records = scan_layout(root, "fbp", "train")
    assert len(records) == 2 and {r.split for r in records} == {"train"}


def test_fbp_rest_masks_keep_255_ignored(build):
    root = build.fbp_rest()
    records = scan_layout(root, "fbp", "val")
    info = dataset_info("fbp", root)
    assert info.bands == (1, 2, 3)
    for record in records:
        _, raw = build.truth[record.name]
        ids = read_label(record, info)
        np.testing.assert_array_equal(ids, raw.astype(np.int64))
        assert (ids[:3] == 255).all() and ids[3:].max() <= 23


def test_whu_ohs_official_split_aliases_and_shifted_labels(build):
    root = build.whu_ohs()
    assert {r.split for r in scan_layout(root, "whu-ohs")} == {"train", "val", "test"}
    train = scan_layout(root, "whu-ohs", "train")
    assert [r.name for r in train] == ["S1_tr0", "S1_tr1"]
    info = dataset_info("whu-ohs", root)
    _, raw = build.truth["S1_tr0"]
    np.testing.assert_array_equal(
        read_label(train[0], info), np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    )
    with open_raster(train[0].image, info.bands) as source:
        assert source.count == 32


def test_uavid_colour_masks_become_class_ids(build):
    root = build.uavid(splits=("train", "val", "test"))
    train = scan_layout(root, "uavid", "train")
    assert [r.name for r in train] == ["seq1_000000", "seq1_000001", "seq2_000000", "seq2_000001"]
    info = dataset_info("uavid", root)
    for record in train:
        _, ids = build.truth[f"{record.name}_train"]
        np.testing.assert_array_equal(read_label(record, info), ids)
    test = scan_layout(root, "uavid", "test")
    assert len(test) == 4 and all(r.label is None for r in test)


def test_uavid_toolkit_names_and_id_masks(build, tmp_path):
    root = build.uavid(splits=("valid",), prefix="")
    records = scan_layout(root, "uavid", "val")
    assert len(records) == 4 and {r.split for r in records} == {"val"}
    # A converted mask of class ids is accepted too.
    ids = np.arange(8, dtype=np.uint8).reshape(2, 4)
    assert (UAVID.map_labels(ids[None]) == ids).all()


def test_colour_map_unknown_colours_are_reported_and_ignored():
    mapping = ColourMap([(0, 0, 0), (128, 0, 0)], ignore_index=255)
    raw = np.zeros((3, 2, 2), np.uint8)
    raw[0, 0, 0] = 128
    raw[:, 1, 1] = (1, 2, 3)
    np.testing.assert_array_equal(mapping(raw), [[1, 0], [0, 255]])
    assert mapping.unknown(raw) == [(1, 2, 3)]


def test_value_map_unknown_values():
    mapping = ValueMap({0: 0, 255: 1}, ignore_index=255)
    raw = np.array([[0, 255], [7, 0]], np.uint8)
    np.testing.assert_array_equal(mapping(raw), [[0, 1], [255, 0]])
    assert mapping.unknown(raw) == [7]


def test_folder_layout_flat_split_and_classes_from_json(build):
    root = build.folder()
    records = scan_layout(root, "folder")
    assert [r.name for r in records] == ["scene_0", "scene_1", "scene_2"]
    assert {r.split for r in records} == {"all"}
    info = dataset_info("folder", root)
    assert info.id2label == {0: "a", 1: "b", 2: "c"} and info.num_bands == 4 and info.value_range == 4000
    assert info.image_mean is None and len(info.palette) == 3
    with pytest.raises(ValueError, match="unsplit set"):
        scan_layout(root, "folder", "train")


def test_folder_layout_split_folders(build):
    root = build.folder(splits=("train", "val"))
    assert [r.name for r in scan_layout(root, "folder", "val")] == ["val_0", "val_1", "val_2"]
    assert len(scan_layout(root, "folder")) == 6


def test_folder_layout_needs_class_names(build):
    root = build.folder()
    (root / "dataset_info.json").unlink()
    with pytest.raises(ValueError, match="needs the class names"):
        dataset_info("folder", root)
    info = dataset_info("folder", root, id2label=["x", "y", "z"], num_bands=4)
    assert info.label2id == {"x": 0, "y": 1, "z": 2}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_folder_layout_index_file(build, kind):
    root = build.folder()
    rows = [
        {"image": "images/scene_0.tif", "label": "labels/scene_0.tif", "split": "train"},
        {"image": "images/scene_1.tif", "label": "labels/scene_1.tif", "split": "val"},
        {"image": str(root / "images/scene_2.tif"), "label": "", "split": "val"},
    ]
    if kind == "csv":
        index = root / "index.csv"
        index.write_text(
            "image,label,split\n" + "".join(f"{r['image']},{r['label']},{r['split']}\n" for r in rows)
        )
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        index = root / "index.parquet"
        pq.write_table(pa.Table.from_pylist(rows), index)
    train = scan_layout(root, "folder", "train")
    assert [(r.name, r.split) for r in train] == [("scene_0", "train")]
    assert train[0].image == str(root / "images" / "scene_0.tif")
    val = scan_layout(index, "folder", "val")
    assert [r.label is None for r in val] == [False, True]
    assert dataset_info("folder", index).num_labels == 3


def test_layout_mismatch_names_the_expected_structure(build):
    with pytest.raises(
        ValueError, match=r"does not match the 'whu-ohs' layout.*image.*label.*found \['uavid_train"
    ):
        scan_layout(build.uavid(), "whu-ohs", "train")
    root = build.glh_water()
    with pytest.raises(ValueError, match="unknown dataset layout 'potsdam'"):
        scan_layout(root, "potsdam")
    with pytest.raises(ValueError, match="does not exist"):
        scan_layout(root / "missing", "glh-water")
    with pytest.raises(ValueError, match="split 'test'"):
        scan_layout(root, "glh-water", "test")


def test_labels_matching_no_image_are_refused(build):
    root = build.glh_water(splits=("train",))
    (root / "train" / "label" / "train_0.png").rename(root / "train" / "label" / "train_0_mask.png")
    with pytest.raises(
        ValueError, match=r"1 label file\(s\) match no image.*train_0_mask.png.*have no label"
    ):
        scan_layout(root, "glh-water", "train")


def test_duplicate_scene_names_are_refused(build):
    root = build.glh_water(splits=("train",))
    image = root / "train" / "image" / "train_0.png"
    image.with_suffix(".tif").write_bytes(image.read_bytes())
    with pytest.raises(ValueError, match="two scenes of split 'train' are named 'train_0'"):
        scan_layout(root, "glh-water", "train")


def test_dataset_info_checks_itself():
    with pytest.raises(ValueError, match="ids 0..K-1"):
        DatasetInfo("x", {1: "a"}, ((0, 0, 0),), 255, 3, ValueMap.identity(1))
    with pytest.raises(ValueError, match="is a class id"):
        DatasetInfo("x", {0: "a"}, ((0, 0, 0),), 0, 3, ValueMap.identity(1))
    with pytest.raises(ValueError, match="compute_band_statistics"):
        WHU_OHS.processor_kwargs()
    json.dumps(GLH_WATER.config_kwargs())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32])
def test_value_map_every_label_dtype(dtype):
    mapping = ValueMap({0: 255, 1: 0, 2: 1}, ignore_index=255)
    raw = np.array([[0, 1, 2], [3, 2, 1]], dtype=dtype)
    expected = np.array([[255, 0, 1], [255, 1, 0]])
    out = mapping(raw)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, expected)
    if np.issubdtype(dtype, np.floating):
        np.testing.assert_array_equal(mapping(np.array([1.5, np.nan, 2.0], dtype)), [255, 255, 1])
    if np.issubdtype(dtype, np.signedinteger):
        np.testing.assert_array_equal(mapping(np.array([-1, 1], dtype)), [255, 0])


def test_colour_map_fast_and_general_paths_agree():
    rng = np.random.default_rng(0)
    palette = UAVID.palette
    raw = np.moveaxis(np.array(palette, np.uint8)[rng.integers(0, 8, (6, 7))], -1, 0).copy()
    raw[:, 0, 0] = (1, 2, 3)
    mapping = ColourMap(palette)
    fast = mapping(raw)
    general = mapping(raw.astype(np.uint16))
    np.testing.assert_array_equal(fast, general)
    assert fast[0, 0] == 255 and fast.dtype == np.int64
