"""Original REST checkpoints (mmseg layout): loading, and the `RestConfig` inferred from key names and shapes.

The facts about the original checkpoints (key layout, the `UPerHead_lwc` head, what the checkpoints do not
record) are those of the project's checkpoint layout reference.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import SwinConfig

from ..data.info import DatasetInfo
from ..data.layouts import FBP, GLH_WATER
from ..models import RestConfig
from .report import ConversionError

# Label sets of the released checkpoints' datasets (class names, palette, title), shared with rest_hf.data.
DATASETS: dict[str, DatasetInfo] = {"glh-water": GLH_WATER, "fbp": FBP}


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of an mmseg / mmengine checkpoint (`{'state_dict': ...}` or a bare dict), `module.` stripped."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or others depending on the file
        raise ConversionError(
            f"cannot read {path} with torch.load(weights_only=True): {str(error).splitlines()[0]}. If the file "
            "holds Python objects besides tensors and you trust it, re-save only its 'state_dict' with "
            "torch.save and convert that file"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, dict):
        raise ConversionError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, not a dict of tensors")
    tensors = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        tensors[key.removeprefix("module.")] = value
    return tensors


def _indices(state_dict: dict[str, torch.Tensor], pattern: str) -> list[int]:
    """Sorted distinct integers captured by `pattern` (matched at the start of the keys)."""
    regex = re.compile(pattern)
    return sorted({int(m[1]) for key in state_dict if (m := regex.match(key))})


def _require(state_dict: dict[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state_dict:
        raise ConversionError(f"the checkpoint has no {key!r}: {what}")
    return state_dict[key]


def _window_from_table_rows(rows: int, key: str) -> int:
    side = round(rows**0.5)
    if side * side != rows or side % 2 == 0:
        raise ConversionError(f"{key} has {rows} rows, not (2*window-1)^2 for any window size")
    return (side + 1) // 2


def original_kind(state_dict: dict[str, torch.Tensor]) -> tuple[bool, str]:
    """(is_rest, decoder_variant): REST when `backbone.spattns.*` exist; `lwc` for `UPerHead_lwc`'s keys."""
    if any(key.startswith("backbone.downsample_layers.") for key in state_dict):
        raise ConversionError(
            "this is a ConvNeXt checkpoint (backbone.downsample_layers.*); only Swin REST checkpoints can be "
            "converted: no ConvNeXt REST checkpoint was released, and its ConvNeXt-V2 blocks with layer scale "
            "match no transformers backbone class"
        )
    _require(state_dict, "backbone.patch_embed.projection.weight", "not an mmseg Swin checkpoint")
    is_rest = any(key.startswith("backbone.spattns.") for key in state_dict)
    if "decode_head.ppm_conv.0.0.weight" in state_dict:
        return is_rest, "lwc"
    if "decode_head.psp_modules.0.1.conv.weight" in state_dict:
        return is_rest, "upernet"
    heads = sorted({".".join(k.split(".")[:2]) for k in state_dict if k.startswith("decode_head.")})
    raise ConversionError(
        "the decode head is neither mmseg's UPerHead (decode_head.psp_modules.*) nor REST's UPerHead_lwc "
        f"(decode_head.ppm_conv.*); found {heads or 'no decode_head keys'}"
    )


