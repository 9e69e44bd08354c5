"""Tiny REST models of the three backbone families, with and without interaction layers, for fast tests."""

from __future__ import annotations

import torch
from transformers import ConvNextConfig, ConvNextV2Config, SwinConfig

from rest_hf import RestConfig, RestForSemanticSegmentation

STAGES = ["stage1", "stage2", "stage3", "stage4"]
NUM_LABELS = 4


def backbone_config(name: str, **overrides):
    """A one-block-per-stage (Swin: two blocks in stage 3, so a shifted window runs) backbone of a few channels."""
    if name == "swin":
        kwargs = dict(
            embed_dim=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=2, drop_path_rate=0.0
        )
        return SwinConfig(**{**kwargs, **overrides}, out_features=STAGES)
    kwargs = dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], drop_path_rate=0.0)
    config_class = ConvNextConfig if name == "convnext" else ConvNextV2Config
    return config_class(**{**kwargs, **overrides}, out_features=STAGES)


BACKBONES = ["swin", "convnext", "convnextv2"]
# (backbone, interaction stages): every family without interaction layers and with them on two stages.
VARIANTS = [(name, stages) for name in BACKBONES for stages in ([], [0, 2])]
VARIANT_IDS = [f"{name}-{'interaction' if stages else 'plain'}" for name, stages in VARIANTS]


def rest_config(
    name: str, interaction_stages: list[int], backbone_overrides: dict | None = None, **overrides
):
    return RestConfig(
        backbone_config=backbone_config(name, **(backbone_overrides or {})).to_dict(),
        hidden_size=16,
        auxiliary_channels=8,
        num_labels=NUM_LABELS,
        interaction_stages=interaction_stages,
        interaction_num_heads=[2, 2, 4, 4],
        **overrides,
    )


def tiny_rest(
    name: str, interaction_stages: list[int], seed: int = 0, **overrides
) -> RestForSemanticSegmentation:
    """A tiny model whose every parameter is random (not zero-initialised), so comparisons see all of them."""
    torch.manual_seed(seed)
    model = RestForSemanticSegmentation(rest_config(name, interaction_stages, **overrides))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model
