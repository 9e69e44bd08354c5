"""Geometry of one augmented sample, and how each process finds the source pixels of its own tile.

A sample is built from its scene in this order (the same order on every process):

1. **scale**: the whole scene (H, W) is resized to (Hs, Ws) = (round(H*s), round(W*s)): bilinear
   (align_corners=False, PyTorch's convention) for the image, nearest (pixel centres, PyTorch's
   ``nearest-exact``) for labels and the valid mask;
2. **crop**: a window R of the resized scene, at (crop_top, crop_left); rows or columns of R past the resized
   scene's end are padding (image 0 and invalid, label `ignore_index`), as mmseg pads bottom/right;
3. **flip**: horizontal and/or vertical flip of R;
4. **rotate**: ``np.rot90`` by k quarter turns (counter-clockwise) on the last two axes, giving the sample S.

Each process holds one tile (a box) of S. Flips and quarter turns only permute pixels, so the tile of S is the
flipped/rotated image of one box of R (`source_box`); the resize is computed per output pixel from **global**
coordinates (`resize_indices`), reading only the source rows and columns that pixel needs (a halo of one source
pixel at most). So the tiles of any grid reassemble the one-process sample exactly, bit for bit: every output
pixel is computed by the same arithmetic whichever process computes it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training samples. Every random choice is drawn once per sample, from a generator
    seeded by (seed, epoch, sample index), so every process of a spatial group draws the same.

    The defaults suit nadir imagery (any orientation is plausible: vertical flips and quarter turns too);
    `AugmentConfig.rest_recipe()` is the paper's pipeline (better for UAVid's oblique views).

    Attributes:
        random_crop: Place the crop window at random (otherwise centred).
        hflip: Probability of a horizontal flip.
        vflip: Probability of a vertical flip.
        rotate90: Rotate by a uniformly drawn multiple of 90 degrees. With a non-square `crop_size` the crop
            window is drawn transposed for odd turns, so the sample keeps its size.
        scale_range: Scale jitter factor range `(low, high)` relative to the native resolution (log-uniform),
            or `None`. REST's recipe uses (0.5, 2.0) (mmseg's RandomResize ratio range on crops at native
            resolution).
        brightness: Additive brightness jitter, as a fraction of the dataset's `value_range` (32/255 = mmseg's
            PhotoMetricDistortion delta).
        contrast: Multiplicative contrast range, or `None`.
        saturation: Saturation range (3-band images only), or `None`.
        photometric_prob: Probability of applying each photometric jitter.
    """

    random_crop: bool = True
    hflip: float = 0.5
    vflip: float = 0.5
    rotate90: bool = True
    scale_range: tuple[float, float] | None = (0.5, 2.0)
    brightness: float = 32 / 255
    contrast: tuple[float, float] | None = (0.5, 1.5)
    saturation: tuple[float, float] | None = (0.5, 1.5)
    photometric_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.scale_range is not None:
            low, high = self.scale_range
            if not 0 < low <= high:
                raise ValueError(
                    f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}"
                )
        for name in ("hflip", "vflip", "photometric_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")

    @classmethod
    def rest_recipe(cls, num_bands: int = 3) -> AugmentConfig:
        """The REST paper's training pipeline (its mmseg configs): scale 0.5-2.0, random crop, horizontal flip
        with probability 0.5, photometric distortion (each jitter with probability 0.5; not for hyperspectral
        data, as in its WHU-OHS configs). Hue jitter is not reproduced."""
        photometric = num_bands == 3
        return cls(
            hflip=0.5,
            vflip=0.0,
            rotate90=False,
            scale_range=(0.5, 2.0),
            brightness=32 / 255 if photometric else 0.0,
            contrast=(0.5, 1.5) if photometric else None,
            saturation=(0.5, 1.5) if photometric else None,
        )

    @classmethod
    def none(cls) -> AugmentConfig:
        """No random change except the crop position."""
        return cls(hflip=0.0, vflip=0.0, rotate90=False, scale_range=None, brightness=0.0, contrast=None,
                   saturation=None)  # fmt: skip


