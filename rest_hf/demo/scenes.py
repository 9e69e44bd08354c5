"""Scenes in the demo: upload checks, the built-in sample, band choices and the pictures the page shows.

Pixels for the model are read by rest_hf's `RasterSource` (inside the prediction); this module only decides
which file and bands to use and draws small RGB pictures (decimated reads, never the whole scene in memory at
full size when it is large).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SCENE_SUFFIXES",
    "SceneInfo",
    "UploadLimits",
    "blend",
    "colour_labels",
    "default_bands",
    "inspect_scene",
    "render_scene",
    "write_sample_scene",
]

SCENE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
# Longest side of the pictures in the page (the downloads are full size).
DISPLAY_SIDE = 1024


@dataclass(frozen=True)
class UploadLimits:
    """What the demo accepts: file size in bytes and scene size in pixels (both stated in the page)."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 4096 * 4096

    def describe(self) -> str:
        return (
            f"GeoTIFF, PNG or JPEG up to {self.max_bytes / 2**20:.0f} MB and "
            f"{self.max_pixels / 1e6:.1f} megapixels"
        )


@dataclass(frozen=True)
class SceneInfo:
    """What the page needs to know about a scene before predicting it."""

    path: Path
    name: str
    height: int
    width: int
    count: int
    alpha_band: int | None
    descriptions: tuple[str | None, ...]
    crs: str | None

    def band_choices(self) -> list[str]:
        """`"1"`, `"2 (nir)"`, ... for the band selector (1-based, with the file's band names)."""
        return [
            f"{i}" + (f" ({d})" if d else "") + (" (alpha)" if i == self.alpha_band else "")
            for i, d in enumerate(self.descriptions, start=1)
        ]

    def summary(self) -> str:
        where = self.crs if self.crs else "not georeferenced"
        return f"{self.name}: {self.width} x {self.height} px, {self.count} band{'s' * (self.count != 1)}, {where}"


def _clean(message: str, path: Path, name: str) -> str:
    """A library message with the server's temporary path replaced by the name the user knows."""
    return " ".join(message.replace(str(path), name).split())


def inspect_scene(path: str | Path, limits: UploadLimits, name: str | None = None) -> SceneInfo:
    """Check an uploaded (or sample) scene; ValueError with a one-line message when it cannot be used.

    Args:
        path: The file on the server (an upload in the demo's temporary folder, or a sample).
        limits: Size limits.
        name: The name the user knows the file by (default: the file name).
    """
    from ..io import RasterSource

    path = Path(path)
    name = name or path.name
    if path.suffix.lower() not in SCENE_SUFFIXES:
        raise ValueError(f"{name}: not a GeoTIFF, PNG or JPEG file (accepted: {', '.join(SCENE_SUFFIXES)})")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ValueError(
            f"{name} is {size / 2**20:.1f} MB, more than the {limits.max_bytes / 2**20:.0f} MB this demo accepts"
        )
    try:
        with RasterSource(path) as source:
            info = SceneInfo(
                path=path,
                name=name,
                height=source.height,
                width=source.width,
                count=source.count,
                alpha_band=source.alpha_band,
                descriptions=source.descriptions,
                crs=source.crs.to_string() if source.crs else None,
            )
            # Decode one small window: a file whose header opens but whose pixels are corrupt fails here.
            source.read(0, 0, min(source.height, 64), min(source.width, 64))
    except (OSError, ValueError) as error:
        raise ValueError(_clean(str(error), path, name)) from None
    if info.height * info.width > limits.max_pixels:
        raise ValueError(
            f"{name} has {info.height * info.width / 1e6:.1f} megapixels, more than the "
            f"{limits.max_pixels / 1e6:.1f} this demo predicts"
        )
    return info


def default_bands(info: SceneInfo, needed: int) -> list[int]:
    """The bands used when the user picks none: the first `needed` bands that are not alpha."""
    bands = [b for b in range(1, info.count + 1) if b != info.alpha_band]
    if len(bands) < needed:
        bands = list(range(1, info.count + 1))
    return bands[:needed]


