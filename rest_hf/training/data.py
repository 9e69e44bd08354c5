"""Training and validation data of a run, and the up-front checks on them.

Training samples are `WholeSceneDataset` items (a crop or the whole scene, augmented the same way on every
process of a spatial group), ordered by a `SceneSampler`. Validation samples are whole scenes through the same
spatial path; a scene larger than `eval_window` is cut into non-overlapping windows of that size (padded past
the scene's end with ignored pixels), each still split over the grid. That is windowed, not sliding,
evaluation: set `eval_window` only when a whole validation scene does not fit in the group's memory. A scene
too small to be split over the grid is padded (bottom/right, ignored pixels) to the smallest size that splits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader

from ..data import (
    AugmentConfig,
    DatasetInfo,
    SceneRecord,
    SceneSampler,
    WholeSceneDataset,
    collate_samples,
    compute_band_statistics,
    dataset_info,
    resolve_dataset_root,
    scan_layout,
    validate_records,
)
from ..data.geometry import SampleGeometry
from ..data.reading import open_raster
from ..distributed import one_line, run_on_main
from ..spatial import TileRule
from .config import TrainConfig


@dataclass
class RunData:
    """The scenes of a run, checked: dataset root, `DatasetInfo` (with normalisation statistics), records and
    scene sizes of both splits."""

    root: str
    info: DatasetInfo
    train: list[SceneRecord]
    train_sizes: list[tuple[int, int]]
    val: list[SceneRecord]
    val_sizes: list[tuple[int, int]]


def scene_sizes(records: Sequence[SceneRecord], info: DatasetInfo) -> list[tuple[int, int]]:
    """(height, width) of every scene, from the file headers."""
    sizes = []
    for record in records:
        with open_raster(record.image, info.bands, info.mask_alpha) as source:
            sizes.append((int(source.height), int(source.width)))
    return sizes


def load_run_data(config: TrainConfig) -> RunData:
    """Find, scan and validate the dataset (collective: the checks run once, every process gets the result).

    Raises:
        ValueError: on every process, naming every bad file (`validate_records`) or the layout mismatch.
    """
    root = run_on_main(lambda: str(resolve_dataset_root(config.dataset)))
    layout, train_split, val_split = config.layout, config.train_split, config.val_split

    def check() -> tuple[Any, ...]:
        info = dataset_info(layout, root, train_split)
        train = scan_layout(root, layout, train_split)
        validate_records(train, info)
        val = scan_layout(root, layout, val_split) if val_split else []
        if config.max_eval_scenes:
            val = val[: config.max_eval_scenes]
        if val:
            validate_records(val, info)
        stats = None
        if info.image_mean is None or info.image_std is None:
            stats = compute_band_statistics(train, info, seed=config.seed)
        return train, scene_sizes(train, info), val, scene_sizes(val, info), stats

    train, train_sizes, val, val_sizes, stats = run_on_main(check)
    info = dataset_info(layout, root, train_split)
    if stats is not None:
        info = info.replace(image_mean=tuple(stats[0]), image_std=tuple(stats[1]))
    return RunData(root, info, train, train_sizes, val, val_sizes)


def augment_config(name: str, num_bands: int) -> AugmentConfig:
    """`rest` (the paper's pipeline), `nadir` (plus vertical flips and quarter turns) or `none`."""
    if name == "rest":
        return AugmentConfig.rest_recipe(num_bands)
    if name == "nadir":
        return (
            AugmentConfig()
            if num_bands == 3
            else AugmentConfig(contrast=None, saturation=None, brightness=0.0)
        )
    return AugmentConfig.none()


def check_grid_fits(
    size: tuple[int, int], grid: tuple[int, int], rule: TileRule, what: str, fix: str
) -> None:
    """Raise a `ValueError` naming `what`, the sizes that would work and `fix` when the model's `rule` cannot
    split `size` over `grid`."""
    for length, parts, axis in ((size[0], grid[0], "tall"), (size[1], grid[1], "wide")):
        need = rule.smallest_split(parts)
        if length < need:
            raise ValueError(
                f"{what} of {size[0]}x{size[1]} px cannot be split over grid {grid[0]}x{grid[1]} (tiles aligned to "
                f"{rule.alignment} px, at least {rule.min_tile} px each); {fix} (at least {need} px {axis} for "
                f"{parts} tiles)"
            )


def check_training_samples(
    config: TrainConfig, data: RunData, rule: TileRule, augment: AugmentConfig
) -> None:
    """The training samples split over the grid: the crop, or every whole scene at the smallest scale."""
    grid = config.grid_shape
    crop = config.crop_shape
    if crop is not None:
        check_crop_fits_scenes(crop, data.train_sizes)
        check_grid_fits(crop, grid, rule, "crop_size", "use a larger crop_size or a smaller grid")
        return
    low = augment.scale_range[0] if augment.scale_range else 1.0
    for record, (height, width) in zip(data.train, data.train_sizes, strict=True):
        size = (max(1, round(height * low)), max(1, round(width * low)))
        if augment.rotate90:
            size = (min(size), min(size))
        check_grid_fits(
            size,
            grid,
            rule,
            f"whole training scene {record.name} (at scale {low})",
            "set crop_size, a smaller grid, or a scale range that keeps scenes large enough",
        )


def check_crop_fits_scenes(crop: tuple[int, int], sizes: Sequence[tuple[int, int]]) -> None:
    """Refuse a crop (height, width) larger than every training scene (of `sizes`, (height, width) each).

    Such a crop is mostly padding on every sample: it costs the memory and time of the crop (4096 px crops of
    128 px scenes ran at 4.3 GB without making a step) and trains on a scene-sized corner of it. The scenes
    are compared at their native size (scale 1), which is what a crop is measured against in the paper's
    recipes; the message names the largest crop that fits at least one scene.
    """
    if not sizes or any(height >= crop[0] and width >= crop[1] for height, width in sizes):
        return
    fits = [(min(crop[0], height), min(crop[1], width)) for height, width in sizes]
    best = max(fits, key=lambda size: (size[0] * size[1], size))
    largest = max(sizes, key=lambda size: (size[0] * size[1], size))
    raise ValueError(
        f"--crop_size {_size_text(crop)} is larger than every training scene (the largest is {largest[0]} x "
        f"{largest[1]} px); use --crop_size {_size_text(best)} or less"
    )


def _size_text(size: tuple[int, int]) -> str:
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def check_batch_size(config: Any, batch_size: int) -> None:
    """UperNet's BatchNorm after the 1x1 pyramid pooling sees one value per sample: training needs two."""
    if batch_size < 2 and 1 in config.pool_scales and config.decoder_variant == "upernet":
        raise ValueError(
            f"batch_size {batch_size} cannot train the UperNet decoder: the BatchNorm after its 1x1 pyramid pooling "
            "needs at least 2 values per channel in training mode; use batch_size >= 2"
        )


class UnreadableSceneError(RuntimeError):
    """A scene that passed the up-front checks cannot be read while training (damaged pixel data, a file that
    was removed or replaced): one line naming the files and the reason."""

    def __init__(self, message: str) -> None:
        # torch's DataLoader re-raises a worker's exception as `type(error)(text)`, where `text` holds the
        # worker's traceback and ends with "<module>.UnreadableSceneError: <message>": keep only that message.
        if "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


class NamesUnreadableScenes:
    """Mixin for `WholeSceneDataset` subclasses: a sample that cannot be read raises `UnreadableSceneError`."""

    def __getitem__(self, key: Any) -> dict[str, Any]:
        try:
            return super().__getitem__(key)  # type: ignore[misc]
        except IndexError:
            raise
        except Exception as error:
            record = self.records[self._key(key)[0]]  # type: ignore[attr-defined]
            files = record.image if record.label is None else f"{record.image} (labels {record.label})"
            raise UnreadableSceneError(
                f"cannot read scene {record.name} of split {record.split!r}: {files}: {one_line(error)}; "
                "the file changed or is damaged since the checks at the start, replace it or leave it out"
            ) from None


class TrainingSceneDataset(NamesUnreadableScenes, WholeSceneDataset):
    """The training samples: `WholeSceneDataset` items whose read errors name the scene."""


class WindowedSceneDataset(NamesUnreadableScenes, WholeSceneDataset):
    """Validation samples: whole scenes, or non-overlapping `window` x `window` pieces of larger scenes.

    Items are plain indices; no augmentation. Scenes smaller than `min_size` are padded to it (ignored pixels).
    """

    def __init__(
        self,
        records: Sequence[SceneRecord],
        sizes: Sequence[tuple[int, int]],
        info: DatasetInfo,
        processor: Any,
        ctx: Any,
        window: int | None,
        rule: TileRule,
        min_size: tuple[int, int] = (1, 1),
    ) -> None:
        pieces, piece_records = [], []
        for record, (height, width) in zip(records, sizes, strict=True):
            if window is None or (height <= window and width <= window):
                boxes = [(0, 0, height, width)]
            else:
                starts = [(top, left) for top in range(0, height, window) for left in range(0, width, window)]
                boxes = [(top, left, window, window) for top, left in starts]
            for top, left, h, w in boxes:
                piece_records.append(record)
                pieces.append(((height, width), top, left, (max(h, min_size[0]), max(w, min_size[1]))))
        super().__init__(piece_records, info, processor, ctx, tile_rule=rule)
        self.pieces = pieces

    def geometry(self, key: Any, scene_size: tuple[int, int] | None = None) -> SampleGeometry:
        index = int(key if isinstance(key, int) else key[0]) % len(self.pieces)
        size, top, left, window = self.pieces[index]
        return SampleGeometry(
            scene_size=size, resized_size=size, crop_top=top, crop_left=left, window_size=window
        )


def build_loaders(
    config: TrainConfig, data: RunData, processor: Any, ctx: Any, rule: TileRule
) -> tuple[DataLoader, SceneSampler, DataLoader | None]:
    """Training loader (with its `SceneSampler`, for resuming) and validation loader (`None` without a split).

    The loaders are not passed to `accelerator.prepare`: it would replace the sampler with one that shards
    batches over every process, while the processes of a spatial group must read the same samples.
    """
    augment = augment_config(config.augment, data.info.num_bands)
    check_training_samples(config, data, rule, augment)
    train_set = TrainingSceneDataset(
        data.train,
        data.info,
        processor,
        ctx,
        crop_size=config.crop_shape,
        augment=augment,
        seed=config.seed,
        tile_rule=rule,
    )
    sampler = SceneSampler(train_set, ctx, shuffle=True, seed=config.seed)
    if len(sampler) < config.batch_size:
        raise ValueError(
            f"{len(data.train)} training scenes give each of the {ctx.dp_size} data-parallel groups {len(sampler)} "
            f"per epoch, fewer than batch_size {config.batch_size}; use a smaller batch_size or more scenes"
        )
    workers = dict(num_workers=config.num_workers, persistent_workers=config.num_workers > 0)
    # drop_last: a last batch of one sample would break UperNet's BatchNorm, and every group must step together.
    train_loader = DataLoader(
        train_set, config.batch_size, sampler=sampler, collate_fn=collate_samples, drop_last=True, **workers
    )
    if not data.val:
        return train_loader, sampler, None
    grid = config.grid_shape
    min_size = rule.padded_size(1, 1, grid)
    window = config.eval_window
    if window is not None:
        check_grid_fits((window, window), grid, rule, "eval_window", "use a larger eval_window")
    val_set = WindowedSceneDataset(
        data.val, data.val_sizes, data.info, processor, ctx, window, rule, min_size
    )
    # Each data-parallel group validates its own share of the scenes (none twice: the confusion matrices add).
    indices = list(range(ctx.dp_rank, len(val_set), ctx.dp_size))
    val_loader = DataLoader(val_set, 1, sampler=indices, collate_fn=collate_samples, **workers)
    return train_loader, sampler, val_loader


def batches_forever(loader: DataLoader, sampler: SceneSampler) -> Iterator[dict[str, Any]]:
    """Training batches epoch after epoch, starting at the sampler's (possibly resumed) position."""
    while True:
        yield from loader
        sampler.set_epoch(sampler.epoch + 1)


__all__ = [
    "RunData",
    "batches_forever",
    "TrainingSceneDataset",
    "UnreadableSceneError",
    "WindowedSceneDataset",
    "augment_config",
    "build_loaders",
    "check_batch_size",
    "check_crop_fits_scenes",
    "check_grid_fits",
    "check_training_samples",
    "load_run_data",
    "scene_sizes",
]
