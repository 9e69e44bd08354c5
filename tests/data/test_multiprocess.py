"""Synchronised augmentation across real processes: each rank reads only its tile, all tiles make one sample."""

from __future__ import annotations

import torch
import torch.distributed as dist

from rest_hf import RestImageProcessor
from rest_hf.data import AugmentConfig, SceneSampler, WholeSceneDataset, dataset_info, scan_layout
from rest_hf.spatial import SpatialContext, TileRule
from tests.multiprocess import run_in_processes

AUGMENT = AugmentConfig(scale_range=(0.6, 1.7), photometric_prob=1.0)


def _check_sample_groups(rank, nprocs, root):
    for grid, crop in (((1, 2), (48, 32)), ((2, 1), None)):
        _check_sample_group(rank, nprocs, root, SpatialContext.init(grid=grid), crop)


def _check_sample_group(rank, nprocs, root, ctx, crop):
    info = dataset_info("glh-water", root)
    records = scan_layout(root, "glh-water")
    tiled = WholeSceneDataset(
        records, info, RestImageProcessor(), ctx, crop, AUGMENT, seed=3, tile_rule=TileRule(alignment=8)
    )
    whole = WholeSceneDataset(records, info, RestImageProcessor(), None, crop, AUGMENT, seed=3)
    sampler = SceneSampler(tiled, ctx, seed=1)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        every_keys = [None] * nprocs
        dist.all_gather_object(every_keys, keys)
        assert all(k == keys for k in every_keys), "every rank of a spatial group gets the same scenes"
        for key in keys:
            mine = tiled[key]
            gathered = [None] * nprocs
            dist.all_gather_object(
                gathered, (mine["geometry"], mine["box"], mine["pixel_values"], mine["labels"])
            )
            assert all(g[0] == mine["geometry"] for g in gathered), "every rank draws the same augmentation"
            one = whole[key]
            assert one["geometry"] == mine["geometry"]
            pixels = torch.full_like(one["pixel_values"], float("nan"))
            labels = torch.full_like(one["labels"], -1)
            for _, (top, left, h, w), tile_pixels, tile_labels in gathered:
                pixels[:, top : top + h, left : left + w] = tile_pixels
                labels[top : top + h, left : left + w] = tile_labels
            assert torch.equal(pixels, one["pixel_values"]), (
                f"rank {rank}: tiles differ from the whole sample"
            )
            assert torch.equal(labels, one["labels"])


def test_two_processes_draw_one_augmentation_and_their_tiles_make_the_sample(build):
    root = build.glh_water(size=(53, 61))
    run_in_processes(_check_sample_groups, 2, str(root))
