"""Per-band normalisation statistics of a dataset (WHU-OHS and other multi- or hyperspectral data)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .info import DatasetInfo
from .reading import open_raster
from .records import SceneRecord


def compute_band_statistics(
    records: Sequence[SceneRecord],
    info: DatasetInfo,
    max_scenes: int = 32,
    window: int = 512,
    windows_per_scene: int = 4,
    seed: int = 0,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and standard deviation of the valid pixels (raw scale), from sampled windows.

    Up to `max_scenes` scenes spread over `records` are visited; from each, `windows_per_scene` random windows
    of `window` px (the whole scene when it is small). Nodata, NaN and alpha-masked pixels are left out.
    Deterministic for a given `seed`. Use the result as `info.replace(image_mean=mean, image_std=std)` and in
    the model's `RestImageProcessor(image_mean=mean, image_std=std)`.
    """
    if not records:
        raise ValueError("compute_band_statistics needs at least one scene")
    rng = np.random.default_rng(seed)
    total = np.zeros(info.num_bands, np.float64)
    total_sq = np.zeros(info.num_bands, np.float64)
    count = 0
    step = max(1, len(records) // max_scenes)
    for record in list(records)[::step][:max_scenes]:
        with open_raster(record.image, info.bands, info.mask_alpha) as source:
            height, width = source.height, source.width
            if height * width <= window * window * windows_per_scene:
                windows = [(0, 0, height, width)]
            else:
                h, w = min(window, height), min(window, width)
                windows = [
                    (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
                    for _ in range(windows_per_scene)
                ]
            for top, left, h, w in windows:
                data, valid = source.read_masked(top, left, h, w)
                pixels = data.reshape(data.shape[0], -1)[:, valid.ravel()].astype(np.float64)
                total += pixels.sum(axis=1)
                total_sq += (pixels * pixels).sum(axis=1)
                count += pixels.shape[1]
    if count == 0:
        raise ValueError(
            f"no valid pixels found in the sampled scenes of {info.name!r}; check the nodata values"
        )
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant band: leave it unscaled rather than divide by zero
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


__all__ = ["compute_band_statistics"]
