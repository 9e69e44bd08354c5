"""`WholeSceneDataset`: samples that are whole scenes (or large crops), of which each process reads only its tile.

One item is one sample: a scene, or a crop window of it, possibly augmented. All the processes of a spatial
group ask for the same item (see `SceneSampler`); each draws the same augmentation (the generator is seeded by
(seed, epoch, sample index)), splits the sample with `ctx.partition` into the same tiles, and reads from disk
only the source window its own tile needs (see `rest_hf.data.geometry` for the exact mapping through scale
jitter, crop, flips and quarter turns). So P processes hold, together, exactly the sample one process would
build alone, without anyone reading the whole scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .geometry import (
    AugmentConfig,
    SampleGeometry,
    draw_geometry,
    orient,
    resample_bilinear,
    resample_nearest,
    resize_indices,
    sample_rng,
    source_box,
)
from .info import DatasetInfo
from .reading import open_raster
from .records import SceneRecord
from .sampler import SampleKey


@dataclass(frozen=True)
class _Tiles:
    """The picklable part of a `SpatialContext` the dataset needs (process groups do not pickle): the grid and
    this process's tile. DataLoader workers started with `spawn` get this instead of the context."""

    grid: tuple[int, int]
    coord: tuple[int, int]

    def partition(self, height: int, width: int, rule: Any) -> Any:
        from ..spatial.partition import TileRule

        return TileRule.of(rule).partition(height, width, self.grid, self.coord)


def _pad(array: np.ndarray | None, shape: tuple[int, ...], fill: Any, dtype: Any) -> np.ndarray:
    """`array` (the inside part of a tile) at the top-left of a `shape` array filled with `fill` (padding past
    the scene's bottom/right end); `array` itself when it already has the full shape."""
    if array is not None and array.shape == shape:
        return array.astype(dtype, copy=False)
    out = np.full(shape, fill, dtype)
    if array is not None:
        out[..., : array.shape[-2], : array.shape[-1]] = array
    return out


def _pair(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"crop_size must be a positive int or (height, width), got {size}")
    return size  # type: ignore[return-value]