@dataclass(frozen=True)
class SampleGeometry:
    """Everything that defines one sample of one scene (identical on every process of a spatial group).

    Attributes:
        scene_size: (H, W) of the source scene.
        resized_size: (Hs, Ws) of the scene after scale jitter (== scene_size without it).
        crop_top, crop_left: Top-left corner of the window R in the resized scene.
        window_size: (hR, wR) of R (before the quarter turns).
        hflip, vflip: Flips of R.
        rot90: Counter-clockwise quarter turns applied last.
        brightness: Additive change in raw value units (0: none).
        contrast: Multiplicative change (1: none).
        saturation: Saturation factor (1: none).
    """

    scene_size: tuple[int, int]
    resized_size: tuple[int, int]
    crop_top: int
    crop_left: int
    window_size: tuple[int, int]
    hflip: bool = False
    vflip: bool = False
    rot90: int = 0
    brightness: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sample_size(self) -> tuple[int, int]:
        """(height, width) of the sample S."""
        h, w = self.window_size
        return (w, h) if self.rot90 % 2 else (h, w)

    @property
    def resized(self) -> bool:
        return tuple(self.resized_size) != tuple(self.scene_size)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extras")
        return out


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: the same (seed, epoch, index) gives the same draws on every process."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def draw_geometry(
    scene_size: tuple[int, int],
    crop_size: tuple[int, int] | None,
    augment: AugmentConfig | None,
    rng: np.random.Generator | None,
    value_range: float = 255.0,
    bands: int = 3,
) -> SampleGeometry:
    """Draw the geometry and photometric parameters of one sample (always in the same order)."""
    height, width = int(scene_size[0]), int(scene_size[1])
    if augment is None or rng is None:
        augment, rng = None, None
    scale = 1.0
    hflip = vflip = False
    k = 0
    if augment is not None:
        if augment.scale_range is not None:
            low, high = augment.scale_range
            scale = float(math.exp(rng.uniform(math.log(low), math.log(high)))) if high > low else float(low)
        hflip = bool(rng.random() < augment.hflip)
        vflip = bool(rng.random() < augment.vflip)
        k = int(rng.integers(0, 4)) if augment.rotate90 else 0
    resized = (max(1, round(height * scale)), max(1, round(width * scale)))
    if crop_size is None:
        window = resized
    else:
        ch, cw = int(crop_size[0]), int(crop_size[1])
        window = (cw, ch) if k % 2 else (ch, cw)  # R is drawn transposed so that S = rot90(R) is (ch, cw)
    slack_h, slack_w = max(0, resized[0] - window[0]), max(0, resized[1] - window[1])
    if augment is not None and augment.random_crop:
        top, left = int(rng.integers(0, slack_h + 1)), int(rng.integers(0, slack_w + 1))
    else:
        top, left = slack_h // 2, slack_w // 2
    brightness, contrast, saturation = 0.0, 1.0, 1.0
    if augment is not None:
        p = augment.photometric_prob
        draw_b, draw_c, draw_s = rng.random(3) < p
        value_b = rng.uniform(-1.0, 1.0)
        value_c = rng.uniform(*(augment.contrast or (1.0, 1.0)))
        value_s = rng.uniform(*(augment.saturation or (1.0, 1.0)))
        if draw_b and augment.brightness:
            brightness = float(value_b * augment.brightness * value_range)
        if draw_c and augment.contrast is not None:
            contrast = float(value_c)
        if draw_s and augment.saturation is not None and bands == 3:
            saturation = float(value_s)
    return SampleGeometry(
        scene_size=(height, width),
        resized_size=resized,
        crop_top=top,
        crop_left=left,
        window_size=window,
        hflip=hflip,
        vflip=vflip,
        rot90=k,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
    )


# ----------------------------------------------------------------------------------------------------------------
# Flips and quarter turns


def source_box(box: tuple[int, int, int, int], geometry: SampleGeometry) -> tuple[int, int, int, int]:
    """The box (top, left, height, width) of the window R whose flipped/rotated pixels form `box` of the sample."""
    t, l, h, w = box  # noqa: E741
    h_r, w_r = geometry.window_size  # F (R after the flips) has R's shape
    k = geometry.rot90 % 4
    if k == 0:
        top, left, height, width = t, l, h, w
    elif k == 1:  # S[i, j] = F[j, wF - 1 - i]
        top, left, height, width = l, w_r - t - h, w, h
    elif k == 2:  # S[i, j] = F[hF - 1 - i, wF - 1 - j]
        top, left, height, width = h_r - t - h, w_r - l - w, h, w
    else:  # S[i, j] = F[hF - 1 - j, i]
        top, left, height, width = h_r - l - w, t, w, h
    if geometry.hflip:
        left = w_r - left - width
    if geometry.vflip:
        top = h_r - top - height
    return top, left, height, width


