"""transformers `UperNetForSemanticSegmentation` (folder or Hub id; Swin or ConvNeXt backbone) -> rest_hf.

The converted model has no interaction layers: its state dict is UperNet's under the same names, loaded strictly,
so its logits are UperNet's. Keys or shapes that differ stop the conversion with a message that names them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from huggingface_hub import ModelCard

from ..models import RestConfig, RestForSemanticSegmentation, RestImageProcessor
from .folder import check_output, conversion_card, write_model_folder
from .original_keys import SWIN_FINAL_NORM
from .report import ConversionError, ConversionReport, listing


def _upernet_image_processor(
    source: str, num_channels: int, revision: str | None
) -> tuple[RestImageProcessor, list]:
    """The source's normalisation (SegformerImageProcessor-style keys and defaults), or ImageNet's."""
    from transformers.utils import cached_file

    path = cached_file(
        source,
        "preprocessor_config.json",
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if path is None:
        return RestImageProcessor(), ["no preprocessor_config.json: ImageNet statistics on the 0-255 scale"]
    data = json.loads(Path(path).read_text())
    processor = RestImageProcessor(
        do_rescale=data.get("do_rescale", True),
        rescale_factor=data.get("rescale_factor", 1 / 255),
        do_normalize=data.get("do_normalize", True),
        image_mean=data.get("image_mean", (0.485, 0.456, 0.406)),
        image_std=data.get("image_std", (0.229, 0.224, 0.225)),
    )
    if processor.do_normalize and processor.num_bands != num_channels:
        raise ConversionError(
            f"preprocessor_config.json has {processor.num_bands} image_mean values but the backbone takes "
            f"{num_channels} bands"
        )
    notes = [
        "image processor: image_mean, image_std, do_rescale, rescale_factor copied from preprocessor_config.json"
    ]
    if data.get("do_resize", True):
        notes.append(
            f"the source processor resized images (size {data.get('size')}); rest_hf keeps scenes whole"
        )
    return processor, notes


def convert_upernet(
    source: str | Path,
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    allow_unused: bool = False,
    revision: str | None = None,
) -> ConversionReport:
    """Convert a transformers `UperNetForSemanticSegmentation` (folder or Hub id; Swin or ConvNeXt backbone).

    The result has no interaction layers: its state dict is UperNet's, loaded strictly, and its logits are
    UperNet's. The image processor statistics and id2label are copied.
    """
    from transformers import AutoConfig, UperNetForSemanticSegmentation

    source, output_dir = str(source), Path(output_dir)
    check_output(output_dir, overwrite)
    try:
        upernet_config = AutoConfig.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as error:
        raise ConversionError(f"cannot read the config of {source}: {str(error).splitlines()[0]}") from None
    if upernet_config.model_type != "upernet":
        raise ConversionError(f"{source} holds a {upernet_config.model_type!r} model, not an UperNet")
    backbone = copy.deepcopy(upernet_config.backbone_config)
    if backbone is None or backbone.model_type not in ("swin", "convnext", "convnextv2"):
        kind = None if backbone is None else backbone.model_type
        raise ConversionError(
            f"{source}: backbone {kind!r} is not supported; rest_hf takes Swin, ConvNeXt, ConvNeXt-V2"
        )
    if list(backbone.out_features) != list(backbone.stage_names[1:]):
        raise ConversionError(
            f"{source}: the backbone feeds stages {backbone.out_features} to the decoder; rest_hf needs all of "
            f"{backbone.stage_names[1:]}"
        )
    try:
        # Mismatched shapes are loaded as re-initialised weights and listed in `info`: refused below by name.
        upernet, info = UperNetForSemanticSegmentation.from_pretrained(
            source, revision=revision, output_loading_info=True, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise ConversionError(f"cannot load the weights of {source}: {str(error).strip()[:2000]}") from None
    missing = sorted(info.get("missing_keys", ()))
    left_at_init = [k for k in missing if SWIN_FINAL_NORM.fullmatch(k)]
    missing = [k for k in missing if k not in left_at_init]
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = [
        f"{key} {tuple(found)} -> needs {tuple(needed)}"
        for key, found, needed in sorted(info.get("mismatched_keys", ()))
    ]
    problems = []
    if missing:
        problems.append(f"the checkpoint lacks {len(missing)} tensors: {listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensors have the wrong shape: {listing(mismatched)}")
    if unexpected and not allow_unused:
        problems.append(
            f"{len(unexpected)} source tensors would be lost: {listing(unexpected)} (pass --allow-unused)"
        )
    if problems:
        raise ConversionError(f"cannot convert {source}: " + " | ".join(problems))

    config = RestConfig(
        backbone_config=backbone,
        hidden_size=upernet_config.hidden_size,
        pool_scales=list(upernet_config.pool_scales),
        use_auxiliary_head=upernet_config.use_auxiliary_head,
        auxiliary_loss_weight=upernet_config.auxiliary_loss_weight,
        auxiliary_in_channels=upernet_config.auxiliary_in_channels,
        auxiliary_channels=upernet_config.auxiliary_channels,
        auxiliary_num_convs=upernet_config.auxiliary_num_convs,
        auxiliary_concat_input=upernet_config.auxiliary_concat_input,
        loss_ignore_index=upernet_config.loss_ignore_index,
        interaction_stages=[],
        id2label=dict(upernet_config.id2label),
        label2id=dict(upernet_config.label2id),
    )
    model = RestForSemanticSegmentation(config).eval()
    source_state = upernet.state_dict()
    target = model.state_dict()
    names_only_here = sorted(set(target) - set(source_state))
    names_only_there = sorted(set(source_state) - set(target))
    shapes = [
        f"{k} {tuple(source_state[k].shape)} -> needs {tuple(v.shape)}"
        for k, v in target.items()
        if k in source_state and source_state[k].shape != v.shape
    ]
    if names_only_here or names_only_there or shapes:
        raise ConversionError(
            "UperNet and rest_hf keys differ: "
            + " | ".join(
                text
                for text in (
                    names_only_here and f"missing in UperNet: {listing(names_only_here)}",
                    names_only_there and f"unknown to rest_hf: {listing(names_only_there)}",
                    shapes and f"shapes: {listing(shapes)}",
                )
                if text
            )
        )
    model.load_state_dict(source_state, strict=True)
    processor, notes = _upernet_image_processor(source, config.num_channels, revision)
    report = ConversionReport(
        source=source,
        kind=f"transformers UperNetForSemanticSegmentation with a {backbone.model_type} backbone",
        config=config,
        source_tensors=len(source_state),
        converted=len(source_state) - len(left_at_init),
        left_at_init=left_at_init,
        unused=unexpected,
        notes=notes,
    )
    card = _upernet_model_card(config, report, processor)
    report.output_dir = write_model_folder(output_dir, model, processor, card, overwrite=overwrite)
    return report


def _upernet_model_card(
    config: RestConfig, report: ConversionReport, processor: RestImageProcessor
) -> ModelCard:
    summary = (
        f"Converted with rest_hf's `scripts/convert_upernet.py` from the transformers UperNet checkpoint "
        f"`{report.source}`: the same weights and the same logits, without interaction layers. The license of "
        "the weights is that of the source checkpoint."
    )
    return conversion_card(config, report, processor, summary)
