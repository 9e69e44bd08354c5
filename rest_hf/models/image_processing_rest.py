"""Image processor for whole remote-sensing scenes: per-band normalisation of any band count, no resizing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255


def normalize_bands(
    image: np.ndarray,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    rescale_factor: float | None = None,
) -> np.ndarray:
    """The one normalisation arithmetic of rest_hf: per band c, `(x * rescale_factor - mean[c]) / std[c]`.

    float32, in place on one copy of `image` ((C, H, W), any numeric dtype), so whole-scene tiles cost one
    float32 array. `rest_hf.io.normalize` (raster windows with nodata) uses it too, so the same pixels give
    the same values through either path. `mean`/`std` None: no normalisation; `rescale_factor` None: none.
    """
    out = np.asarray(image).astype(np.float32)  # always a copy
    if rescale_factor is not None:
        out *= np.float32(rescale_factor)
    if mean is not None and std is not None:
        out -= np.asarray(mean, dtype=np.float32)[:, None, None]
        out /= np.asarray(std, dtype=np.float32)[:, None, None]
    return out


class RestImageProcessorKwargs(TypedDict, total=False):
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: list[float]
    image_std: list[float]
    data_format: str


class RestImageProcessor(BaseImageProcessor):
    r"""Turns scenes (uint8, uint16 or float arrays, HWC or CHW) into normalised `pixel_values`.

    Scenes keep their size (there is no resizing: whole-scene models see the whole scene). Each band `c` becomes
    `(x * rescale_factor - image_mean[c]) / image_std[c]`, with statistics of any length (RGB, 4-band,
    32-band hyperspectral).

    Args:
        do_rescale (`bool`, *optional*, defaults to `False`):
            Multiply by `rescale_factor` before normalising.
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            Scale applied when `do_rescale` is set.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Subtract `image_mean` and divide by `image_std` per band.
        image_mean (`list[float]`, *optional*, defaults to ImageNet's mean on the 0-255 scale):
            One value per band.
        image_std (`list[float]`, *optional*, defaults to ImageNet's std on the 0-255 scale):
            One value per band.
        data_format (`str`, *optional*, defaults to `"auto"`):
            Layout of 3-D inputs: `"channels_first"` (C, H, W), `"channels_last"` (H, W, C), or `"auto"`: the
            axis with as many entries as `image_mean` is the band axis (the last axis if both fit).
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = RestImageProcessorKwargs

    def __init__(
        self,
        do_rescale: bool = False,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] = IMAGENET_MEAN_255,
        image_std: Sequence[float] = IMAGENET_STD_255,
        data_format: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.data_format = data_format
        if len(self.image_mean) != len(self.image_std):
            raise ValueError(
                f"image_mean has {len(self.image_mean)} values but image_std has {len(self.image_std)}; give one "
                "value per band in both"
            )
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std values must be positive, got {self.image_std}")
        if data_format not in ("auto", "channels_first", "channels_last"):
            raise ValueError(
                f"data_format must be 'auto', 'channels_first' or 'channels_last', got {data_format!r}"
            )

    @property
    def num_bands(self) -> int:
        return len(self.image_mean)

    def _to_chw(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise ValueError(f"each image must be 2-D (H, W) or 3-D (HWC or CHW), got shape {image.shape}")
        layout = self.data_format
        if layout == "auto":
            layout = "channels_last" if image.shape[-1] == self.num_bands else "channels_first"
        if layout == "channels_last":
            image = np.moveaxis(image, -1, 0)
        if self.do_normalize and image.shape[0] != self.num_bands:
            raise ValueError(
                f"image has {image.shape[0]} bands (shape {image.shape}) but image_mean/image_std have "
                f"{self.num_bands} values; select bands or set per-band statistics"
            )
        return image

    def normalize_array(self, image: np.ndarray) -> np.ndarray:
        """Rescale and normalise one (C, H, W) array to float32 (NaN stays NaN)."""
        return normalize_bands(
            image,
            self.image_mean if self.do_normalize else None,
            self.image_std if self.do_normalize else None,
            self.rescale_factor if self.do_rescale else None,
        )

    def preprocess(
        self,
        images: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Normalise one scene or a list of scenes of equal size.

        Args:
            images: An array (H, W), (H, W, C), (C, H, W), a batch (B, C, H, W), or a list of scenes.
            return_tensors: `"pt"` for a (B, C, H, W) float32 tensor, `"np"` or `None` for numpy.
        """
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, (np.ndarray, torch.Tensor)):
            images = [images]
        arrays = [
            self._to_chw(np.asarray(img.cpu() if isinstance(img, torch.Tensor) else img)) for img in images
        ]
        if len({a.shape for a in arrays}) > 1:
            raise ValueError(
                f"scenes in one batch must have the same shape, got {sorted({a.shape for a in arrays})}"
            )
        pixel_values = np.stack([self.normalize_array(a) for a in arrays])
        if return_tensors == "pt":
            pixel_values = torch.from_numpy(pixel_values)
        return BatchFeature(data={"pixel_values": pixel_values})

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[torch.Tensor]:
        """Turn model outputs into one (H, W) map of class ids per scene, like transformers' processors.

        Args:
            outputs: A `SemanticSegmenterOutput` (or anything with `.logits` (B, K, h, w)).
            target_sizes: Optional (height, width) per scene; logits are resized bilinearly before the argmax.
        """
        logits = outputs.logits
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise ValueError(f"got {len(target_sizes)} target sizes for a batch of {len(logits)} scenes")
        maps = []
        for index, scene_logits in enumerate(logits):
            if target_sizes is not None:
                scene_logits = F.interpolate(
                    scene_logits[None], size=tuple(target_sizes[index]), mode="bilinear", align_corners=False
                )[0]
            maps.append(scene_logits.argmax(dim=0))
        return maps


__all__ = ["RestImageProcessor", "normalize_bands"]
