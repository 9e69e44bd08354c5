"""Tiny models with clear decisions, and synthetic scenes, for the prediction tests.

The exactness contract holds on logits up to float rounding (1e-4), so two runs give the same labels wherever
the top two classes are not a float tie. A randomly initialised network at its default scale gives nearly
constant logits (ties everywhere); these models use weights N(0, 0.4), which spread the logits over several
units, and shift each class's bias by its median logit on a calibration image, so that every class appears.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rest_hf import RestConfig, RestForSemanticSegmentation, RestImageProcessor

CLASS_NAMES = ["background", "water", "forest", "urban"]


def build_model(
    num_channels: int = 3,
    calibration: np.ndarray | None = None,
    preset: str = "tiny-swin",
    seed: int = 0,
    **overrides,
) -> RestForSemanticSegmentation:
    """A tiny 4-class REST model (interaction on the two deepest stages, to keep CPU runs short).

    Args:
        calibration: A normalised (C, H, W) image; each class's bias is shifted by minus its median logit on it.
    """
    torch.manual_seed(seed)
    config = RestConfig.from_preset(
        preset,
        num_channels=num_channels,
        num_labels=len(CLASS_NAMES),
        id2label=dict(enumerate(CLASS_NAMES)),
        label2id={name: i for i, name in enumerate(CLASS_NAMES)},
        interaction_stages=[2, 3],
        **overrides,
    )
    model = RestForSemanticSegmentation(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.4)
        if calibration is None:
            calibration = np.random.default_rng(seed).normal(size=(num_channels, 64, 64)).astype(np.float32)
        logits = model(pixel_values=torch.from_numpy(np.ascontiguousarray(calibration))[None]).logits[0]
        model.decode_head.classifier.bias -= logits.flatten(1).median(dim=1).values
    return model


def processor_for(num_channels: int) -> RestImageProcessor:
    """Statistics of 8-bit imagery for 3 bands; 4 bands of 16-bit reflectance (0..10000) otherwise."""
    if num_channels == 3:
        return RestImageProcessor(image_mean=[100.0, 110.0, 120.0], image_std=[50.0, 55.0, 60.0])
    return RestImageProcessor(image_mean=[3000.0] * num_channels, image_std=[2000.0] * num_channels)


def save_model(
    folder: Path, num_channels: int = 3, calibration_raw: np.ndarray | None = None, **kwargs
) -> Path:
    """`build_model` + its image processor, written with save_pretrained; `calibration_raw` is raw pixels."""
    processor = processor_for(num_channels)
    calibration = None
    if calibration_raw is not None:
        calibration = processor.normalize_array(calibration_raw)
    build_model(num_channels, calibration, **kwargs).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def synthetic_scene(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """(bands, H, W) uint8 imagery with large smooth structures (fields, a river) and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    layers = []
    for _ in range(bands):
        fy, fx, phase = rng.uniform(0.01, 0.05, size=2).tolist() + [rng.uniform(0, 6.28)]
        base = 120 + 80 * np.sin(fy * y + phase) * np.cos(fx * x)
        layers.append(base + rng.normal(0, 8, size=(height, width)))
    scene = np.stack(layers)
    river = np.abs(y - 0.4 * x - height / 3) < 6
    scene[:, river] = 30
    return np.clip(scene, 1, 255).astype(np.uint8)


def corrupt_blocks_from_row(path: Path, first_row: int) -> Path:
    """Overwrite the compressed data of every internal tile from pixel row `first_row` down with garbage.

    The header still opens and the upper tiles read; a read reaching the lower tiles fails half way through.
    """
    import rasterio

    with rasterio.open(path) as ds:
        block_h, block_w = ds.block_shapes[0]
        spans = []
        for row in range(first_row // block_h, -(-ds.height // block_h)):
            for col in range(-(-ds.width // block_w)):
                offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
                size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
                spans.append((offset, size))
    with open(path, "r+b") as f:
        for offset, size in spans:
            f.seek(offset)
            f.write(b"\xff" * size)
    return path
