"""What the prediction engines check about a scene, before and after its forward passes: work and memory that
cannot finish (refused before the first window), values no sensor measures, logits that are not finite, a
scene without a valid pixel, and the notes these leave in the scene's result.

Every check that decides whether a scene goes on is agreed on by the ranks of the spatial group (the failure
agreement of `rest_hf.distributed`), so they all raise the same `SceneError` and move on together.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..distributed import agreed
from ..io.reader import IMPLAUSIBLE
from .budget import check_memory, check_work
from .runtime import SceneError
from .sinks import SceneResult

__all__ = [
    "LARGEST_PLAUSIBLE_INPUT",
    "implausible_pixels",
    "input_notes",
    "no_valid_pixels",
    "non_finite_logits",
    "refuse_memory",
    "refuse_work",
]

LARGEST_PLAUSIBLE_INPUT = 1e4
"""|normalised value| beyond which the scene is on another scale than the model's (a note, not a refusal)."""


def refuse_work(
    path: Any,
    mode: str,
    windows: int,
    window: int | None,
    padded: tuple[int, int],
    scene: tuple[int, int],
    alignment: int,
    hint: str,
) -> None:
    """Refuse windows that would compute the scene many times over (the same decision on every rank: it
    depends only on the scene's size and the options).

    A window smaller than the model's alignment still costs one aligned window (Swin pads every stage to
    whole attention windows; ConvNeXt needs its total stride).

    Raises:
        SceneError: naming the count, the factor and `hint` (the option that fixes it).
    """
    computed = (max(padded[0], alignment), max(padded[1], alignment))
    try:
        check_work(path, mode, windows, window, computed, scene, hint)
    except ValueError as error:
        raise SceneError(str(error)) from None


def refuse_memory(
    path: Any, config: Any, tile: tuple[int, int], ctx: Any, device: torch.device, here: bool = True
) -> None:
    """Collective over `ctx`: refuse (on every rank alike) a (height, width) tile that cannot fit in this
    process's memory, before it is read; `here`: whether this rank predicts such a tile."""
    agreed(lambda: check_memory(path, config, tile, ctx.size, device), ctx, here, error=SceneError)


def implausible_pixels(data: np.ndarray, nodata: tuple[float | None, ...]) -> int:
    """Pixels of (C, h, w) `data` where a float band holds +-inf or a value beyond +-IMPLAUSIBLE that is not
    its nodata value (the reader already takes them as invalid: this counts them for a note)."""
    if not np.issubdtype(data.dtype, np.floating):
        return 0
    odd = np.zeros(data.shape[1:], dtype=bool)
    with np.errstate(invalid="ignore"):
        for band, value in zip(data, nodata, strict=True):
            hit = np.abs(band) > IMPLAUSIBLE
            if value is not None and not math.isnan(value):
                hit &= band != value
            odd |= hit
    return int(odd.sum())


def non_finite_logits(logits: torch.Tensor | None, valid: np.ndarray | None, path: Any) -> str | None:
    """None, or why the (K, h', w') logits of the (h, w) `valid` pixels are not finite (then nothing may be
    written: argmax of NaN is class 0 everywhere)."""
    if logits is None or valid is None:
        return None
    mask = torch.from_numpy(np.ascontiguousarray(valid)).to(logits.device)
    if bool(torch.isfinite(logits[:, : mask.shape[0], : mask.shape[1]][:, mask]).all()):
        return None
    return (
        f"{path}: the model's output is not finite (NaN or infinite logits); the scene's values are far "
        "outside the model's normalisation: check its nodata value, scale and --bands"
    )


def no_valid_pixels(path: Any) -> SceneError:
    return SceneError(
        f"{path} has no valid pixels (every pixel is nodata, NaN, masked or transparent); nothing was written"
    )


def input_notes(result: SceneResult) -> list[str]:
    """Notes on values the scene holds but should not: untagged fill values, a scale far from the model's."""
    notes = []
    if result.implausible_pixels:
        notes.append(
            f"{result.implausible_pixels:,} pixels hold infinite values or values beyond +-{IMPLAUSIBLE:g} "
            "(an untagged fill value such as -3.4e38?): treated as nodata; tag the nodata value "
            "(gdal_edit.py -a_nodata) to make it explicit"
        )
    if result.largest_input > LARGEST_PLAUSIBLE_INPUT:
        notes.append(
            f"normalised input values reach {result.largest_input:.3g} (over {LARGEST_PLAUSIBLE_INPUT:g} "
            "standard deviations from the model's mean): is the scene on the scale the model was trained "
            "on, and are the --bands right?"
        )
    return notes