def orient(array: np.ndarray, geometry: SampleGeometry) -> np.ndarray:
    """Apply the flips, then the quarter turns, to the last two axes of a box of R (a contiguous copy)."""
    if geometry.hflip:
        array = array[..., :, ::-1]
    if geometry.vflip:
        array = array[..., ::-1, :]
    if geometry.rot90 % 4:
        array = np.rot90(array, geometry.rot90 % 4, axes=(-2, -1))
    return np.ascontiguousarray(array)


# ----------------------------------------------------------------------------------------------------------------
# Resizing with global coordinates


@dataclass(frozen=True)
class AxisPlan:
    """How the output positions [start, stop) of the resized axis are computed from the source axis.

    `inside` output positions (a prefix; the rest lies past the resized scene's end: padding) take
    ``(1 - weight) * src[lo] + weight * src[hi]`` (bilinear) and ``src[nearest]`` (labels); `read` is the
    source range [read_start, read_stop) that covers them.
    """

    inside: int
    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray
    nearest: np.ndarray
    read_start: int
    read_stop: int


def resize_indices(start: int, stop: int, source_length: int, resized_length: int) -> AxisPlan:
    """Source indices and weights of output positions [start, stop) of an axis resized source -> resized.

    Bilinear: source coordinate ``(y + 0.5) * source / resized - 0.5`` clamped at 0 (align_corners=False, as
    `torch.nn.functional.interpolate`); nearest: ``floor((y + 0.5) * source / resized)`` (``nearest-exact``).
    Computed in float64 from the global position `y`, so any split of the axis gives the same values.
    """
    stop_inside = max(start, min(stop, resized_length))
    positions = np.arange(start, stop_inside, dtype=np.float64)
    ratio = source_length / resized_length
    if resized_length == source_length:
        idx = positions.astype(np.int64)
        lo, hi, weight, nearest = idx, idx, np.zeros(len(idx), np.float32), idx
    else:
        coordinate = np.maximum((positions + 0.5) * ratio - 0.5, 0.0)
        lo = np.minimum(np.floor(coordinate).astype(np.int64), source_length - 1)
        hi = np.minimum(lo + 1, source_length - 1)
        weight = (coordinate - lo).astype(np.float32)
        weight[lo == source_length - 1] = 0.0
        nearest = np.minimum(np.floor((positions + 0.5) * ratio).astype(np.int64), source_length - 1)
    if len(positions):
        read_start = int(min(lo.min(), nearest.min()))
        read_stop = int(max(hi.max(), nearest.max())) + 1
    else:
        read_start = read_stop = 0
    return AxisPlan(len(positions), lo, hi, weight, nearest, read_start, read_stop)


def _bilinear_axis(array: np.ndarray, plan: AxisPlan, axis: int) -> np.ndarray:
    lo = plan.lo - plan.read_start
    hi = plan.hi - plan.read_start
    a = np.take(array, lo, axis=axis)
    if not plan.weight.any():
        return a
    b = np.take(array, hi, axis=axis)
    shape = [1] * array.ndim
    shape[axis] = -1
    weight = plan.weight.reshape(shape)
    return a * (np.float32(1.0) - weight) + b * weight


def resample_bilinear(window: np.ndarray, rows: AxisPlan, cols: AxisPlan) -> np.ndarray:
    """Bilinear values (float32) of the `inside` output pixels from a source `window` (..., h, w) that starts at
    (rows.read_start, cols.read_start). Rows first, then columns, the same on every process."""
    out = _bilinear_axis(window.astype(np.float32, copy=False), rows, -2)
    return _bilinear_axis(out, cols, -1)


def resample_nearest(window: np.ndarray, rows: AxisPlan, cols: AxisPlan) -> np.ndarray:
    """Nearest values of the `inside` output pixels (labels, masks) from a source `window` (..., h, w)."""
    out = np.take(window, rows.nearest - rows.read_start, axis=-2)
    return np.take(out, cols.nearest - cols.read_start, axis=-1)


def resize_whole(array: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resize a whole (..., H, W) array with the rules above (the reference the tiles are checked against)."""
    rows = resize_indices(0, size[0], array.shape[-2], size[0])
    cols = resize_indices(0, size[1], array.shape[-1], size[1])
    if mode == "bilinear":
        return resample_bilinear(array, rows, cols)
    if mode == "nearest":
        return resample_nearest(array, rows, cols)
    raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")


__all__ = [
    "AugmentConfig",
    "AxisPlan",
    "SampleGeometry",
    "draw_geometry",
    "orient",
    "resample_bilinear",
    "resample_nearest",
    "resize_indices",
    "resize_whole",
    "sample_rng",
    "source_box",
]
