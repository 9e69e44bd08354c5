"""A dataset that does not match its layout is refused before training, with every bad file named."""

from __future__ import annotations

import numpy as np
import pytest

from rest_hf.data import dataset_info, scan_layout, validate_records

from .conftest import write_png


def test_good_datasets_pass(build):
    for layout, root in (
        ("glh-water", build.glh_water()),
        ("fbp", build.fbp_official()),
        ("whu-ohs", build.whu_ohs()),
        ("uavid", build.uavid()),
        ("folder", build.folder()),
    ):
        validate_records(scan_layout(root, layout), dataset_info(layout, root))


def test_image_without_label(build):
    root = build.glh_water(splits=("train",))
    (root / "train" / "label" / "train_1.png").unlink()
    records = scan_layout(root, "glh-water", "train")
    with pytest.raises(ValueError, match=r"(?s)train_1.png has no label.*Fix: add a label file"):
        validate_records(records, dataset_info("glh-water"))
    validate_records(records, dataset_info("glh-water"), require_labels=False)


def test_missing_label_file(build):
    root = build.glh_water(splits=("train",))
    records = scan_layout(root, "glh-water", "train")
    (root / "train" / "label" / "train_0.png").unlink()
    with pytest.raises(ValueError, match=r"(?s)label .*train_0.png \(of image .*\) does not exist"):
        validate_records(records, dataset_info("glh-water"))


def test_size_mismatch_names_both_files(build):
    root = build.glh_water(splits=("train",))
    write_png(root / "train" / "label" / "train_0.png", np.zeros((10, 12), np.uint8))
    records = scan_layout(root, "glh-water", "train")
    with pytest.raises(
        ValueError, match=r"(?s)label .*train_0.png is 10x12 px but image .*train_0.png is 40x48 px"
    ):
        validate_records(records, dataset_info("glh-water"))


def test_unknown_label_values_are_found(build):
    root = build.glh_water(splits=("train",))
    mask = np.zeros((40, 48), np.uint8)
    mask[5, 7] = 128
    write_png(root / "train" / "label" / "train_1.png", mask)
    records = scan_layout(root, "glh-water", "train")
    with pytest.raises(
        ValueError, match=r"(?s)train_1.png holds values \[128\].*expected values \[0, 1, 255\]"
    ):
        validate_records(records, dataset_info("glh-water"))
    validate_records(records, dataset_info("glh-water"), check_values=False)


def test_fbp_rest_masks_in_the_official_folders_are_caught(build):
    """REST's 0..23/255 masks placed where the official 0=unlabeled masks belong: 255 is unknown there."""
    root = build.fbp_official()
    name = sorted(build.truth)[0]
    mask = np.full((36, 44), 255, np.uint8)
    write_png(root / "Annotation__index" / f"{name}_24label.png", mask)
    with pytest.raises(ValueError, match=r"(?s)holds values \[255\].*Fix: check that the layout matches"):
        validate_records(scan_layout(root, "fbp"), dataset_info("fbp", root))


def test_unknown_uavid_colour(build):
    root = build.uavid(splits=("train",))
    colours = np.zeros((3, 27, 48), np.uint8)
    colours[:, 0, 0] = (10, 20, 30)
    write_png(root / "uavid_train" / "seq1" / "Labels" / "000000.png", colours)
    with pytest.raises(ValueError, match=r"(?s)holds colours \[\(10, 20, 30\)\]"):
        validate_records(scan_layout(root, "uavid", "train"), dataset_info("uavid"))


def test_wrong_band_count_and_all_problems_in_one_message(build):
    """An RGB dataset scanned as WHU-OHS (same folder names): band count refused for every scene."""
    root = build.glh_water()
    records = scan_layout(root, "whu-ohs")
    with pytest.raises(ValueError) as error:
        validate_records(records, dataset_info("whu-ohs"))
    message = str(error.value)
    assert message.count("needs 32") == 4  # every scene, in one message
    assert "holds values [255]" in message  # GLH's water value is no WHU-OHS label value


def test_unreadable_image_is_reported(build):
    root = build.glh_water(splits=("train",))
    (root / "train" / "image" / "train_0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"(?s)image .*train_0.png: cannot open"):
        validate_records(scan_layout(root, "glh-water", "train"), dataset_info("glh-water"))


def test_large_labels_are_sampled_by_windows(build, make_geotiff, tmp_path):
    root = tmp_path / "big"
    image = np.zeros((3, 300, 260), np.uint8)
    label = np.zeros((300, 260), np.uint8)
    label[150:, :] = 7  # unknown value in the lower half: random windows find it
    make_geotiff(root / "train" / "image" / "a.tif", image)
    make_geotiff(root / "train" / "label" / "a.tif", label)
    records = scan_layout(root, "glh-water", "train")
    with pytest.raises(ValueError, match=r"(?s)holds values \[7\]"):
        validate_records(records, dataset_info("glh-water"), window=64, windows_per_scene=8)
