"""`SceneSampler`: which scenes each process reads, epoch by epoch, resumable at any sample.

Processes form a (dp, sp) mesh. Every process of a spatial group must work on the same scene at the same step
(each reads its own tile of it); the data-parallel groups must see different scenes. So the order of an epoch
is one permutation drawn from (seed, epoch), the same on every process; data-parallel group `dp_rank` takes
positions ``dp_rank, dp_rank + dp_size, ...``; every process of a group therefore yields the same sequence.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any, NamedTuple

import torch
from torch.utils.data import Sampler


class SampleKey(NamedTuple):
    """What the sampler yields and `WholeSceneDataset.__getitem__` accepts: the scene index, the epoch (for the
    augmentation seed, so DataLoader workers never depend on a `set_epoch` they did not see) and the position
    of the sample in this data-parallel group's sequence of the epoch (for resuming)."""

    index: int
    epoch: int
    position: int


class SceneSampler(Sampler[SampleKey]):
    """Scenes for one data-parallel group: different across groups, identical within a spatial group.

    Args:
        data: The dataset (anything with `len`) or its length.
        ctx: A `SpatialContext`; its `dp_rank` / `dp_size` choose the share. `None`: one group.
        shuffle: Draw a new order each epoch (from `seed` and the epoch) instead of 0, 1, 2, ...
        seed: Seed of the order; the same on every process.
        drop_last: Drop the tail that does not divide by `dp_size` (otherwise the first scenes of the order
            are repeated so every group gets the same number of samples and no group waits at a collective).
        dp_rank, dp_size: Override the context's values.

    Resuming: `state_dict()` is ``{"epoch", "index"}``, `index` being the samples of this epoch already yielded.
    A `DataLoader` with prefetching runs ahead of training; the position of each sample is in the sample
    (`sample["position"]`), so save ``SceneSampler.state_after(batch)`` (the state just after the last trained
    batch) and `load_state_dict` it to resume at exactly the next sample.
    """

    def __init__(
        self,
        data: Sized | int,
        ctx: Any = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        dp_rank: int | None = None,
        dp_size: int | None = None,
    ) -> None:
        self.num_scenes = int(data) if isinstance(data, int) else len(data)
        if self.num_scenes < 1:
            raise ValueError("SceneSampler needs at least one scene")
        self.dp_rank = int(dp_rank if dp_rank is not None else getattr(ctx, "dp_rank", 0))
        self.dp_size = int(dp_size if dp_size is not None else getattr(ctx, "dp_size", 1))
        if not 0 <= self.dp_rank < self.dp_size:
            raise ValueError(f"dp_rank {self.dp_rank} is outside 0..{self.dp_size - 1}")
        if drop_last and self.num_scenes < self.dp_size:
            raise ValueError(
                f"{self.num_scenes} scenes cannot feed {self.dp_size} data-parallel groups with drop_last=True; "
                "use drop_last=False, fewer groups (a larger --grid), or more scenes"
            )
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        self.index = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_scenes // self.dp_size
        return math.ceil(self.num_scenes / self.dp_size)

    def order(self, epoch: int | None = None) -> list[int]:
        """This group's scene indices for `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))
            order = torch.randperm(self.num_scenes, generator=generator).tolist()
        else:
            order = list(range(self.num_scenes))
        total = len(self) * self.dp_size
        if total > len(order):
            order += (order * math.ceil(total / len(order)))[: total - len(order)]
        return order[:total][self.dp_rank :: self.dp_size]

    def __iter__(self) -> Iterator[SampleKey]:
        order = self.order()
        if self.index >= len(order):  # a finished epoch iterated again (e.g. validation) starts over
            self.index = 0
        epoch = self.epoch
        while self.index < len(order):
            position = self.index
            self.index += 1
            yield SampleKey(order[position], epoch, position)

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` (from its first sample, unless a loaded state points inside this very epoch)."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.index = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, index = int(state["epoch"]), int(state["index"])
        if index >= len(self):  # the end of an epoch is the start of the next
            epoch, index = epoch + 1, 0
        if index < 0:
            raise ValueError(f"sampler index must be >= 0, got {index}")
        self.epoch, self.index = epoch, index

    @staticmethod
    def state_after(batch: dict[str, Any]) -> dict[str, int]:
        """The sampler state just after the samples of `batch` (a collated batch or one sample)."""
        epochs, positions = batch["epoch"], batch["position"]
        if isinstance(epochs, torch.Tensor):
            epochs, positions = epochs.tolist(), positions.tolist()
        if isinstance(epochs, int):
            epochs, positions = [epochs], [positions]
        last = max(zip(epochs, positions, strict=True))
        return {"epoch": int(last[0]), "index": int(last[1]) + 1}

    def __repr__(self) -> str:
        return (
            f"SceneSampler(scenes={self.num_scenes}, dp={self.dp_rank}/{self.dp_size}, shuffle={self.shuffle}, "
            f"epoch={self.epoch}, index={self.index})"
        )


__all__ = ["SampleKey", "SceneSampler"]
