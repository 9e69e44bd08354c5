"""PyTorch REST model: a transformers backbone, global interaction layers and an UperNet decoder.

Single-device code: nothing here knows that a scene may be split across processes. `rest_hf.spatial`'s
`parallelize_spatial` swaps modules after construction to make every layer exact on a split scene, which is
why resizing, pooling and the loss go through small modules instead of inline functional calls.

The file reads as transformers' model files do: the output class, building blocks, decode heads, the pretrained
base class, then the task model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.backbone_utils import load_backbone
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.models.convnext.modeling_convnext import ConvNextLayer
from transformers.models.convnextv2.modeling_convnextv2 import ConvNextV2Layer
from transformers.utils.generic import can_return_tuple

from .configuration_rest import RestConfig


@dataclass
class RestSemanticSegmenterOutput(SemanticSegmenterOutput):
    r"""transformers' `SemanticSegmenterOutput`, plus the attention weights of the interaction layers.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Mean cross-entropy over the labelled pixels, plus `auxiliary_loss_weight` times the auxiliary head's.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels, height, width)`):
            Class scores at the input resolution.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states`):
            As UperNet's: the embedding output `(batch_size, C_0, h_0, w_0)`, then the output of each stage
            `(batch_size, C_i, h_i, w_i)` (after the stage's interaction layer, before the backbone's feature norm).
            With a list of indices as `output_hidden_states`, the entries not asked for are `None`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            As UperNet's: Swin's window attention weights of the last block of each stage, `(batch_size *
            windows, heads, window_size**2, window_size**2)`; only with `attn_implementation="eager"` (transformers'
            sdpa attention returns no weights). `None` for ConvNeXt backbones, which have no attention.
        interaction_attentions (`tuple(torch.FloatTensor | None)`, *optional*, returned with `output_attentions=True`
        when the model has interaction layers):
            One entry per backbone stage: the softmax weights `(batch_size, heads, N_i, N_i)` of the stage's
            interaction layer over its `N_i = h_i * w_i` tokens, `None` for stages without one. These weights span
            the whole scene: N_i**2 values per head (for a 10,000 px scene at stride 4, 3.9e13), so they are
            computed only on request, from the same queries and keys as the attention itself.
    """

    interaction_attentions: tuple[torch.FloatTensor | None, ...] | None = None


class RestBilinearResize(nn.Module):
    """Bilinear resizing with `align_corners=False`, as UperNet uses everywhere."""

    def forward(self, hidden_state: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Resize (B, C, h, w) to (B, C, *size)."""
        return F.interpolate(hidden_state, size=tuple(size), mode="bilinear", align_corners=False)


class RestConvModule(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU; the names match transformers' `UperNetConvModule`."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=kernel_size, padding=padding, bias=False, dilation=dilation
        )
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ReLU()

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, out_channels, h', w')."""
        return self.activation(self.batch_norm(self.conv(hidden_state)))


class RestPyramidPoolingBlock(nn.Module):
    """Adaptive average pooling to `pool_scale` x `pool_scale` bins, then a 1x1 conv module (keys `0`, `1`)."""

    def __init__(self, pool_scale: int, in_channels: int, channels: int) -> None:
        super().__init__()
        self.add_module("0", nn.AdaptiveAvgPool2d(pool_scale))
        self.add_module("1", RestConvModule(in_channels, channels, kernel_size=1))

    @property
    def pool(self) -> nn.Module:
        """The adaptive average pooling (key `0`)."""
        return self._modules["0"]

    @property
    def conv_module(self) -> RestConvModule:
        """The 1x1 conv-BN-ReLU (key `1`)."""
        return self._modules["1"]


class RestPyramidPoolingModule(nn.Module):
    """Pyramid pooling (PSPNet) on the last feature map, as UperNet's: pool, conv module, then upsample."""

    def __init__(self, pool_scales: list[int], in_channels: int, channels: int) -> None:
        super().__init__()
        self.num_blocks = len(pool_scales)
        # UperNet registers the blocks directly under their index: keep its state-dict keys.
        for index, scale in enumerate(pool_scales):
            self.add_module(str(index), RestPyramidPoolingBlock(scale, in_channels, channels))
        self.resize = RestBilinearResize()

    @property
    def blocks(self) -> list[RestPyramidPoolingBlock]:
        """The pooling blocks, one per pool scale."""
        return [self._modules[str(index)] for index in range(self.num_blocks)]

    def forward(self, hidden_state: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, h, w) -> one (B, channels, h, w) map per pool scale."""
        size = hidden_state.shape[2:]
        return [self.resize(block.conv_module(block.pool(hidden_state)), size) for block in self.blocks]


class RestUpsampleFirstPyramidPoolingModule(RestPyramidPoolingModule):
    """Pyramid pooling of the GLH-Water REST checkpoint's head: each pooled map is upsampled before its conv module.

    ReLU does not commute with interpolation, so this differs from UperNet's order for pool scales above 1.
    """

    def forward(self, hidden_state: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, h, w) -> one (B, channels, h, w) map per pool scale."""
        size = hidden_state.shape[2:]
        return [block.conv_module(self.resize(block.pool(hidden_state), size)) for block in self.blocks]


