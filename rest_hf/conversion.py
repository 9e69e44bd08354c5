"""Checkpoint converters: released REST checkpoints (mmseg layout) and transformers UperNet folders -> rest_hf.

Both converters write a `save_pretrained` folder (config.json, model.safetensors, preprocessor_config.json,
README.md) atomically, and refuse rather than guess: every weight of the target model must come from one
source tensor of the right shape, and every source tensor must be used, or the conversion stops with a message
that names the keys and shapes.

The facts about the original checkpoints (key layout, fused qkv, the PatchMerging channel order, the
`UPerHead_lwc` head, what the checkpoints do not record) are those of the project's checkpoint layout
reference; the target names are read from the installed model's `state_dict()`, so they follow the installed
transformers version.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import ModelCard
from transformers import SwinConfig

from .data.info import DatasetInfo
from .data.layouts import FBP, GLH_WATER
from .models import RestConfig, RestForSemanticSegmentation, RestImageProcessor
from .models.configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255


class ConversionError(ValueError):
    """A checkpoint that cannot be converted faithfully; the message says which keys, shapes or options."""


# --------------------------------------------------------------------------------------------- datasets


# Label sets of the released checkpoints' datasets (class names, palette, title), shared with rest_hf.data.
DATASETS: dict[str, DatasetInfo] = {"glh-water": GLH_WATER, "fbp": FBP}


# --------------------------------------------------------------------------------------------- report


@dataclass
class ConversionReport:
    """What a conversion did: printed by the scripts, summarised in the model card."""

    source: str
    kind: str
    config: RestConfig
    source_tensors: int
    converted: int
    dropped: list[str] = field(default_factory=list)
    left_at_init: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_dir: Path | None = None

    def lines(self) -> list[str]:
        lines = [
            f"source: {self.source} ({self.source_tensors} tensors; {self.kind})",
            f"architecture: {describe_architecture(self.config)}",
            f"converted: {self.converted} target tensors",
        ]
        lines += [f"dropped: {item}" for item in self.dropped]
        if self.left_at_init:
            lines.append(
                f"left at initialisation (no source): {', '.join(self.left_at_init)}; SwinBackbone's feature maps "
                "do not use it"
            )
        if self.unused:
            lines.append(f"UNUSED source tensors, dropped with --allow-unused: {', '.join(self.unused)}")
        lines += [f"note: {note}" for note in self.notes]
        if self.output_dir is not None:
            lines.append(f"written: {self.output_dir}")
        return lines


def describe_architecture(config: RestConfig) -> str:
    """One line: backbone geometry, interaction layers, decoder, classes."""
    backbone = config.backbone_config
    if backbone.model_type == "swin":
        parts = [
            f"Swin embed {backbone.embed_dim}, depths {list(backbone.depths)}, heads {list(backbone.num_heads)}, "
            f"window {backbone.window_size}, patch {backbone.patch_size}"
        ]
    else:
        parts = [
            f"{backbone.model_type} widths {list(backbone.hidden_sizes)}, depths {list(backbone.depths)}"
        ]
    if config.interaction_stages:
        heads = [config.interaction_num_heads[s] for s in config.interaction_stages]
        parts.append(f"interaction layers on stages {config.interaction_stages} with {heads} heads")
    else:
        parts.append("no interaction layers")
    parts.append(
        f"{config.decoder_variant} decoder {config.hidden_size} ch, pool scales {config.pool_scales}"
        + (", auxiliary FCN head" if config.use_auxiliary_head else "")
    )
    parts.append(f"{config.num_labels} classes")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------- original checkpoints


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


def expected_original_key_count(config: RestConfig) -> int:
    """Tensors an original checkpoint of this architecture holds (439 for the FBP baseline, 495 for REST water).

    Swin: stem 4, 14 per block (13 parameters + the relative position index), 3 per PatchMerging, 2 per output
    norm; 12 per interaction layer; a ConvModule is 6 (conv + 5 BatchNorm entries), a classifier 2; UPerHead_lwc
    adds its object_head (6 + 2) besides its unused conv_seg.
    """
    backbone = config.backbone_config
    stages = len(backbone.depths)
    count = 4 + 14 * sum(backbone.depths) + 3 * (stages - 1) + 2 * stages
    count += 12 * len(config.interaction_stages)
    count += 6 * len(config.pool_scales) + 6 + 12 * (stages - 1) + 6 + 2
    if config.decoder_variant == "lwc":
        count += 6 + 2
    if config.use_auxiliary_head:
        count += 6 * config.auxiliary_num_convs + 2 + (6 if config.auxiliary_concat_input else 0)
    return count


def interaction_parameter_count(channels: int, mlp_ratio: float = 4.0) -> int:
    """Parameters of one interaction layer: 12C^2 + 13C for the released MLP ratio 4."""
    inner = int(channels * mlp_ratio)
    return 4 * channels * channels + 4 * channels + 4 * channels + 2 * channels * inner + inner + channels


def unfold_to_hf_merge_order(tensor: torch.Tensor) -> torch.Tensor:
    """Permute the last axis of a PatchMerging weight from mmseg's Unfold order to transformers' order.

    mmseg (nn.Unfold) merges channel c of sub-patch (dy, dx) at index 4c + 2dy + dx; transformers concatenates
    the sub-patches (0,0), (1,0), (0,1), (1,1), giving index C p + c. So the size-4 axis is reordered
    [0, 2, 1, 3] and moved first.
    """
    channels4 = tensor.shape[-1]
    lead = tensor.shape[:-1]
    return (
        tensor.reshape(*lead, channels4 // 4, 4)[..., [0, 2, 1, 3]]
        .transpose(-1, -2)
        .reshape(*lead, channels4)
    )


def _third(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def take(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.chunk(3, dim=0)[index]

    return take


@dataclass(frozen=True)
class _Rule:
    """Target key pattern -> source key template (None: no source, left at init) and tensor transform."""

    target: re.Pattern
    source: str | Callable[[re.Match], str] | None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def _rules(pairs: list[tuple]) -> list[_Rule]:
    return [_Rule(re.compile(p[0]), *p[1:]) for p in pairs]


_BN = r"batch_norm\.(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"
_SWIN = r"backbone\.(?:swin\.)?"  # transformers 5 nests the Swin modules under `swin.`; 4 did not
_BLOCK = _SWIN + r"encoder\.layers\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\."
_SRC_BLOCK = r"backbone.stages.\g<s>.blocks.\g<b>."
_WB = r"(?P<p>weight|bias)"

# Target patterns accept both the transformers 5 names (q_proj, o_proj, mlp.fc1, ...) and the 4.x ones.
# fmt: off
_ORIGINAL_BACKBONE_RULES = _rules([
    (_SWIN + r"embeddings\.patch_embeddings\.projection\." + _WB, r"backbone.patch_embed.projection.\g<p>"),
    (_SWIN + r"embeddings\.norm\." + _WB, r"backbone.patch_embed.norm.\g<p>"),
    (_BLOCK + r"layernorm_before\." + _WB, _SRC_BLOCK + r"norm1.\g<p>"),
    (_BLOCK + r"attention\.(?:q_proj|self\.query)\." + _WB, _SRC_BLOCK + r"attn.w_msa.qkv.\g<p>", _third(0)),
    (_BLOCK + r"attention\.(?:k_proj|self\.key)\." + _WB, _SRC_BLOCK + r"attn.w_msa.qkv.\g<p>", _third(1)),
    (_BLOCK + r"attention\.(?:v_proj|self\.value)\." + _WB, _SRC_BLOCK + r"attn.w_msa.qkv.\g<p>", _third(2)),
    (_BLOCK + r"attention\.(?:o_proj|output\.dense)\." + _WB, _SRC_BLOCK + r"attn.w_msa.proj.\g<p>"),
    (_BLOCK + r"attention\.(?:relative_position_bias\.|self\.)relative_position_bias_table",
     _SRC_BLOCK + "attn.w_msa.relative_position_bias_table"),
    (_BLOCK + r"layernorm_after\." + _WB, _SRC_BLOCK + r"norm2.\g<p>"),
    (_BLOCK + r"(?:mlp\.fc1|intermediate\.dense)\." + _WB, _SRC_BLOCK + r"ffn.layers.0.0.\g<p>"),
    (_BLOCK + r"(?:mlp\.fc2|output\.dense)\." + _WB, _SRC_BLOCK + r"ffn.layers.1.\g<p>"),
    (_SWIN + r"encoder\.layers\.(?P<s>\d+)\.downsample\.(?P<p>reduction\.weight|norm\.weight|norm\.bias)",
     r"backbone.stages.\g<s>.downsample.\g<p>", unfold_to_hf_merge_order),
    (r"backbone\.hidden_states_norms\.stage(?P<i>\d+)\." + _WB,
     lambda m: f"backbone.norm{int(m['i']) - 1}.{m['p']}"),
    (_SWIN + r"layernorm\." + _WB, None),  # SwinModel's final norm: no source, unused by SwinBackbone
    (r"interaction_layers\.(?P<i>\d+)\.layernorm_before\." + _WB, r"backbone.spattns.\g<i>.ln1.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.attention\.in_proj\." + _WB, r"backbone.spattns.\g<i>.attn.attn.in_proj_\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.attention\.out_proj\." + _WB,
     r"backbone.spattns.\g<i>.attn.attn.out_proj.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.layernorm_after\." + _WB, r"backbone.spattns.\g<i>.ln2.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.mlp\.fc1\." + _WB, r"backbone.spattns.\g<i>.ffn.layers.0.0.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.mlp\.fc2\." + _WB, r"backbone.spattns.\g<i>.ffn.layers.1.\g<p>"),
])
# fmt: on


def _mmcv_head_rules(head: str) -> list[_Rule]:
    """mmseg's UPerHead / FCNHead: mmcv ConvModules (`conv`, `bn`) and the classifier `conv_seg`."""
    return _rules(
        [
            (rf"{head}\.classifier\." + _WB, rf"{head}.conv_seg.\g<p>"),
            (rf"(?P<m>{head}\..+)\.conv\.weight", r"\g<m>.conv.weight"),
            (rf"(?P<m>{head}\..+)\." + _BN, r"\g<m>.bn.\g<p>"),
        ]
    )


