"""`pipeline("image-segmentation")` for scenes held as arrays: any band count, no conversion to RGB.

transformers' own image-segmentation pipeline already runs REST models on PIL images, paths and URLs (they are
converted to RGB). It refuses numpy arrays, and RGB conversion would drop the bands of a multispectral scene, so
this subclass hands arrays and tensors straight to `RestImageProcessor` and leaves everything else to transformers:

    pipe = pipeline("image-segmentation", model=folder, pipeline_class=RestImageSegmentationPipeline)
    pipe(scene)  # (H, W, C) or (C, H, W) numpy array or tensor, C = the model's band count
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.pipelines.image_segmentation import ImageSegmentationPipeline


class RestImageSegmentationPipeline(ImageSegmentationPipeline):
    """transformers' `ImageSegmentationPipeline`, also for (H, W, C) / (C, H, W) arrays and tensors of any band count.

    Returns what transformers' pipeline returns: one `{"label", "mask", "score"}` per class present, the mask a
    PIL "L" image of the scene's size (255 where the class is predicted), the score `None` (semantic segmentation).
    """

    def preprocess(self, image: Any, subtask: str | None = None, timeout: float | None = None) -> dict:
        """A scene -> the model's inputs and the scene's (height, width)."""
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            return super().preprocess(image, subtask=subtask, timeout=timeout)
        if image.ndim not in (2, 3):
            raise ValueError(
                f"the pipeline segments one scene at a time: give a (H, W), (H, W, C) or (C, H, W) array, got "
                f"shape {tuple(image.shape)}; pass a list of scenes for several"
            )
        inputs = self.image_processor(images=[image], return_tensors="pt").to(self.dtype)
        inputs["target_size"] = [tuple(inputs["pixel_values"].shape[2:])]
        return inputs


__all__ = ["RestImageSegmentationPipeline"]