class RestGlobalAttention(nn.Module):
    """Multi-head self-attention over every token of the scene, without positional terms.

    The fused `in_proj` holds the [q; k; v] row blocks, as `nn.MultiheadAttention`'s `in_proj_weight` does.
    `attend` and `attention_weights` are the two steps a split scene changes (`rest_hf.spatial` overrides them).
    """

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.in_proj = nn.Linear(hidden_size, 3 * hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Scaled dot-product attention of (B, heads, N, d) queries over (B, heads, N, d) keys and values."""
        return F.scaled_dot_product_attention(query, key, value)

    def attention_weights(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Softmax weights (B, heads, N, N) of (B, heads, N, d) queries over keys (what `attend` averages with)."""
        return torch.softmax(torch.matmul(query * self.scaling, key.transpose(-2, -1)), dim=-1)

    def forward(
        self, tokens: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, C) -> (B, N, C), and the (B, heads, N, N) weights when `output_attentions` (else `None`)."""
        batch, length, channels = tokens.shape
        qkv = self.in_proj(tokens).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = self.attend(query, key, value)
        weights = self.attention_weights(query, key) if output_attentions else None
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, channels)), weights


class RestDropPath(nn.Module):
    """Stochastic depth per sample (identity at inference or with rate 0)."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, ...), each sample zeroed with probability `drop_prob` and the rest rescaled."""
        if self.drop_prob == 0.0 or not self.training:
            return hidden_state
        keep = 1.0 - self.drop_prob
        shape = (hidden_state.shape[0],) + (1,) * (hidden_state.ndim - 1)
        mask = torch.rand(shape, dtype=hidden_state.dtype, device=hidden_state.device).add_(keep).floor_()
        return hidden_state / keep * mask

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class RestInteractionMLP(nn.Module):
    """The interaction layer's feed-forward part: Linear C -> ratio * C, GELU, Linear back to C."""

    def __init__(self, hidden_size: int, mlp_ratio: float) -> None:
        super().__init__()
        inner = int(hidden_size * mlp_ratio)
        self.fc1 = nn.Linear(hidden_size, inner)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(inner, hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.fc2(self.activation(self.fc1(tokens)))


class RestInteractionLayer(GradientCheckpointingLayer):
    """Global interaction layer of one stage (the "I" of SPIM).

    A pre-norm transformer encoder layer whose attention spans the whole scene, plus the outer residual of the
    released checkpoints: `out = x + layer(x)` with `layer(x) = x1 + mlp(ln(x1))`, `x1 = x + attn(ln(x))`.
    Its attention over every token of the scene holds the largest activations of whole-scene training, which is
    why it is a `GradientCheckpointingLayer`: `gradient_checkpointing_enable()` recomputes it in backward.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, mlp_ratio: float, drop_path: float, eps: float
    ) -> None:
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=eps)
        self.attention = RestGlobalAttention(hidden_size, num_heads)
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = RestInteractionMLP(hidden_size, mlp_ratio)
        self.drop_path = RestDropPath(drop_path)

    def forward(
        self, feature_map: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, h, w) map of the scene (or of this process's tile) -> (B, C, h, w), and the attention weights.

        Args:
            feature_map: A stage's feature map; its h * w positions are the tokens.
            output_attentions: Also return the (B, heads, h*w, h*w) attention weights (else `None`).
        """
        batch, channels, height, width = feature_map.shape
        tokens = feature_map.flatten(2).transpose(1, 2)
        attended, weights = self.attention(self.layernorm_before(tokens), output_attentions=output_attentions)
        attended = tokens + attended
        layer_output = attended + self.drop_path(self.mlp(self.layernorm_after(attended)))
        tokens = tokens + layer_output
        return tokens.transpose(1, 2).reshape(batch, channels, height, width), weights


class RestConvNextLayer(GradientCheckpointingLayer, ConvNextLayer):
    """transformers' `ConvNextLayer` (same parameters and keys), recomputable by `gradient_checkpointing_enable()`.

    transformers' ConvNeXt blocks are plain modules, so ConvNeXt models cannot use transformers' checkpointing;
    the REST model switches each block to this subclass when it is built.
    """


class RestConvNextV2Layer(GradientCheckpointingLayer, ConvNextV2Layer):
    """transformers' `ConvNextV2Layer` (same parameters and keys), recomputable by `gradient_checkpointing_enable()`."""


_CHECKPOINTABLE_BLOCKS: dict[type[nn.Module], type[nn.Module]] = {
    ConvNextLayer: RestConvNextLayer,
    ConvNextV2Layer: RestConvNextV2Layer,
}


class RestSegmentationLoss(nn.Module):
    """Cross-entropy averaged over the pixels whose label is not `ignore_index`.

    Written as sum / count (not `reduction="mean"`) so that a split scene can add up sums and counts exactly.
    """

    def __init__(self, ignore_index: int) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def reduce(self, loss_sum: torch.Tensor, valid_count: torch.Tensor) -> torch.Tensor:
        """Mean over valid pixels from a summed loss and a pixel count (0 when nothing is valid)."""
        return loss_sum / valid_count.clamp(min=1)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) and labels (B, H, W) -> scalar loss."""
        loss_sum = F.cross_entropy(logits, labels, ignore_index=self.ignore_index, reduction="sum")
        valid_count = (labels != self.ignore_index).sum().to(loss_sum.dtype)
        return self.reduce(loss_sum, valid_count)


class RestUperHead(nn.Module):
    """UperNet decode head (PPM + FPN), key-compatible with transformers' `UperNetHead`.

    Args:
        config: The model's `RestConfig` (`hidden_size`, `pool_scales`, `num_labels`).
        in_channels: Channels of each backbone stage's feature map.
    """

    pyramid_pooling_class: type[RestPyramidPoolingModule] = RestPyramidPoolingModule

    def __init__(self, config: RestConfig, in_channels: list[int]) -> None:
        super().__init__()
        channels = config.hidden_size
        self.classifier = nn.Conv2d(channels, config.num_labels, kernel_size=1)
        self.psp_modules = self.pyramid_pooling_class(config.pool_scales, in_channels[-1], channels)
        self.bottleneck = RestConvModule(
            in_channels[-1] + len(config.pool_scales) * channels, channels, kernel_size=3, padding=1
        )
        self.lateral_convs = nn.ModuleList(
            [RestConvModule(c, channels, kernel_size=1) for c in in_channels[:-1]]
        )
        self.fpn_convs = nn.ModuleList(
            [RestConvModule(channels, channels, kernel_size=3, padding=1) for _ in in_channels[:-1]]
        )
        self.fpn_bottleneck = RestConvModule(len(in_channels) * channels, channels, kernel_size=3, padding=1)
        self.resize = RestBilinearResize()

    def fuse(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Feature maps (B, C_i, h_i, w_i) of every stage -> fused (B, hidden_size, h_0, w_0) map."""
        return self.fpn_bottleneck(torch.cat(self.fpn_outputs(self.top_down(features)), dim=1))

    def top_down(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Feature maps of every stage -> (B, hidden_size, h_i, w_i) laterals after the top-down pathway."""
        laterals = [conv(features[i]) for i, conv in enumerate(self.lateral_convs)]
        top = features[-1]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self.resize(laterals[i], laterals[i - 1].shape[2:])
        return laterals

    def fpn_outputs(self, laterals: list[torch.Tensor]) -> list[torch.Tensor]:
        """Laterals -> the FPN conv of every level but the top (the top as it is), each resized to (h_0, w_0).

        The levels are independent of each other here (a split scene's twin exchanges their halos together).
        """
        outputs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)]
        outputs.append(laterals[-1])
        size = outputs[0].shape[2:]
        return [outputs[0], *(self.resize(output, size) for output in outputs[1:])]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Feature maps (B, C_i, h_i, w_i) of every stage -> logits (B, num_labels, h_0, w_0)."""
        return self.classifier(self.fuse(features))


class RestLwcHead(RestUperHead):
    """The decode head of the released GLH-Water REST checkpoint (`decoder_variant="lwc"`).

    UperNet's head with three changes: the pooled maps are upsampled before their conv module, an extra 3x3 conv
    module (`object_head`) runs before the classifier, and the logits come out at the last stage's size
    (1/32 of the input), so the model's final upsampling starts from there.
    """

    pyramid_pooling_class = RestUpsampleFirstPyramidPoolingModule

    def __init__(self, config: RestConfig, in_channels: list[int]) -> None:
        super().__init__(config, in_channels)
        self.object_head = RestConvModule(config.hidden_size, config.hidden_size, kernel_size=3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Feature maps (B, C_i, h_i, w_i) of every stage -> logits (B, num_labels, h_3, w_3)."""
        logits = self.classifier(self.object_head(self.fuse(features)))
        return self.resize(logits, features[-1].shape[2:])


DECODE_HEADS: dict[str, type[RestUperHead]] = {"upernet": RestUperHead, "lwc": RestLwcHead}


class RestFCNHead(nn.Module):
    """Auxiliary FCN head on one stage, key-compatible with transformers' `UperNetFCNHead`.

    Args:
        config: The model's `RestConfig` (the `auxiliary_*` fields and `num_labels`).
        in_channels: Channels of each backbone stage's feature map.
        in_index: The stage whose feature map the head reads.
        kernel_size: Kernel of its convolutions.
    """

    def __init__(
        self, config: RestConfig, in_channels: list[int], in_index: int = 2, kernel_size: int = 3
    ) -> None:
        super().__init__()
        self.in_index = in_index
        source_channels = (
            in_channels[in_index] if config.auxiliary_in_channels is None else config.auxiliary_in_channels
        )
        channels = config.auxiliary_channels
        padding = kernel_size // 2
        convs = [
            RestConvModule(source_channels if i == 0 else channels, channels, kernel_size, padding=padding)
            for i in range(config.auxiliary_num_convs)
        ]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        self.concat_input = config.auxiliary_concat_input
        if self.concat_input:
            self.conv_cat = RestConvModule(source_channels + channels, channels, kernel_size, padding=padding)
        self.classifier = nn.Conv2d(channels, config.num_labels, kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Feature maps of every stage -> logits (B, num_labels, h, w) at the size of stage `in_index`."""
        hidden_state = features[self.in_index]
        output = self.convs(hidden_state)
        if self.concat_input:
            output = self.conv_cat(torch.cat([hidden_state, output], dim=1))
        return self.classifier(output)


_CPU_ALIGNMENT_BYTES = 64


def _align_cpu_storage(module: nn.Module) -> None:
    """Copies each CPU parameter and buffer whose data is not 64-byte aligned into fresh (aligned) memory."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device.type == "cpu" and tensor.data_ptr() % _CPU_ALIGNMENT_BYTES:
                tensor.data = tensor.data.clone()


class RestPreTrainedModel(PreTrainedModel):
    """Weight initialisation, loading and the transformers flags shared by REST models.

    `base_model_prefix` names the backbone: `model.base_model` is the transformers backbone, and a checkpoint of
    that backbone alone (keys without `backbone.`) loads into it.
    `accepts_loss_kwargs = False`: the loss is a mean over one batch's labelled pixels, so `Trainer` must average
    it over accumulated batches itself rather than pass `num_items_in_batch`.
    """

    config_class = RestConfig
    config: RestConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False
    _no_split_modules: list[str] = []

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then every CPU weight moved to 64-byte aligned memory.

        transformers >= 5.24 hands out loaded weights as views into the checkpoint's buffer, most of them a few
        bytes past a 64-byte boundary. oneDNN then picks other convolution kernels, whose sums round differently
        (about 1e-9 in fp32): the loaded model would not compute bit for bit what the saved one did, so an
        evaluation during training and a later `rest-hf predict` of the same weights would disagree. One copy of
        each misaligned weight (what any first optimizer step or `.to()` would do anyway) restores that.
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        _align_cpu_storage(model)
        return loaded

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RestInteractionLayer):
            for linear in (
                module.attention.in_proj,
                module.attention.out_proj,
                module.mlp.fc1,
                module.mlp.fc2,
            ):
                nn.init.trunc_normal_(linear.weight, std=self.config.initializer_range)
                nn.init.zeros_(linear.bias)


class _Encoded(NamedTuple):
    """What the backbone and the interaction layers hand to the heads and to the output."""

    features: list[torch.Tensor]  # normed feature map of each stage, for the heads
    hidden_states: list[torch.Tensor] | None  # embedding output, then each stage's output
    attentions: tuple[torch.Tensor, ...] | None  # the backbone's (Swin: last block of each stage)
    interaction_attentions: tuple[torch.Tensor | None, ...] | None  # one per stage


class RestForSemanticSegmentation(RestPreTrainedModel):
    """REST for whole-scene semantic segmentation: backbone + interaction layers + UperNet (+ auxiliary FCN).

    The backbone is transformers' `SwinBackbone`, `ConvNextBackbone` or `ConvNextV2Backbone`, run stage by stage so
    that each selected stage's interaction layer sees the stage's output (`config.interaction_placement`). With
    `interaction_stages=[]` the model is transformers' `UperNetForSemanticSegmentation`: same state-dict keys, same
    logits, same hidden states and attentions.

    `gradient_checkpointing_enable()` makes every backbone block and every interaction layer recompute its
    activations in backward instead of storing them (same loss and gradients; on a split scene the recomputed
    blocks repeat their communication in the same order on every process).
    """

    def __init__(self, config: RestConfig) -> None:
        super().__init__(config)
        self.backbone = load_backbone(config)
        for module in self.backbone.modules():
            checkpointable = _CHECKPOINTABLE_BLOCKS.get(type(module))
            if checkpointable is not None:
                module.__class__ = checkpointable
        channels = config.stage_channels
        self.interaction_layers = nn.ModuleDict(
            {
                str(stage): RestInteractionLayer(
                    channels[stage],
                    config.interaction_num_heads[stage],
                    config.interaction_mlp_ratio,
                    config.interaction_drop_path_rate,
                    config.interaction_layer_norm_eps,
                )
                for stage in config.interaction_stages
            }
        )
        self.decode_head = DECODE_HEADS[config.decoder_variant](config, in_channels=channels)
        self.auxiliary_head = RestFCNHead(config, in_channels=channels) if config.use_auxiliary_head else None
        self.resize = RestBilinearResize()
        self.pixel_cross_entropy = RestSegmentationLoss(config.loss_ignore_index)
        self.post_init()

    def _interact(
        self, stage: int, feature_map: torch.Tensor, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stage's interaction layer applied to (B, C, h, w), or the map unchanged if the stage has none."""
        if str(stage) not in self.interaction_layers:
            return feature_map, None
        return self.interaction_layers[str(stage)](feature_map, output_attentions=output_attentions)

    def _encode_swin(
        self, pixel_values: torch.Tensor, output_hidden_states: bool, output_attentions: bool, **kwargs: Any
    ) -> _Encoded:
        """Run transformers' SwinBackbone stage by stage, inserting the interaction layers.

        SwinBackbone itself runs the encoder with `always_partition=True` and takes each stage's tokens before
        downsampling; the interaction layer sits between those tokens and `hidden_states_norms`.
        """
        swin = self.backbone.swin
        hidden, (height, width) = swin.embeddings(pixel_values)
        batch = hidden.shape[0]
        features, interaction_attentions = [], []
        hidden_states = (
            [hidden.transpose(1, 2).reshape(batch, -1, height, width)] if output_hidden_states else None
        )
        attentions = [] if output_attentions else None
        for stage, layer in enumerate(swin.encoder.layers):
            for block in layer.blocks:
                hidden, block_weights = block(
                    hidden,
                    (height, width),
                    always_partition=True,
                    output_attentions=output_attentions,
                    **kwargs,
                )
            if attentions is not None and block_weights is not None:
                attentions.append(block_weights)
            feature_map = hidden.transpose(1, 2).reshape(batch, -1, height, width)
            interacted, weights = self._interact(stage, feature_map, output_attentions)
            interaction_attentions.append(weights)
            if self.config.interaction_placement == "stream":
                hidden = interacted.flatten(2).transpose(1, 2)
            if hidden_states is not None:
                hidden_states.append(interacted)
            tokens = interacted.flatten(2).transpose(1, 2)
            norm = self.backbone.hidden_states_norms[f"stage{stage + 1}"]
            features.append(norm(tokens).transpose(1, 2).reshape(batch, -1, height, width))
            if layer.downsample is not None:
                hidden = layer.downsample(hidden, (height, width))
                height, width = (height + 1) // 2, (width + 1) // 2
        return _Encoded(
            features,
            hidden_states,
            None if attentions is None else tuple(attentions),
            tuple(interaction_attentions),
        )

    def _encode_convnext(
        self, pixel_values: torch.Tensor, output_hidden_states: bool, output_attentions: bool, **kwargs: Any
    ) -> _Encoded:
        """Run transformers' ConvNextBackbone / ConvNextV2Backbone stage by stage with the interaction layers."""
        hidden = self.backbone.embeddings(pixel_values)
        hidden_states = [hidden] if output_hidden_states else None
        features, interaction_attentions = [], []
        for stage, layer in enumerate(self.backbone.encoder.stages):
            hidden = layer(hidden)
            interacted, weights = self._interact(stage, hidden, output_attentions)
            interaction_attentions.append(weights)
            if self.config.interaction_placement == "stream":
                hidden = interacted
            if hidden_states is not None:
                hidden_states.append(interacted)
            features.append(self.backbone.hidden_states_norms[f"stage{stage + 1}"](interacted))
        # ConvNeXt has no attention: like UperNet's, its backbone attentions are None.
        return _Encoded(features, hidden_states, None, tuple(interaction_attentions))

    def _check_inputs(self, pixel_values: torch.Tensor, labels: torch.Tensor | None) -> None:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = (
                tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            )
            raise ValueError(
                f"pixel_values must be a 4-D tensor (batch, bands, height, width), got {shape}; add a batch "
                "dimension with pixel_values[None]"
            )
        bands = pixel_values.shape[1]
        if bands != self.config.num_channels:
            raise ValueError(
                f"pixel_values has {bands} bands but the model expects {self.config.num_channels}; select bands "
                f"(e.g. --bands) or build the model with num_channels={bands}"
            )
        minimum = self.config.min_input_size
        if min(pixel_values.shape[2:]) < minimum:
            raise ValueError(
                f"scene {pixel_values.shape[2]}x{pixel_values.shape[3]} px is smaller than the model's minimum "
                f"{minimum}x{minimum} px; pad the scene to at least {minimum} px per side"
            )
        if labels is not None:
            expected = (pixel_values.shape[0], *pixel_values.shape[2:])
            if labels.shape != expected:
                raise ValueError(
                    f"labels must have shape (batch, height, width) = {expected}, got {tuple(labels.shape)}"
                )
            if labels.is_floating_point():
                raise ValueError(f"labels must be an integer tensor of class ids, got {labels.dtype}")
            if self.config.num_labels == 1:
                raise ValueError("the number of labels must be greater than one to compute a loss")

    def _select_hidden_states(
        self, hidden_states: list[torch.Tensor], output_hidden_states: bool | int | list[int]
    ) -> tuple[torch.Tensor | None, ...]:
        """All hidden states (`True`), or only those at the given indices (transformers 5.x), `None` elsewhere.

        Negative indices count from the end; indices out of range select nothing, as in transformers.
        """
        if isinstance(output_hidden_states, bool):
            return tuple(hidden_states)
        indices = [output_hidden_states] if isinstance(output_hidden_states, int) else output_hidden_states
        count = len(hidden_states)
        keep = {index % count for index in indices if -count <= index < count}
        return tuple(state if index in keep else None for index, state in enumerate(hidden_states))

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        **kwargs: Any,
    ) -> RestSemanticSegmenterOutput:
        """Segment whole scenes.

        Args:
            pixel_values: (B, num_channels, H, W) normalised bands.
            labels: (B, H, W) class ids; `config.loss_ignore_index` marks pixels the loss skips.
            output_attentions: Also return the backbone's attention weights (`attentions`, as UperNet's) and the
                interaction layers' (`interaction_attentions`: over the whole scene, so they may be huge).
            output_hidden_states: Also return the embedding output and each stage's output; `True` for all of
                them, or an index or a list of indices (negative ones count from the end) for only those.
            **kwargs: `return_dict=False` returns a tuple of the non-`None` fields; other keywords go to the Swin
                blocks' attention, as transformers' Swin passes them.

        Returns:
            `RestSemanticSegmenterOutput` with `logits` (B, num_labels, H, W) at input resolution and, with labels,
            the cross-entropy loss plus `auxiliary_loss_weight` times the auxiliary head's loss.
        """
        self._check_inputs(pixel_values, labels)
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        # As in transformers, a falsy value (False, 0, []) asks for no hidden states.
        wants_hidden_states = bool(output_hidden_states)
        encode = (
            self._encode_swin if self.config.backbone_config.model_type == "swin" else self._encode_convnext
        )
        encoded = encode(pixel_values, wants_hidden_states, bool(output_attentions), **kwargs)

        size = pixel_values.shape[2:]
        logits = self.resize(self.decode_head(encoded.features), size)
        loss = None
        if labels is not None:
            loss = self.pixel_cross_entropy(logits, labels)
            if self.auxiliary_head is not None:
                auxiliary_logits = self.resize(self.auxiliary_head(encoded.features), size)
                auxiliary_loss = self.pixel_cross_entropy(auxiliary_logits, labels)
                loss = loss + self.config.auxiliary_loss_weight * auxiliary_loss

        return RestSemanticSegmenterOutput(
            loss=loss,
            logits=logits,
            hidden_states=(
                self._select_hidden_states(encoded.hidden_states, output_hidden_states)
                if wants_hidden_states
                else None
            ),
            attentions=encoded.attentions,
            interaction_attentions=(
                encoded.interaction_attentions if output_attentions and len(self.interaction_layers) else None
            ),
        )


__all__ = [
    "RestForSemanticSegmentation",
    "RestPreTrainedModel",
    "RestSemanticSegmenterOutput",
    "RestInteractionLayer",
    "RestGlobalAttention",
    "RestUperHead",
    "RestLwcHead",
    "RestFCNHead",
    "RestPyramidPoolingModule",
    "RestUpsampleFirstPyramidPoolingModule",
    "RestConvNextLayer",
    "RestConvNextV2Layer",
    "RestConvModule",
    "RestBilinearResize",
    "RestSegmentationLoss",
]
