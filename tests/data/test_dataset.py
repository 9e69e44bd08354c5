"""WholeSceneDataset: reading, label mapping, padding, and exact tiling through every augmentation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rest_hf import RestImageProcessor
from rest_hf.data import (
    AugmentConfig,
    SampleKey,
    WholeSceneDataset,
    collate_samples,
    compute_band_statistics,
    dataset_info,
    scan_layout,
)
from rest_hf.data.geometry import resize_whole
from rest_hf.data.reading import open_raster
from rest_hf.spatial import SpatialContext, TileRule

FULL = AugmentConfig(photometric_prob=1.0)  # every augmentation, every photometric jitter


def contexts(grid):
    """One SpatialContext per rank of `grid` (partition arithmetic only; no process group is needed)."""
    rows, cols = grid
    return [
        SpatialContext(grid=grid, coord=(r, c), rank=r * cols + c, global_ranks=tuple(range(rows * cols)))
        for r in range(rows)
        for c in range(cols)
    ]


def assemble(samples):
    """Put the tiles of one sample together by their boxes."""
    height, width = samples[0]["sample_size"]
    pixels = torch.zeros(samples[0]["pixel_values"].shape[0], height, width)
    labels = torch.full((height, width), -1, dtype=torch.int64)
    valid = torch.zeros(height, width, dtype=torch.bool)
    covered = torch.zeros(height, width, dtype=torch.int64)
    for sample in samples:
        top, left, h, w = sample["box"]
        pixels[:, top : top + h, left : left + w] = sample["pixel_values"]
        labels[top : top + h, left : left + w] = sample["labels"]
        valid[top : top + h, left : left + w] = sample["valid_mask"]
        covered[top : top + h, left : left + w] += 1
    assert (covered == 1).all(), "tiles must cover the sample exactly once"
    return pixels, labels, valid


def reference(dataset, key):
    """The sample built the obvious way: whole scene read, torch resize, crop, pad, flip, rotate, normalise."""
    index, epoch = key[0], key[1]
    record, info = dataset.records[index], dataset.info
    with open_raster(record.image, info.bands) as source:
        raw, valid = source.read_masked(0, 0, source.height, source.width)
    with open_raster(record.label, mask_alpha=False) as source:
        ids = info.map_labels(source.read(0, 0, source.height, source.width))
    geometry = dataset.geometry((index, epoch))
    image = raw.astype(np.float32)
    image[:, ~valid] = 0
    if geometry.resized:
        size = geometry.resized_size
        image = F.interpolate(torch.from_numpy(image)[None], size=size, mode="bilinear", align_corners=False)[
            0
        ]
        image = image.numpy()
        near = lambda a: F.interpolate(  # noqa: E731
            torch.from_numpy(a.astype(np.float64))[None, None], size=size, mode="nearest-exact"
        )[0, 0].numpy()
        valid, ids = near(valid).astype(bool), near(ids).astype(np.int64)
    h_r, w_r = geometry.window_size
    t, l = geometry.crop_top, geometry.crop_left  # noqa: E741
    win = np.zeros((image.shape[0], h_r, w_r), np.float32)
    win_valid = np.zeros((h_r, w_r), bool)
    win_ids = np.full((h_r, w_r), info.ignore_index, np.int64)
    part = image[:, t : t + h_r, l : l + w_r]
    win[:, : part.shape[1], : part.shape[2]] = part
    win_valid[: part.shape[1], : part.shape[2]] = valid[t : t + h_r, l : l + w_r]
    win_ids[: part.shape[1], : part.shape[2]] = ids[t : t + h_r, l : l + w_r]
    win_ids[~win_valid] = info.ignore_index
    win = (win + np.float32(geometry.brightness)) * np.float32(geometry.contrast)
    if geometry.saturation != 1.0:
        gray = 0.299 * win[0] + 0.587 * win[1] + 0.114 * win[2]
        win = gray + np.float32(geometry.saturation) * (win - gray)
    if info.clip_range:
        win = np.clip(win, 0, info.value_range)
    arrays = [win, win_valid, win_ids]
    if geometry.hflip:
        arrays = [a[..., :, ::-1] for a in arrays]
    if geometry.vflip:
        arrays = [a[..., ::-1, :] for a in arrays]
    arrays = [np.rot90(a, geometry.rot90, axes=(-2, -1)) for a in arrays]
    win, win_valid, win_ids = (np.ascontiguousarray(a) for a in arrays)
    pixels = dataset.processor.normalize_array(win) if dataset.processor is not None else win
    pixels[:, ~win_valid] = 0
    return torch.from_numpy(pixels), torch.from_numpy(win_ids), torch.from_numpy(win_valid)


def test_whole_scene_one_process_reads_normalises_and_maps(build):
    root = build.glh_water()
    records = scan_layout(root, "glh-water", "train")
    info = dataset_info("glh-water", root)
    processor = RestImageProcessor()
    dataset = WholeSceneDataset(records, info, processor)
    sample = dataset[0]
    image, raw = build.truth[records[0].name]
    assert (
        sample["box"] == (0, 0, 40, 48) and sample["sample_size"] == (40, 48) and sample["name"] == "train_0"
    )
    torch.testing.assert_close(sample["pixel_values"], torch.from_numpy(processor.normalize_array(image)))
    assert sample["labels"].dtype == torch.int64
    assert torch.equal(sample["labels"], torch.from_numpy((raw == 255).astype(np.int64)))
    assert sample["valid_mask"].all() and sample["pixel_values"].dtype == torch.float32


def test_nodata_and_padding_are_ignored(build, make_geotiff, tmp_path):
    root = tmp_path / "water"
    image = np.full((3, 20, 30), 100, np.uint8)
    image[:, :5, :] = 0  # nodata collar
    make_geotiff(root / "train" / "image" / "a.tif", image, nodata=0)
    make_geotiff(root / "train" / "label" / "a.tif", np.full((20, 30), 255, np.uint8))
    info = dataset_info("glh-water", root)
    dataset = WholeSceneDataset(
        scan_layout(root, "glh-water", "train"), info, RestImageProcessor(), crop_size=(24, 32)
    )
    sample = dataset[0]
    assert sample["pixel_values"].shape == (3, 24, 32)
    top, left = (
        (24 - 20) // 2 * 0,
        0,
    )  # the scene is smaller than the crop: placed at (0, 0), padded bottom/right
    valid = sample["valid_mask"]
    assert not valid[:5].any() and valid[5:20, :30].all() and not valid[20:].any() and not valid[:, 30:].any()
    assert (sample["labels"][valid] == 1).all() and (sample["labels"][~valid] == 255).all()
    assert (sample["pixel_values"][:, ~valid] == 0).all()
    assert top == left == 0


@pytest.mark.parametrize("augment", [None, FULL, AugmentConfig(scale_range=(1.5, 1.5), rotate90=False)])
@pytest.mark.parametrize("crop", [None, (32, 24)])
def test_one_process_sample_matches_the_obvious_pipeline(build, augment, crop):
    root = build.glh_water(size=(40, 48))
    info = dataset_info("glh-water", root)
    dataset = WholeSceneDataset(
        scan_layout(root, "glh-water"), info, RestImageProcessor(), crop_size=crop, augment=augment
    )
    for key in [(0, 0), (1, 0), (2, 3), (3, 7), (0, 11)]:
        sample = dataset[SampleKey(key[0], key[1], 0)]
        pixels, ids, valid = reference(dataset, key)
        assert sample["pixel_values"].shape[-2:] == (crop or sample["sample_size"])
        torch.testing.assert_close(
            sample["pixel_values"], pixels, atol=1e-4, rtol=0
        )  # torch resizes in float32, we in float64 indices
        assert torch.equal(sample["valid_mask"], valid)
        # nearest-neighbour labels: torch computes the source index in float32; compare away from rounding ties
        agree = (sample["labels"] == ids).float().mean()
        assert agree > 0.995, agree


GRIDS = [(1, 2), (2, 1), (2, 2), (1, 3)]


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("augment", [None, FULL, AugmentConfig(scale_range=(0.6, 1.7), photometric_prob=1.0)])
@pytest.mark.parametrize("crop", [None, (48, 32)])
def test_tiles_reassemble_the_one_process_sample_exactly(build, grid, augment, crop):
    root = build.glh_water(size=(53, 61))
    info = dataset_info("glh-water", root)
    records = scan_layout(root, "glh-water")
    alignment = 8
    whole = WholeSceneDataset(records, info, RestImageProcessor(), crop_size=crop, augment=augment, seed=5)
    tiled = [
        WholeSceneDataset(
            records,
            info,
            RestImageProcessor(),
            ctx,
            crop,
            augment,
            seed=5,
            tile_rule=TileRule(alignment=alignment),
        )
        for ctx in contexts(grid)
    ]
    for key in itertools.product(range(len(records)), (0, 3)):
        key = SampleKey(key[0], key[1], 0)
        one = whole[key]
        tiles = [dataset[key] for dataset in tiled]
        assert all(t["geometry"] == one["geometry"] for t in tiles), "every rank draws the same augmentation"
        assert len({t["box"] for t in tiles}) == len(tiles)
        pixels, labels, valid = assemble(tiles)
        # Bit for bit: every output pixel is computed by the same arithmetic whichever process computes it.
        assert torch.equal(pixels, one["pixel_values"])
        assert torch.equal(labels, one["labels"])
        assert torch.equal(valid, one["valid_mask"])


def test_tiles_read_only_their_own_window(build, monkeypatch):
    """No process reads more than its tile (plus the one-pixel halo of a resize)."""
    from rest_hf.io import RasterSource

    root = build.glh_water(size=(64, 64), splits=("train",), count=1)
    info = dataset_info("glh-water", root)
    records = scan_layout(root, "glh-water", "train")
    reads = []
    original = RasterSource.read_masked

    def spy(self, top, left, height, width, **kwargs):
        reads.append((top, left, height, width))
        return original(self, top, left, height, width, **kwargs)

    monkeypatch.setattr(RasterSource, "read_masked", spy)
    for ctx in contexts((2, 2)):
        WholeSceneDataset(records, info, RestImageProcessor(), ctx, tile_rule=TileRule(alignment=16))[0]
    assert sorted(reads) == [(0, 0, 32, 32), (0, 32, 32, 32), (32, 0, 32, 32), (32, 32, 32, 32)]


def test_whu_ohs_32_bands_with_computed_statistics(build):
    root = build.whu_ohs()
    info = dataset_info("whu-ohs", root)
    records = scan_layout(root, "whu-ohs", "train")
    mean, std = compute_band_statistics(records, info)
    assert len(mean) == len(std) == 32 and 4000 < mean[0] < 6000
    info = info.replace(image_mean=mean, image_std=std)
    processor = RestImageProcessor(**info.processor_kwargs())
    sample = WholeSceneDataset(records, info, processor, crop_size=32, augment=FULL)[SampleKey(0, 1, 0)]
    assert sample["pixel_values"].shape == (32, 32, 32)
    assert abs(float(sample["pixel_values"].mean())) < 0.5
    assert set(sample["labels"].unique().tolist()) <= set(range(24)) | {255}


def test_uavid_labels_through_the_dataset(build):
    root = build.uavid(splits=("train",))
    info = dataset_info("uavid", root)
    records = scan_layout(root, "uavid", "train")
    sample = WholeSceneDataset(records, info, RestImageProcessor())[0]
    _, ids = build.truth[f"{records[0].name}_train"]
    assert torch.equal(sample["labels"], torch.from_numpy(ids))


def test_fbp_official_reads_rgb_and_ignores_unlabeled(build):
    root = build.fbp_official()
    info = dataset_info("fbp", root)
    records = scan_layout(root, "fbp")
    sample = WholeSceneDataset(records, info, None)[0]
    nirrgb, raw = build.truth[records[0].name]
    assert torch.equal(sample["pixel_values"], torch.from_numpy(nirrgb[1:].astype(np.float32)))
    assert torch.equal(sample["labels"], torch.from_numpy(np.where(raw == 0, 255, raw.astype(np.int64) - 1)))


def test_unlabelled_scenes_and_collate(build):
    root = build.uavid(splits=("test",))
    info = dataset_info("uavid", root)
    dataset = WholeSceneDataset(scan_layout(root, "uavid", "test"), info, RestImageProcessor(), crop_size=16)
    batch = collate_samples([dataset[0], dataset[1]])
    assert "labels" not in batch and batch["pixel_values"].shape == (2, 3, 16, 16)
    assert batch["name"] == ["seq1_000000", "seq1_000001"] and batch["box"] == (0, 0, 16, 16)


def test_collate_refuses_mixed_sizes(build, make_geotiff):
    root = build.glh_water(splits=("train",), count=1)
    make_geotiff(root / "train" / "image" / "big.tif", np.zeros((3, 50, 50), np.uint8))
    make_geotiff(root / "train" / "label" / "big.tif", np.zeros((50, 50), np.uint8))
    dataset = WholeSceneDataset(scan_layout(root, "glh-water", "train"), dataset_info("glh-water"), None)
    with pytest.raises(ValueError, match="use batch_size=1 or set crop_size"):
        collate_samples([dataset[0], dataset[1]])


def test_grid_that_does_not_fit_the_crop_is_refused_with_the_scene_named(build):
    root = build.glh_water(splits=("train",), count=1)
    ctx = contexts((1, 4))[0]
    dataset = WholeSceneDataset(
        scan_layout(root, "glh-water", "train"),
        dataset_info("glh-water"),
        None,
        ctx,
        crop_size=32,
        tile_rule=TileRule(alignment=16),
    )
    with pytest.raises(ValueError, match=r"sample train_0 of 32x32 px cannot be split over grid \(1, 4\)"):
        dataset[0]


def test_processor_band_count_must_match(build):
    root = build.whu_ohs()
    with pytest.raises(ValueError, match="normalises 3 bands but dataset 'whu-ohs' has 32"):
        WholeSceneDataset(
            scan_layout(root, "whu-ohs", "train"), dataset_info("whu-ohs"), RestImageProcessor()
        )


def test_resize_matches_torch_interpolate():
    rng = np.random.default_rng(1)
    for shape, size in [((13, 17), (26, 34)), ((20, 30), (9, 14)), ((10, 12), (15, 5))]:
        array = rng.normal(size=(2, *shape)).astype(np.float32)
        expected = F.interpolate(
            torch.from_numpy(array)[None], size=size, mode="bilinear", align_corners=False
        )[0]
        np.testing.assert_allclose(resize_whole(array, size), expected.numpy(), atol=1e-5)
        labels = rng.integers(0, 9, shape)
        expected = F.interpolate(
            torch.from_numpy(labels)[None, None].double(), size=size, mode="nearest-exact"
        )
        np.testing.assert_array_equal(resize_whole(labels, size, "nearest"), expected[0, 0].numpy())


def test_dataset_pickles_without_the_process_group(build):
    """DataLoader workers started with spawn get the grid and the tile, not the (unpicklable) process group."""
    import pickle
    from dataclasses import replace

    root = build.glh_water(splits=("train",))
    records = scan_layout(root, "glh-water", "train")
    ctx = replace(
        contexts((1, 2))[1], group=lambda: None
    )  # a lambda stands for a process group: not picklable
    dataset = WholeSceneDataset(
        records,
        dataset_info("glh-water"),
        RestImageProcessor(),
        ctx,
        32,
        FULL,
        tile_rule=TileRule(alignment=8),
    )
    copy = pickle.loads(pickle.dumps(dataset))
    a, b = dataset[SampleKey(1, 2, 0)], copy[SampleKey(1, 2, 0)]
    assert a["box"] == b["box"] == (0, 16, 32, 16)
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])


def test_rest_recipe():
    recipe = AugmentConfig.rest_recipe()
    assert (
        recipe.scale_range == (0.5, 2.0) and recipe.hflip == 0.5 and recipe.vflip == 0 and not recipe.rotate90
    )
    assert AugmentConfig.rest_recipe(num_bands=32).contrast is None