# UPerHead_lwc: plain nn.Sequential(conv, BN, ReLU) blocks under other names; its own conv_seg is unused.
_LWC_MODULES = [
    (r"psp_modules\.(?P<i>\d+)\.1", r"ppm_conv.\g<i>"),
    (r"bottleneck", r"ppm_last_conv"),
    (r"lateral_convs\.(?P<i>\d+)", r"fpn_in.\g<i>"),
    (r"fpn_convs\.(?P<i>\d+)", r"fpn_out.\g<i>.0"),
    (r"fpn_bottleneck", r"conv_fusion"),
    (r"object_head", r"object_head.0"),
]
_LWC_HEAD_RULES = _rules(
    [(r"decode_head\.classifier\." + _WB, r"decode_head.object_head.1.\g<p>")]
    + [(rf"decode_head\.{t}\.conv\.weight", rf"decode_head.{s}.0.weight") for t, s in _LWC_MODULES]
    + [(rf"decode_head\.{t}\." + _BN, rf"decode_head.{s}.1.\g<p>") for t, s in _LWC_MODULES]
)
_HEAD_RULES = {
    "upernet": _mmcv_head_rules("decode_head") + _mmcv_head_rules("auxiliary_head"),
    "lwc": _LWC_HEAD_RULES + _mmcv_head_rules("auxiliary_head"),
}