class WholeSceneDataset(Dataset):
    """Whole-scene (or large-crop) segmentation samples, read tile by tile.

    Args:
        records: The scenes (`scan_layout`), already checked with `validate_records`.
        info: The dataset's `DatasetInfo` (bands to read, label mapping, ignore index, value range).
        processor: A `RestImageProcessor` (its per-band statistics normalise the pixels), or `None` to return
            raw values as float32.
        ctx: A `SpatialContext` (anything with `partition(height, width, tile_rule)`), or `None` for one process.
        crop_size: Sample size `(height, width)` (or one int); `None` gives whole scenes (batch them one by one,
            or all of one size). A scene smaller than the crop is padded (bottom/right) with invalid pixels.
        augment: An `AugmentConfig` for training; `None`: no augmentation, centred crops.
        seed: Seed of the augmentation draws (combined with the epoch and the sample index).
        tile_rule: The model's `TileRule` (or `model.config`): the tiles the model accepts. None: any tiles
            (alignment 1), for data that no model splits.

    Each item is a dict:

    - `pixel_values` (C, h, w) float32: this process's tile, normalised; 0 on nodata and padding.
    - `labels` (h, w) int64: class ids; `info.ignore_index` on nodata, padding and unknown label values.
      Absent for scenes without a label file.
    - `valid_mask` (h, w) bool: pixels that hold data.
    - `box` (top, left, height, width): the tile in sample coordinates; `sample_size` (H, W) of the sample.
    - `name`, `index`, `epoch`, `position` (the sampler position, for resuming), `geometry` (the drawn
      parameters as a dict, identical on every process of the group).

    Items may be requested by index (using `set_epoch`'s epoch) or by the `SampleKey` a `SceneSampler` yields.
    """

    def __init__(
        self,
        records: Sequence[SceneRecord],
        info: DatasetInfo,
        processor: Any = None,
        ctx: Any = None,
        crop_size: int | Sequence[int] | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        tile_rule: Any = None,
    ) -> None:
        self.records = list(records)
        if not self.records:
            raise ValueError("WholeSceneDataset needs at least one scene")
        self.info = info
        self.processor = processor
        self.ctx = ctx
        self.crop_size = _pair(crop_size)
        self.augment = augment
        self.seed = int(seed)
        from ..spatial.partition import TileRule  # the spatial package imports the model: only when used

        self.tile_rule = TileRule() if tile_rule is None else TileRule.of(tile_rule)
        self.epoch = 0
        if processor is not None and getattr(processor, "do_normalize", True):
            bands = len(processor.image_mean)
            if bands != info.num_bands:
                raise ValueError(
                    f"the image processor normalises {bands} bands but dataset {info.name!r} has {info.num_bands}; "
                    "use a processor with one mean/std per band (see compute_band_statistics)"
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        ctx = state.get("ctx")
        if ctx is not None and hasattr(ctx, "grid") and hasattr(ctx, "coord"):
            state["ctx"] = _Tiles(tuple(ctx.grid), tuple(ctx.coord))
        return state

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for items requested by a plain index (a `SampleKey` carries its own)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------------------------------------ geometry
    def _key(self, key: int | SampleKey | Sequence[int]) -> tuple[int, int, int]:
        if isinstance(key, (int, np.integer)):
            index, epoch, position = int(key), self.epoch, -1
        else:
            parts = tuple(int(v) for v in key)
            index, epoch = parts[0], parts[1]
            position = parts[2] if len(parts) > 2 else -1
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample index {index} is out of range for {len(self)} scenes")
        return index % len(self), epoch, position

    def geometry(
        self, key: int | SampleKey | Sequence[int], scene_size: tuple[int, int] | None = None
    ) -> SampleGeometry:
        """The sample's geometry and photometric parameters (the same on every process)."""
        index, epoch, _ = self._key(key)
        if scene_size is None:
            with open_raster(self.records[index].image, self.info.bands, self.info.mask_alpha) as source:
                scene_size = (source.height, source.width)
        rng = sample_rng(self.seed, epoch, index) if self.augment is not None else None
        return draw_geometry(
            scene_size, self.crop_size, self.augment, rng, self.info.value_range, self.info.num_bands
        )

    def tile_box(self, sample_size: tuple[int, int], name: str = "") -> tuple[int, int, int, int]:
        """This process's tile (top, left, height, width) of a sample of `sample_size`."""
        height, width = sample_size
        if self.ctx is None:
            return 0, 0, height, width
        try:
            part = self.ctx.partition(height, width, self.tile_rule)
        except ValueError as error:
            raise ValueError(
                f"sample {name + ' ' if name else ''}of {height}x{width} px cannot be split over grid "
                f"{getattr(self.ctx, 'grid', '?')}: {error}"
            ) from None
        box = part.box()
        return int(box.top), int(box.left), int(box.height), int(box.width)

    # ---------------------------------------------------------------------------------------------- reading
    def __getitem__(self, key: int | SampleKey | Sequence[int]) -> dict[str, Any]:
        index, epoch, position = self._key(key)
        record = self.records[index]
        info = self.info
        with open_raster(record.image, info.bands, info.mask_alpha) as image_source:
            if image_source.count != info.num_bands:
                raise ValueError(
                    f"{record.image} gives {image_source.count} bands, dataset {info.name!r} needs {info.num_bands}"
                )
            scene = (image_source.height, image_source.width)
            geometry = self.geometry((index, epoch), scene)
            box = self.tile_box(geometry.sample_size, record.name)
            top, left, height, width = source_box(box, geometry)
            rows = resize_indices(
                geometry.crop_top + top, geometry.crop_top + top + height, scene[0], geometry.resized_size[0]
            )
            cols = resize_indices(
                geometry.crop_left + left,
                geometry.crop_left + left + width,
                scene[1],
                geometry.resized_size[1],
            )
            inside = rows.inside > 0 and cols.inside > 0
            window = (
                rows.read_start,
                cols.read_start,
                rows.read_stop - rows.read_start,
                cols.read_stop - cols.read_start,
            )
            image = valid = None
            if inside:
                raw, valid = image_source.read_masked(*window)
                image = raw.astype(np.float32)
                # Nodata pixels become 0 before any resize, so they never leak into their neighbours.
                np.copyto(image, 0.0, where=~valid[None])
                if geometry.resized:
                    image, valid = resample_bilinear(image, rows, cols), resample_nearest(valid, rows, cols)
                # (without a resize, the window read is exactly the inside part of the tile)
            image = _pad(image, (info.num_bands, height, width), 0.0, np.float32)
            valid = _pad(valid, (height, width), False, bool)
        labels = None
        if record.label is not None:
            if inside:
                with open_raster(record.label, mask_alpha=False) as label_source:
                    if (label_source.height, label_source.width) != scene:
                        raise ValueError(
                            f"label {record.label} is {label_source.height}x{label_source.width} px but image "
                            f"{record.image} is {scene[0]}x{scene[1]} px; run validate_records before training"
                        )
                    raw_labels = label_source.read(*window)
                if geometry.resized:
                    raw_labels = resample_nearest(raw_labels, rows, cols)
                labels = info.map_labels(raw_labels)
            labels = _pad(labels, (height, width), info.ignore_index, np.int64)
            labels[~valid] = info.ignore_index

        image = self._photometric(image, geometry)
        image, valid = orient(image, geometry), orient(valid, geometry)
        pixel_values = self._normalize(image, valid)
        sample: dict[str, Any] = {
            "pixel_values": torch.from_numpy(pixel_values),
            "valid_mask": torch.from_numpy(valid),
            "box": tuple(int(v) for v in box),
            "sample_size": tuple(int(v) for v in geometry.sample_size),
            "name": record.name,
            "index": index,
            "epoch": epoch,
            "position": position,
            "geometry": geometry.as_dict(),
        }
        if labels is not None:
            sample["labels"] = torch.from_numpy(orient(labels, geometry))
        return sample

    def _photometric(self, image: np.ndarray, geometry: SampleGeometry) -> np.ndarray:
        """Brightness, contrast, saturation: per pixel, so a tile gets exactly its part of the whole sample."""
        if geometry.brightness == 0.0 and geometry.contrast == 1.0 and geometry.saturation == 1.0:
            return image
        if geometry.brightness != 0.0:
            image = image + np.float32(geometry.brightness)
        if geometry.contrast != 1.0:
            image = image * np.float32(geometry.contrast)
        if geometry.saturation != 1.0 and image.shape[0] == 3:
            gray = (
                np.float32(0.299) * image[0] + np.float32(0.587) * image[1] + np.float32(0.114) * image[2]
            )[None]
            image = gray + np.float32(geometry.saturation) * (image - gray)
        if self.info.clip_range:
            image = np.clip(image, 0.0, np.float32(self.info.value_range))
        return image.astype(np.float32, copy=False)

    def _normalize(self, image: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if self.processor is None:
            out = image.astype(np.float32, copy=True)
            out[:, ~valid] = 0.0
            return out
        from ..io import normalize_with_processor

        return normalize_with_processor(image, self.processor, valid_mask=valid)

    def __repr__(self) -> str:
        return (
            f"WholeSceneDataset({len(self)} scenes of {self.info.name!r}, crop_size={self.crop_size}, "
            f"augment={'on' if self.augment else 'off'}, grid={getattr(self.ctx, 'grid', (1, 1))})"
        )


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples of one spatial tile layout: tensors are stacked, the rest listed.

    Every sample of a batch must have the same `sample_size` (hence the same tile); whole scenes of different
    sizes need `batch_size=1` or a `crop_size`.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    sizes = {s["sample_size"] for s in samples}
    if len(sizes) > 1:
        raise ValueError(
            f"samples of one batch have different sizes {sorted(sizes)}: whole scenes of different sizes cannot be "
            "stacked; use batch_size=1 or set crop_size"
        )
    has_labels = {"labels" in s for s in samples}
    if len(has_labels) > 1:
        raise ValueError(
            "a batch mixes labelled and unlabelled scenes; keep unlabelled scenes in their own split"
        )
    batch: dict[str, Any] = {
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
        "valid_mask": torch.stack([s["valid_mask"] for s in samples]),
        "box": samples[0]["box"],
        "sample_size": samples[0]["sample_size"],
        "name": [s["name"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples]),
        "epoch": torch.tensor([s["epoch"] for s in samples]),
        "position": torch.tensor([s["position"] for s in samples]),
        "geometry": [s["geometry"] for s in samples],
    }
    if has_labels == {True}:
        batch["labels"] = torch.stack([s["labels"] for s in samples])
    return batch


__all__ = ["WholeSceneDataset", "collate_samples"]