def original_config(
    state_dict: dict[str, torch.Tensor],
    *,
    dataset: str,
    interaction_heads: int | None = None,
    pool_scales: tuple[int, ...] = (1, 2, 3, 6),
) -> RestConfig:
    """The `RestConfig` of an original checkpoint, inferred from its key names and tensor shapes.

    Args:
        state_dict: Tensors from `load_original_state_dict`.
        dataset: A key of `DATASETS` (`"glh-water"` or `"fbp"`): class names and palette.
        interaction_heads: Heads of every interaction layer. Required for REST checkpoints: the original code set
            it to the number of GPUs, and the checkpoint does not record it.
        pool_scales: Pyramid pooling output sizes (not recorded either; every released config uses 1, 2, 3, 6).
    """
    is_rest, variant = original_kind(state_dict)
    if dataset not in DATASETS:
        raise ConversionError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    info = DATASETS[dataset]
    if "backbone.absolute_pos_embed" in state_dict:
        raise ConversionError("the checkpoint has backbone.absolute_pos_embed; whole-scene models need none")
    if "backbone.patch_embed.norm.weight" not in state_dict:
        raise ConversionError(
            "the checkpoint has no backbone.patch_embed.norm (patch_norm=False): not supported"
        )

    projection = state_dict["backbone.patch_embed.projection.weight"]
    embed_dim, num_channels, patch, patch_w = projection.shape
    if patch != patch_w:
        raise ConversionError(
            f"backbone.patch_embed.projection.weight {tuple(projection.shape)}: non-square patch"
        )
    stages = _indices(state_dict, r"backbone\.stages\.(\d+)\.")
    if stages != list(range(len(stages))) or not stages:
        raise ConversionError(f"backbone stages {stages} are not numbered 0..n-1")
    depths, heads, windows = [], [], set()
    for s in stages:
        blocks = _indices(state_dict, rf"backbone\.stages\.{s}\.blocks\.(\d+)\.")
        if blocks != list(range(len(blocks))) or not blocks:
            raise ConversionError(f"backbone stage {s} has blocks {blocks}, not 0..n-1")
        depths.append(len(blocks))
        stage_heads = set()
        for b in blocks:
            key = f"backbone.stages.{s}.blocks.{b}.attn.w_msa.relative_position_bias_table"
            rows, columns = _require(
                state_dict, key, "every Swin block has a relative position bias table"
            ).shape
            stage_heads.add(columns)
            windows.add(_window_from_table_rows(rows, key))
        if len(stage_heads) != 1:
            raise ConversionError(f"backbone stage {s} mixes head counts {sorted(stage_heads)} across blocks")
        heads.append(stage_heads.pop())
    if len(windows) != 1:
        raise ConversionError(f"the blocks use different window sizes {sorted(windows)}")
    fc1 = _require(state_dict, "backbone.stages.0.blocks.0.ffn.layers.0.0.weight", "Swin block MLP")
    widths = [embed_dim * 2**s for s in stages]

    interaction_stages = _indices(state_dict, r"backbone\.spattns\.(\d+)\.")
    interaction_kwargs: dict = {"interaction_stages": interaction_stages}
    if is_rest:
        if interaction_heads is None:
            raise ConversionError(
                "this REST checkpoint has interaction layers (backbone.spattns.*) but does not record their head "
                "count: the original code used the number of GPUs (4 or 8 in the authors' runs, unknown for this "
                "file). Choose it with --interaction-heads N (a divisor of every stage width "
                f"{widths}); the outputs depend on it"
            )
        bad = [w for w in widths if interaction_heads < 1 or w % interaction_heads]
        if bad:
            raise ConversionError(
                f"--interaction-heads {interaction_heads} does not divide the stage widths {bad}; choose a divisor "
                f"of every width {widths}"
            )
        if interaction_stages[-1] >= len(stages):
            raise ConversionError(
                f"backbone.spattns indices {interaction_stages} exceed the {len(stages)} stages"
            )
        first = interaction_stages[0]
        ffn = _require(state_dict, f"backbone.spattns.{first}.ffn.layers.0.0.weight", "interaction layer MLP")
        interaction_kwargs |= {
            "interaction_num_heads": [interaction_heads] * len(stages),
            "interaction_mlp_ratio": ffn.shape[0] / widths[first],
        }
    elif interaction_heads is not None:
        raise ConversionError(
            "--interaction-heads was given but this checkpoint has no interaction layers (no backbone.spattns.*: "
            "a plain Swin baseline); leave it out"
        )

    if variant == "lwc":
        hidden = _require(state_dict, "decode_head.ppm_last_conv.0.weight", "UPerHead_lwc bottleneck").shape[
            0
        ]
        pools = _indices(state_dict, r"decode_head\.ppm_conv\.(\d+)\.")
        classifier = _require(state_dict, "decode_head.object_head.1.weight", "UPerHead_lwc classifier")
    else:
        hidden = _require(state_dict, "decode_head.bottleneck.conv.weight", "UPerHead bottleneck").shape[0]
        pools = _indices(state_dict, r"decode_head\.psp_modules\.(\d+)\.")
        classifier = _require(state_dict, "decode_head.conv_seg.weight", "UPerHead classifier")
    if len(pools) != len(pool_scales):
        raise ConversionError(
            f"the decode head has {len(pools)} pyramid pooling branches but pool_scales is {list(pool_scales)}; "
            "the checkpoint does not record the scales: pass matching pool_scales"
        )
    num_labels = classifier.shape[0]
    if num_labels != len(info.id2label):
        raise ConversionError(
            f"the classifier {tuple(classifier.shape)} has {num_labels} classes but {info.title} has "
            f"{len(info.id2label)}; check --dataset"
        )

    auxiliary: dict = {"use_auxiliary_head": any(k.startswith("auxiliary_head.") for k in state_dict)}
    if auxiliary["use_auxiliary_head"]:
        convs = _indices(state_dict, r"auxiliary_head\.convs\.(\d+)\.")
        aux_classifier = _require(state_dict, "auxiliary_head.conv_seg.weight", "FCNHead classifier")
        first_conv = state_dict.get("auxiliary_head.convs.0.conv.weight")
        in_channels = first_conv.shape[1] if first_conv is not None else aux_classifier.shape[1]
        if len(widths) < 3 or in_channels != widths[2]:
            raise ConversionError(
                f"the auxiliary head takes {in_channels} channels but rest_hf's auxiliary head reads stage 2 "
                f"(widths {widths})"
            )
        auxiliary |= {
            "auxiliary_channels": aux_classifier.shape[1],
            "auxiliary_in_channels": in_channels,
            "auxiliary_num_convs": len(convs),
            "auxiliary_concat_input": "auxiliary_head.conv_cat.conv.weight" in state_dict,
            "auxiliary_loss_weight": 0.4,
        }

    backbone = SwinConfig(
        image_size=224,
        patch_size=patch,
        num_channels=num_channels,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=heads,
        window_size=windows.pop(),
        mlp_ratio=fc1.shape[0] / embed_dim,
        qkv_bias="backbone.stages.0.blocks.0.attn.w_msa.qkv.bias" in state_dict,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        drop_path_rate=0.3,
        use_absolute_embeddings=False,
        out_features=[f"stage{s + 1}" for s in stages],
    )
    return RestConfig(
        backbone_config=backbone,
        hidden_size=hidden,
        pool_scales=list(pool_scales),
        loss_ignore_index=255,
        decoder_variant=variant,
        id2label=dict(info.id2label),
        label2id={name: i for i, name in info.id2label.items()},
        palette=[list(colour) for colour in info.palette],
        **interaction_kwargs,
        **auxiliary,
    )
