"""The model of a training run: from a preset, a folder or Hub id, or a baseline that REST fine-tuning extends.

The paper trains in two stages: (a) a crop baseline (`interaction_stages: []`), then (b) REST: the baseline's
weights plus new global interaction layers, trained on large samples split over processes. `init_from_baseline`
is stage (b)'s start; it checks that the only weights the baseline lacks are the interaction layers, so a wrong
folder (another backbone, another class count) fails before training instead of silently re-initialising.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from ..data import DatasetInfo
from ..loading import load_config, load_image_processor, load_model
from ..models import PRESETS, RestConfig, RestForSemanticSegmentation, RestImageProcessor

INTERACTION_PREFIX = "interaction_layers."


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' loading report: `init_from_baseline` checks the missing keys itself."""
    from transformers.utils import logging

    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(previous)


def init_from_baseline(source: str, interaction_stages: Sequence[int] | None) -> RestForSemanticSegmentation:
    """REST model = the baseline `source` (folder or Hub id) + interaction layers on `interaction_stages`.

    Every baseline weight is loaded; the interaction layers are the only new ones (initialised as the model's
    `_init_weights` does).

    Raises:
        ValueError: `interaction_stages` is empty, or the baseline's weights do not fit the new model except for
            the interaction layers (missing, unexpected or differently shaped weights are named).
    """
    base = load_config(source)
    stages = (
        list(interaction_stages) if interaction_stages is not None else list(range(len(base.stage_channels)))
    )
    if not stages:
        raise ValueError(
            "init_from adds interaction layers to a baseline, but interaction_stages is empty; set e.g. "
            "interaction_stages: [0, 1, 2, 3], or use model: instead of init_from: to train without them"
        )
    config = RestConfig.from_dict({**base.to_dict(), "interaction_stages": stages})
    with _quiet_transformers():
        model, info = RestForSemanticSegmentation.from_pretrained(
            source, config=config, output_loading_info=True
        )
    missing = sorted(info["missing_keys"])
    wrong = [k for k in missing if not k.startswith(INTERACTION_PREFIX)]
    problems = []
    if wrong:
        problems.append(f"missing {wrong[:5]}{' ...' if len(wrong) > 5 else ''}")
    if info["unexpected_keys"]:
        problems.append(f"unexpected {sorted(info['unexpected_keys'])[:5]}")
    if info["mismatched_keys"]:
        problems.append(
            f"differently shaped {[k[0] if isinstance(k, tuple) else k for k in info['mismatched_keys']][:5]}"
        )
    if problems:
        raise ValueError(
            f"init_from {source!r} is not a baseline of this REST model: only interaction_layers.* may be new, but "
            f"its weights have {'; '.join(problems)}; pass the folder of a stage-(a) run of the same backbone"
        )
    return model


def load_backbone_weights(model: RestForSemanticSegmentation, source: str) -> list[str]:
    """Copy a transformers backbone checkpoint (e.g. ImageNet Swin-L) into `model.backbone`.

    The first convolution is skipped when the band count differs (e.g. 32-band WHU-OHS from an RGB checkpoint:
    it stays randomly initialised). Returns the names of the skipped tensors.

    Raises:
        ValueError: the checkpoint cannot be loaded, or its architecture differs from the preset's.
    """
    from transformers import AutoBackbone

    out_features = list(model.config.backbone_config.out_features)
    try:
        with _quiet_transformers():
            backbone = AutoBackbone.from_pretrained(source, out_features=out_features)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load backbone_init {source!r}: {str(error).splitlines()[0]}") from None
    theirs = backbone.state_dict()
    ours = model.backbone.state_dict()
    skipped, wrong = [], []
    for name, tensor in ours.items():
        if name not in theirs:
            wrong.append(f"{name} missing")
        elif theirs[name].shape != tensor.shape:
            if (
                name.endswith("patch_embeddings.projection.weight")
                and theirs[name].shape[1] != tensor.shape[1]
            ):
                skipped.append(name)
            else:
                wrong.append(f"{name} {tuple(theirs[name].shape)} vs {tuple(tensor.shape)}")
    if wrong:
        raise ValueError(
            f"backbone_init {source!r} does not fit the model's backbone ({'; '.join(wrong[:3])}); choose the preset "
            "with the same depths, widths and window size"
        )
    with torch.no_grad():
        for name, tensor in ours.items():
            if name not in skipped:
                tensor.copy_(theirs[name])
    return skipped


def build_model(
    model: str | None,
    info: DatasetInfo,
    init_from: str | None = None,
    interaction_stages: Sequence[int] | None = None,
    backbone_init: str | None = None,
) -> RestForSemanticSegmentation:
    """The model to train on a dataset described by `info`.

    Args:
        model: A preset (random weights, classes and bands from `info`), or a folder / Hub id (its classes and
            bands must match `info`).
        info: The dataset's `DatasetInfo`.
        init_from: A baseline to extend with interaction layers (`init_from_baseline`); excludes `model`.
        interaction_stages: Stages with interaction layers (presets and `init_from`); `None` keeps the default.
        backbone_init: Backbone checkpoint for a preset (`load_backbone_weights`).
    """
    if init_from:
        result = init_from_baseline(init_from, interaction_stages)
    elif model in PRESETS:
        overrides: dict[str, Any] = info.config_kwargs()
        if interaction_stages is not None:
            overrides["interaction_stages"] = list(interaction_stages)
        result = RestForSemanticSegmentation(RestConfig.from_preset(model, **overrides))
    else:
        result = load_model(model)
        if interaction_stages is not None and list(interaction_stages) != list(
            result.config.interaction_stages
        ):
            raise ValueError(
                f"model {model!r} has interaction_stages {result.config.interaction_stages}, not "
                f"{list(interaction_stages)}; to add interaction layers to a baseline use init_from: {model}"
            )
    if backbone_init:
        if not (model in PRESETS and not init_from):
            raise ValueError(
                "backbone_init starts a preset's backbone; it cannot be combined with a trained model"
            )
        load_backbone_weights(result, backbone_init)
    check_model_fits_dataset(result.config, info)
    return result


def check_model_fits_dataset(config: RestConfig, info: DatasetInfo) -> None:
    """Refuse a model whose class count or band count is not the dataset's."""
    if config.num_labels != info.num_labels:
        raise ValueError(
            f"the model has {config.num_labels} classes but dataset {info.name!r} has {info.num_labels}; start from "
            "a preset (model: swin-large) or a model trained on this dataset"
        )
    if config.num_channels != info.num_bands:
        raise ValueError(
            f"the model reads {config.num_channels} bands but dataset {info.name!r} has {info.num_bands}; start "
            "from a preset or a model trained on this band set"
        )


def build_image_processor(source: str | None, config: RestConfig, info: DatasetInfo) -> RestImageProcessor:
    """The normalisation of a trained model's folder, or else the dataset's band statistics."""
    if source and source not in PRESETS:
        return load_image_processor(source, config)
    return RestImageProcessor(**info.processor_kwargs())


__all__ = [
    "build_image_processor",
    "build_model",
    "check_model_fits_dataset",
    "init_from_baseline",
    "load_backbone_weights",
]