def chosen_bands(info: SceneInfo, choices: Sequence[str] | None, needed: int) -> list[int]:
    """Band numbers from the selector's labels (`"3 (red)"` -> 3), checked against what the model needs."""
    if info.count < needed:
        raise ValueError(
            f"{info.name} has {info.count} band{'s' * (info.count != 1)} but the model needs {needed}; "
            "upload a scene with the model's bands or choose another model"
        )
    if not choices:
        return default_bands(info, needed)
    bands = [int(str(choice).split(" ", 1)[0]) for choice in choices]
    if len(bands) != needed:
        raise ValueError(
            f"the model needs {needed} bands, {len(bands)} are selected; select exactly {needed}"
        )
    if any(not 1 <= b <= info.count for b in bands):
        raise ValueError(f"{info.name} has bands 1..{info.count}")
    return bands


def write_sample_scene(path: str | Path, size: int = 256, seed: int = 0) -> Path:
    """A georeferenced synthetic RGB scene (rectangles on a noisy background, UTM 18N, 1 m pixels)."""
    import rasterio
    from affine import Affine

    from ..training.synthetic import shapes_scene

    path = Path(path)
    image, _ = shapes_scene(np.random.default_rng(seed), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32618",
        transform=Affine(1.0, 0.0, 300000.0, 0.0, -1.0, 4400000.0),
        photometric="RGB",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    return path


def _display_shape(height: int, width: int, side: int = DISPLAY_SIDE) -> tuple[int, int]:
    scale = max(height, width) / side if max(height, width) > side else 1.0
    return max(1, round(height / scale)), max(1, round(width / scale))


def render_scene(path: str | Path, bands: Sequence[int]) -> np.ndarray:
    """(h, w, 3) uint8 picture of the scene's bands (first three; one band: grey), 2-98 % stretched per band,
    invalid pixels black, at most `DISPLAY_SIDE` px on the longest side."""
    from ..io import RasterSource

    shown = list(bands[:3]) if len(bands) >= 3 else [bands[0]] * 3
    with RasterSource(path, shown) as source:
        data, valid = source.read_overview(*_display_shape(source.height, source.width))
    data = data.astype(np.float64)
    shape = valid.shape
    picture = np.zeros((*shape, 3), np.uint8)
    for channel, band in enumerate(data):
        values = band[valid]
        if values.size == 0:
            continue
        low, high = np.percentile(values, [2, 98])
        scaled = (band - low) / (high - low if high > low else 1.0)
        picture[..., channel] = np.clip(np.nan_to_num(scaled) * 255, 0, 255).astype(np.uint8)
    picture[~valid] = 0
    return picture


def colour_labels(labels_path: str | Path, palette: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """((h, w, 3) uint8 colours, (h, w) bool valid) of a label GeoTIFF, decimated like `render_scene`."""
    from ..io import RasterSource

    with RasterSource(labels_path) as finished:
        labels, valid = finished.read_overview(*_display_shape(finished.height, finished.width))
    labels = labels[0]
    lut = np.zeros((int(labels.max()) + 1 if labels.size else 1, 3), np.uint8)
    count = min(len(palette), lut.shape[0])
    lut[:count] = np.asarray(palette[:count], np.uint8).reshape(-1, 3)
    colours = lut[labels]
    colours[~valid] = 0
    return colours, valid


def blend(scene: np.ndarray, colours: np.ndarray, valid: np.ndarray, opacity: float) -> np.ndarray:
    """The label colours over the scene with `opacity` in [0, 1] (invalid pixels show the scene)."""
    opacity = float(np.clip(opacity, 0.0, 1.0))
    mixed = scene.astype(np.float32) * (1 - opacity) + colours.astype(np.float32) * opacity
    out = np.where(valid[..., None], mixed, scene.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
