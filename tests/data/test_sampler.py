"""SceneSampler: different scenes across data-parallel groups, the same within a spatial group, exact resume."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from rest_hf import RestImageProcessor
from rest_hf.data import (
    SampleKey,
    SceneSampler,
    WholeSceneDataset,
    collate_samples,
    dataset_info,
    scan_layout,
)
from rest_hf.spatial import SpatialContext


def mesh(dp_size, grid):
    """Every process's SpatialContext of a (dp, sp) mesh, in global-rank order (as SpatialContext.init builds)."""
    rows, cols = grid
    sp = rows * cols
    return [
        SpatialContext(
            grid=grid, coord=divmod(rank % sp, cols), rank=rank % sp, dp_rank=rank // sp, dp_size=dp_size
        )
        for rank in range(dp_size * sp)
    ]


@pytest.mark.parametrize("scenes", [1, 6, 7, 13])
@pytest.mark.parametrize("dp_size, grid", [(1, (1, 2)), (2, (1, 2)), (3, (2, 2)), (4, (1, 1))])
def test_groups_get_different_scenes_and_spatial_ranks_the_same(scenes, dp_size, grid):
    for epoch in (0, 1, 5):
        orders = {}
        for ctx in mesh(dp_size, grid):
            sampler = SceneSampler(scenes, ctx, seed=3)
            sampler.set_epoch(epoch)
            keys = list(sampler)
            assert all(k.epoch == epoch for k in keys) and [k.position for k in keys] == list(
                range(len(keys))
            )
            orders.setdefault(ctx.dp_rank, []).append([k.index for k in keys])
        for members in orders.values():
            assert all(m == members[0] for m in members), "a spatial group shares its scenes"
        per_group = [members[0] for _, members in sorted(orders.items())]
        assert len({len(o) for o in per_group}) == 1, "every group takes the same number of steps"
        flat = [i for order in per_group for i in order]
        assert set(flat) == set(range(scenes)), "every scene is seen each epoch"
        if scenes % dp_size == 0:
            assert sorted(flat) == list(range(scenes)), "no scene is read by two groups"


def test_order_is_deterministic_per_epoch_and_changes_between_epochs():
    a, b = SceneSampler(50, seed=1), SceneSampler(50, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(1)
    first = [k.index for k in a]
    assert first == [k.index for k in b] and first != [k.index for k in SceneSampler(50, seed=1)]
    assert [k.index for k in SceneSampler(5, shuffle=False)] == [0, 1, 2, 3, 4]


def test_drop_last_and_too_few_scenes():
    assert len(SceneSampler(7, dp_rank=1, dp_size=3, drop_last=True)) == 2
    assert len(SceneSampler(7, dp_rank=1, dp_size=3)) == 3
    with pytest.raises(ValueError, match="cannot feed 4 data-parallel groups"):
        SceneSampler(3, dp_rank=0, dp_size=4, drop_last=True)
    with pytest.raises(ValueError, match="dp_rank 2 is outside"):
        SceneSampler(3, dp_rank=2, dp_size=2)


def test_resume_mid_epoch_continues_exactly():
    sampler = SceneSampler(10, seed=4)
    sampler.set_epoch(2)
    iterator = iter(sampler)
    seen = [next(iterator) for _ in range(4)]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "index": 4}
    rest = list(iterator)

    resumed = SceneSampler(10, seed=4)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the training loop's usual call does not rewind a loaded position
    assert list(resumed) == rest
    assert [k.index for k in seen + rest] == SceneSampler(10, seed=4).order(2)
    # the end of an epoch is the start of the next
    done = SceneSampler(10, seed=4)
    done.load_state_dict({"epoch": 2, "index": 10})
    assert done.state_dict() == {"epoch": 3, "index": 0}


def test_state_after_a_prefetched_batch(build):
    """With a DataLoader running ahead, the state saved after a batch points at the next unseen sample."""
    root = build.glh_water(count=3)
    info = dataset_info("glh-water", root)
    dataset = WholeSceneDataset(scan_layout(root, "glh-water"), info, RestImageProcessor(), crop_size=16)
    sampler = SceneSampler(dataset, seed=0)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=collate_samples, num_workers=2)
    batches = iter(loader)
    first = next(batches)
    assert sampler.state_dict()["index"] > 2  # the workers have already been handed more samples
    state = SceneSampler.state_after(first)
    assert state == {"epoch": 0, "index": 2}
    remaining = [b["index"].tolist() for b in batches]
    resumed = SceneSampler(dataset, seed=0)
    resumed.load_state_dict(state)
    again = [
        b["index"].tolist()
        for b in DataLoader(dataset, batch_size=2, sampler=resumed, collate_fn=collate_samples)
    ]
    assert again == remaining
    one = dataset[SampleKey(0, 0, 5)]
    assert SceneSampler.state_after(one) == {"epoch": 0, "index": 6}
    assert torch.is_tensor(first["index"])
