"""Original REST checkpoints (mmseg layout): target key -> source key rules, and the expected key counts.

The facts about the original checkpoints (key layout, fused qkv, the PatchMerging channel order, the
`UPerHead_lwc` head) are those of the project's checkpoint layout reference; the target names are those of the
installed model's `state_dict()`, so the target patterns accept both the transformers 5 and the 4.x names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models import RestConfig


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
class Rule:
    """Target key pattern -> source key template (None: no source, left at init) and tensor transform."""

    target: re.Pattern
    source: str | Callable[[re.Match], str] | None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None


def _rules(pairs: list[tuple]) -> list[Rule]:
    return [Rule(re.compile(p[0]), *p[1:]) for p in pairs]


_BN = r"batch_norm\.(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"
_SWIN = r"backbone\.(?:swin\.)?"  # transformers 5 nests the Swin modules under `swin.`; 4 did not
_BLOCK = _SWIN + r"encoder\.layers\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\."
_SRC_BLOCK = r"backbone.stages.\g<s>.blocks.\g<b>."
_WB = r"(?P<p>weight|bias)"

# SwinModel's final norm: no source in either converter's input, and SwinBackbone's feature maps do not use it.
SWIN_FINAL_NORM = re.compile(_SWIN + r"layernorm\." + _WB)

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
    (SWIN_FINAL_NORM.pattern, None),
    (r"interaction_layers\.(?P<i>\d+)\.layernorm_before\." + _WB, r"backbone.spattns.\g<i>.ln1.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.attention\.in_proj\." + _WB, r"backbone.spattns.\g<i>.attn.attn.in_proj_\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.attention\.out_proj\." + _WB,
     r"backbone.spattns.\g<i>.attn.attn.out_proj.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.layernorm_after\." + _WB, r"backbone.spattns.\g<i>.ln2.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.mlp\.fc1\." + _WB, r"backbone.spattns.\g<i>.ffn.layers.0.0.\g<p>"),
    (r"interaction_layers\.(?P<i>\d+)\.mlp\.fc2\." + _WB, r"backbone.spattns.\g<i>.ffn.layers.1.\g<p>"),
])
# fmt: on


def _mmcv_head_rules(head: str) -> list[Rule]:
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


def original_rules(decoder_variant: str) -> list[Rule]:
    """Every rule for a model with this decoder variant (`"upernet"` or `"lwc"`): backbone, then heads."""
    return _ORIGINAL_BACKBONE_RULES + _HEAD_RULES[decoder_variant]


def find_rule(rules: list[Rule], name: str) -> tuple[Rule, re.Match] | None:
    """The first rule whose target pattern matches all of `name`, with the match; None when none does."""
    for rule in rules:
        if match := rule.target.fullmatch(name):
            return rule, match
    return None
