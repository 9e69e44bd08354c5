"""Original REST checkpoints (mmseg layout) -> rest_hf: every weight mapped, shape-checked and counted.

Nothing is guessed: every weight of the target model must come from one source tensor of the right shape, and
every source tensor must be used (or dropped with a stated reason), or the conversion stops with a message that
names the keys and shapes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import ModelCard

from ..models import RestConfig, RestForSemanticSegmentation, RestImageProcessor
from ..models.configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255
from .folder import check_output, conversion_card, write_model_folder
from .original_config import DATASETS, load_original_state_dict, original_config
from .original_keys import expected_original_key_count, find_rule, interaction_parameter_count, original_rules
from .report import ConversionError, ConversionReport, listing


def convert_original_state_dict(
    state_dict: dict[str, torch.Tensor],
    config: RestConfig,
    *,
    source: str = "state dict",
    allow_unused: bool = False,
) -> tuple[RestForSemanticSegmentation, ConversionReport]:
    """Fill a `RestForSemanticSegmentation(config)` from an original state dict, checking every key and shape.

    Args:
        state_dict: Tensors from `load_original_state_dict`.
        config: From `original_config(state_dict, ...)`.
        source: Name of the checkpoint, for the report.
        allow_unused: Drop source tensors the model has no place for instead of refusing.

    Returns:
        The model (eval mode) and the conversion report.
    """
    model = RestForSemanticSegmentation(config).eval()
    target = model.state_dict()
    rules = original_rules(config.decoder_variant)
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    no_rule, missing, mismatched, left_at_init = [], [], [], []
    for name, init in target.items():
        found = find_rule(rules, name)
        if found is None:
            no_rule.append(name)
            continue
        rule, match = found
        if rule.source is None:
            left_at_init.append(name)
            converted[name] = init
            continue
        key = rule.source(match) if callable(rule.source) else match.expand(rule.source)
        if key not in state_dict:
            missing.append(f"{key} (for {name} {tuple(init.shape)})")
            continue
        used.add(key)
        value = state_dict[key]
        try:
            value = rule.transform(value) if rule.transform is not None else value
        except RuntimeError:  # a shape the transform cannot split or permute
            value = None
        if value is None or value.shape != init.shape:
            got = "" if value is None else f", got {tuple(value.shape)}"
            mismatched.append(
                f"{key} {tuple(state_dict[key].shape)} -> {name} needs {tuple(init.shape)}{got}"
            )
            continue
        converted[name] = value.to(init.dtype)

    dropped = []
    # The relative position index is a persistent buffer in mmseg and is recomputed by transformers: drop it,
    # after checking that the stored one is the standard index the model computes.
    model_index = next(
        (buffer for name, buffer in model.named_buffers() if name.endswith("relative_position_index")), None
    )
    index_keys = [
        k for k in state_dict if k.startswith("backbone.stages.") and k.endswith(".relative_position_index")
    ]
    blocks = {k.removesuffix(".relative_position_bias_table") for k in used if k.endswith("bias_table")}
    for block in sorted(blocks - {k.removesuffix(".relative_position_index") for k in index_keys}):
        missing.append(f"{block}.relative_position_index (checked against the standard index, then dropped)")
    for key in index_keys:
        stored = state_dict[key]
        if (
            model_index is None
            or stored.numel() != model_index.numel()
            or not torch.equal(stored.flatten().long(), model_index.flatten().long())
        ):
            mismatched.append(f"{key} {tuple(stored.shape)} is not the standard Swin relative position index")
        used.add(key)
    if index_keys:
        dropped.append(
            f"{len(index_keys)} relative_position_index buffers (equal to the index transformers recomputes)"
        )
    if config.decoder_variant == "lwc":
        for key in ("decode_head.conv_seg.weight", "decode_head.conv_seg.bias"):
            if key in state_dict:
                used.add(key)
                dropped.append(f"{key} {tuple(state_dict[key].shape)} (never used by UPerHead_lwc's forward)")

    problems = []
    if no_rule:
        problems.append(f"the converter has no rule for these model keys: {listing(no_rule)}")
    if missing:
        problems.append(f"the checkpoint lacks {len(missing)} tensors: {listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensors do not fit the model: {listing(mismatched)}")
    unused = sorted(set(state_dict) - used)
    if unused and not allow_unused:
        problems.append(
            f"{len(unused)} source tensors would be lost: "
            f"{listing([f'{k} {tuple(state_dict[k].shape)}' for k in unused])} (pass --allow-unused to drop them)"
        )
    if problems:
        raise ConversionError("cannot convert this checkpoint: " + " | ".join(problems))

    expected = expected_original_key_count(config)
    if len(used) != expected:
        raise ConversionError(
            f"{len(used)} source tensors were used but this architecture has {expected} (from its config): the "
            "checkpoint layout is not the documented one"
        )
    for stage in config.interaction_stages:
        channels = config.stage_channels[stage]
        count = sum(state_dict[k].numel() for k in used if k.startswith(f"backbone.spattns.{stage}."))
        expected_count = interaction_parameter_count(channels, config.interaction_mlp_ratio)
        if count != expected_count:
            raise ConversionError(
                f"backbone.spattns.{stage} has {count} parameters, expected {expected_count} (12C^2+13C, "
                f"C={channels})"
            )

    model.load_state_dict(converted, strict=True)
    is_rest = bool(config.interaction_stages)
    kind = "REST Swin with interaction layers" if is_rest else "plain Swin baseline"
    kind += " + UPerHead_lwc" if config.decoder_variant == "lwc" else " + UPerHead"
    kind += " + FCNHead" if config.use_auxiliary_head else ""
    notes = [f"key count checked: {expected} tensors expected for this architecture"]
    dtypes = sorted(
        {str(state_dict[k].dtype) for k in used if state_dict[k].is_floating_point()} - {"torch.float32"}
    )
    if dtypes:
        notes.append(f"source tensors in {', '.join(dtypes)} were stored as float32")
    if is_rest:
        heads = config.interaction_num_heads[config.interaction_stages[0]]
        notes.append(
            f"interaction heads: {heads} per layer, chosen with --interaction-heads. The checkpoint does not "
            "record it (the original code used the number of GPUs); outputs depend on it"
        )
    if config.decoder_variant == "lwc":
        notes.append(
            "decoder_variant 'lwc': logits are computed at 1/32 of the input and upsampled, as in the original"
        )
    report = ConversionReport(
        source=source,
        kind=kind,
        config=config,
        source_tensors=len(state_dict),
        converted=len(converted) - len(left_at_init),
        dropped=dropped,
        left_at_init=left_at_init,
        unused=unused,
        notes=notes,
    )
    return model, report


def convert_original_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    *,
    dataset: str,
    interaction_heads: int | None = None,
    overwrite: bool = False,
    allow_unused: bool = False,
) -> ConversionReport:
    """Convert `REST_water_swin_large.pth`, `baseline_fbp_swin_large.pth` or any checkpoint of their layout.

    Args:
        checkpoint: The `.pth` file.
        output_dir: The folder to write (refused if it exists, unless `overwrite`).
        dataset: `"glh-water"` or `"fbp"`: class names, palette and model card.
        interaction_heads: Heads of the interaction layers (required for REST checkpoints, which do not record it).
        overwrite: Replace an existing model folder.
        allow_unused: Drop source tensors the model has no place for instead of refusing.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    check_output(output_dir, overwrite)
    state_dict = load_original_state_dict(checkpoint)
    config = original_config(state_dict, dataset=dataset, interaction_heads=interaction_heads)
    model, report = convert_original_state_dict(
        state_dict, config, source=checkpoint.name, allow_unused=allow_unused
    )
    processor = RestImageProcessor(image_mean=IMAGENET_MEAN_255, image_std=IMAGENET_STD_255, do_rescale=False)
    card = _original_model_card(config, report, dataset, processor)
    report.output_dir = write_model_folder(output_dir, model, processor, card, overwrite=overwrite)
    return report


def _original_model_card(
    config: RestConfig, report: ConversionReport, dataset: str, processor: RestImageProcessor
) -> ModelCard:
    summary = (
        f"Converted with rest_hf's `scripts/convert_rest_original.py` from the original checkpoint `{report.source}` "
        f"({report.kind}) of [REST_code](https://github.com/weichenrs/REST_code). Dataset: "
        f"{DATASETS[dataset].title}; its classes and colours are listed below."
    )
    if config.interaction_stages:
        heads = config.interaction_num_heads[config.interaction_stages[0]]
        summary += (
            f"\n\n**Interaction heads: {heads}, chosen at conversion.** The original checkpoint does not record the "
            "head count of its interaction layers: the original code set it to the number of GPUs when the model "
            "was built (the authors ran 4 or 8; the count that trained this file is not recorded). The outputs "
            "depend on it."
        )
    return conversion_card(config, report, processor, summary, training_dataset=dataset)