def _find_rule(rules: list[_Rule], name: str) -> tuple[_Rule, re.Match] | None:
    for rule in rules:
        if match := rule.target.fullmatch(name):
            return rule, match
    return None


def _listing(items: list[str], limit: int = 12) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; ... and {len(items) - limit} more" if len(items) > limit else "")


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
    rules = _ORIGINAL_BACKBONE_RULES + _HEAD_RULES[config.decoder_variant]
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    no_rule, missing, mismatched, left_at_init = [], [], [], []
    for name, init in target.items():
        found = _find_rule(rules, name)
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
        problems.append(f"the converter has no rule for these model keys: {_listing(no_rule)}")
    if missing:
        problems.append(f"the checkpoint lacks {len(missing)} tensors: {_listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensors do not fit the model: {_listing(mismatched)}")
    unused = sorted(set(state_dict) - used)
    if unused and not allow_unused:
        problems.append(
            f"{len(unused)} source tensors would be lost: "
            f"{_listing([f'{k} {tuple(state_dict[k].shape)}' for k in unused])} (pass --allow-unused to drop them)"
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
        if count != interaction_parameter_count(channels, config.interaction_mlp_ratio):
            raise ConversionError(
                f"backbone.spattns.{stage} has {count} parameters, expected "
                f"{interaction_parameter_count(channels, config.interaction_mlp_ratio)} (12C^2+13C, C={channels})"
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
    _check_output(output_dir, overwrite)
    state_dict = load_original_state_dict(checkpoint)
    config = original_config(state_dict, dataset=dataset, interaction_heads=interaction_heads)
    model, report = convert_original_state_dict(
        state_dict, config, source=checkpoint.name, allow_unused=allow_unused
    )
    processor = RestImageProcessor(image_mean=IMAGENET_MEAN_255, image_std=IMAGENET_STD_255, do_rescale=False)
    card = _original_model_card(config, report, dataset, processor)
    report.output_dir = write_model_folder(output_dir, model, processor, card, overwrite=overwrite)
    return report


# --------------------------------------------------------------------------------------------- UperNet folders


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
    _check_output(output_dir, overwrite)
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
    left_at_init = [k for k in missing if re.fullmatch(_SWIN + r"layernorm\.(weight|bias)", k)]
    missing = [k for k in missing if k not in left_at_init]
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = [
        f"{key} {tuple(found)} -> needs {tuple(needed)}"
        for key, found, needed in sorted(info.get("mismatched_keys", ()))
    ]
    problems = []
    if missing:
        problems.append(f"the checkpoint lacks {len(missing)} tensors: {_listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensors have the wrong shape: {_listing(mismatched)}")
    if unexpected and not allow_unused:
        problems.append(
            f"{len(unexpected)} source tensors would be lost: {_listing(unexpected)} (pass --allow-unused)"
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
                    names_only_here and f"missing in UperNet: {_listing(names_only_here)}",
                    names_only_there and f"unknown to rest_hf: {_listing(names_only_there)}",
                    shapes and f"shapes: {_listing(shapes)}",
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


# --------------------------------------------------------------------------------------------- output folders


def _check_output(output_dir: Path, overwrite: bool) -> None:
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise ConversionError(f"output {output_dir} exists and is not a folder")
    if not overwrite:
        raise ConversionError(f"output {output_dir} exists; pass --overwrite to replace it")
    if any(output_dir.iterdir()) and not (output_dir / "config.json").is_file():
        raise ConversionError(
            f"output {output_dir} exists and is not a model folder (no config.json); --overwrite replaces only "
            "model folders: choose another output"
        )


def write_model_folder(
    output_dir: str | Path,
    model: RestForSemanticSegmentation,
    image_processor: RestImageProcessor,
    card: ModelCard,
    *,
    overwrite: bool = False,
) -> Path:
    """Write config, weights, image processor and README.md into a temporary sibling folder, then rename it.

    An interrupted or failed conversion leaves no partial folder; an existing model folder is replaced only with
    `overwrite`, and only once the new one is complete.
    """
    output_dir = Path(output_dir)
    _check_output(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        image_processor.save_pretrained(staging)
        card.save(staging / "README.md")
        _check_output(output_dir, overwrite)
        if output_dir.exists():
            previous = output_dir.with_name(f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}")
            output_dir.rename(previous)
            try:
                staging.rename(output_dir)
            except BaseException:
                previous.rename(output_dir)
                raise
            shutil.rmtree(previous, ignore_errors=True)
        else:
            staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


# --------------------------------------------------------------------------------------------- model cards


def _conversion_notes(summary: str, report: ConversionReport) -> str:
    """Markdown for the card's notes: how the folder was made, then the converter's report."""
    skip = ("written", "architecture")
    details = "\n".join(f"- {line}" for line in report.lines() if not line.startswith(skip))
    return f"{summary}\n\nConversion report:\n\n{details}"


def _original_model_card(
    config: RestConfig, report: ConversionReport, dataset: str, processor: RestImageProcessor
) -> ModelCard:
    from .hub.card import render_model_card

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
    return render_model_card(
        config,
        notes=_conversion_notes(summary, report),
        image_processor=processor,
        license="other",
        training_dataset=dataset,
    )


def _upernet_model_card(
    config: RestConfig, report: ConversionReport, processor: RestImageProcessor
) -> ModelCard:
    from .hub.card import render_model_card

    summary = (
        f"Converted with rest_hf's `scripts/convert_upernet.py` from the transformers UperNet checkpoint "
        f"`{report.source}`: the same weights and the same logits, without interaction layers. The license of "
        "the weights is that of the source checkpoint."
    )
    return render_model_card(
        config, notes=_conversion_notes(summary, report), image_processor=processor, license="other"
    )


__all__ = [
    "DATASETS",
    "ConversionError",
    "ConversionReport",
    "DatasetInfo",
    "convert_original_checkpoint",
    "convert_original_state_dict",
    "convert_upernet",
    "describe_architecture",
    "expected_original_key_count",
    "interaction_parameter_count",
    "load_original_state_dict",
    "original_config",
    "original_kind",
    "unfold_to_hf_merge_order",
    "write_model_folder",
]
