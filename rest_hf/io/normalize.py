"""Per-band normalisation of raw raster windows into model input, consistent with RestImageProcessor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .reader import valid_mask_from_array

__all__ = ["normalize", "normalize_with_processor"]


def normalize(
    array: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    rescale_factor: float | None = None,
    *,
    nodata: float | Sequence[float | None] | None = None,
    valid_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Per band c: `(x * rescale_factor - mean[c]) / std[c]` as float32 (no rescaling when `rescale_factor` is None).

    The arithmetic is `rest_hf.models.image_processing_rest.normalize_bands`, the one `RestImageProcessor`
    uses, so a window normalised here equals the same pixels normalised by the processor.

    A pixel that is NaN or equals the band's `nodata` in ANY band, is not finite after normalisation, or lies
    where `valid_mask` is False is set to 0 (the normalised dataset mean) in EVERY band, AFTER normalisation
    (the same pixels `RasterSource.valid_mask` calls invalid). Why: such pixels
    carry no information and are written as nodata in the outputs anyway, but a single NaN would otherwise
    spread through every convolution halo and, via the whole-scene interaction attention, into every valid
    pixel of the scene; 0 is the most neutral finite value.

    Args:
        array: (C, h, w) raw pixels (any numeric dtype); (h, w) is taken as one band.
        mean, std: one value per band (on the scale after rescaling).
        rescale_factor: e.g. 1/255, or None for no rescaling.
        nodata: the raster's nodata value (one for all bands, or one per band); None: only NaN is invalid.
        valid_mask: optional (h, w) bool; False pixels are zeroed in every band.
    """
    from ..models.image_processing_rest import normalize_bands  # the processor's arithmetic, imported late

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {array.shape}")
    count = array.shape[0]
    if len(mean) != count or len(std) != count:
        raise ValueError(
            f"the window has {count} bands but mean has {len(mean)} and std {len(std)} values; give one value "
            "per band (select the model's bands with --bands or set per-band statistics)"
        )
    std32 = np.asarray(std, dtype=np.float32)
    if np.any(std32 <= 0):
        raise ValueError(f"std values must be positive, got {list(std)}")
    bad = ~valid_mask_from_array(array, nodata)  # (h, w): NaN or nodata in any band

    out = normalize_bands(array, mean, std, rescale_factor)

    bad |= ~np.isfinite(out).all(axis=0)
    if valid_mask is not None:
        valid_mask = np.asarray(valid_mask, dtype=bool)
        if valid_mask.shape != out.shape[1:]:
            raise ValueError(f"valid_mask has shape {valid_mask.shape}, expected {out.shape[1:]}")
        bad |= ~valid_mask
    out[:, bad] = 0.0
    return out


def normalize_with_processor(
    array: np.ndarray,
    processor: Any,
    *,
    nodata: float | Sequence[float | None] | None = None,
    valid_mask: np.ndarray | None = None,
) -> np.ndarray:
    """`normalize` with the statistics of an image processor (e.g. RestImageProcessor).

    Reads `do_rescale`, `rescale_factor`, `do_normalize`, `image_mean`, `image_std` from `processor`.
    """
    array = np.asarray(array)
    count = 1 if array.ndim == 2 else array.shape[0]
    if getattr(processor, "do_normalize", True):
        mean = list(processor.image_mean)
        std = list(processor.image_std)
    else:
        mean, std = [0.0] * count, [1.0] * count
    rescale = processor.rescale_factor if getattr(processor, "do_rescale", False) else None
    return normalize(array, mean, std, rescale, nodata=nodata, valid_mask=valid_mask)
