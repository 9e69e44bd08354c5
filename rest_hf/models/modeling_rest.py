"""PyTorch REST model: a transformers backbone, global interaction layers and an UperNet decoder.

Single-device code: nothing here knows that a scene may be split across processes. `rest_hf.spatial`'s
`parallelize_spatial` swaps modules after construction to make every layer exact on a split scene, which is
why resizing, pooling and the loss go through small modules instead of inline functional calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.backbone_utils import load_backbone
from transformers.modeling_outputs import SemanticSegmenterOutput

from .configuration_rest import RestConfig


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
        return self.activation(self.batch_norm(self.conv(hidden_state)))


class RestPyramidPoolingBlock(nn.Module):
    """Adaptive average pooling to `pool_scale` x `pool_scale` bins, then a 1x1 conv module (keys `0`, `1`)."""

    def __init__(self, pool_scale: int, in_channels: int, channels: int) -> None:
        super().__init__()
        self.add_module("0", nn.AdaptiveAvgPool2d(pool_scale))
        self.add_module("1", RestConvModule(in_channels, channels, kernel_size=1))

    @property
    def pool(self) -> nn.Module:
        return self._modules["0"]

    @property
    def conv_module(self) -> RestConvModule:
        return self._modules["1"]


class RestPyramidPoolingModule(nn.Module):
    """Pyramid pooling (PSPNet) on the last feature map.

    With `upsample_first=False` (UperNet) each pooled map goes through its conv module and is then upsampled;
    with `upsample_first=True` (the GLH-Water checkpoint's head) it is upsampled first. ReLU does not commute
    with interpolation, so the two differ for pool scales above 1.
    """

    def __init__(
        self, pool_scales: list[int], in_channels: int, channels: int, upsample_first: bool = False
    ) -> None:
        super().__init__()
        self.upsample_first = upsample_first
        self.num_blocks = len(pool_scales)
        # UperNet registers the blocks directly under their index: keep its state-dict keys.
        for index, scale in enumerate(pool_scales):
            self.add_module(str(index), RestPyramidPoolingBlock(scale, in_channels, channels))
        self.resize = RestBilinearResize()

    @property
    def blocks(self) -> list[RestPyramidPoolingBlock]:
        return [self._modules[str(index)] for index in range(self.num_blocks)]

    def forward(self, hidden_state: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, h, w) -> one (B, channels, h, w) map per pool scale."""
        size = hidden_state.shape[2:]
        outputs = []
        for block in self.blocks:
            pooled = block.pool(hidden_state)
            if self.upsample_first:
                outputs.append(block.conv_module(self.resize(pooled, size)))
            else:
                outputs.append(self.resize(block.conv_module(pooled), size))
        return outputs


class RestUperHead(nn.Module):
    """UperNet decode head (PPM + FPN), key-compatible with transformers' `UperNetHead`.

    The `lwc` variant adds `object_head` (3x3 conv module) before the classifier and resizes the logits to the
    last stage's size, as the released GLH-Water REST checkpoint does.
    """

    def __init__(self, config: RestConfig, in_channels: list[int]) -> None:
        super().__init__()
        self.variant = config.decoder_variant
        channels = config.hidden_size
        self.classifier = nn.Conv2d(channels, config.num_labels, kernel_size=1)
        self.psp_modules = RestPyramidPoolingModule(
            config.pool_scales, in_channels[-1], channels, upsample_first=self.variant == "lwc"
        )
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
        self.object_head = (
            RestConvModule(channels, channels, kernel_size=3, padding=1) if self.variant == "lwc" else None
        )
        self.resize = RestBilinearResize()

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Feature maps (B, C_i, h_i, w_i) of every stage -> logits (B, num_labels, h_0, w_0) (lwc: h_3, w_3)."""
        laterals = [conv(features[i]) for i, conv in enumerate(self.lateral_convs)]
        top = features[-1]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))

        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self.resize(laterals[i], laterals[i - 1].shape[2:])

        outputs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)]
        outputs.append(laterals[-1])
        for i in range(len(outputs) - 1, 0, -1):
            outputs[i] = self.resize(outputs[i], outputs[0].shape[2:])
        hidden_state = self.fpn_bottleneck(torch.cat(outputs, dim=1))
        if self.object_head is not None:
            hidden_state = self.object_head(hidden_state)
        logits = self.classifier(hidden_state)
        if self.variant == "lwc":
            logits = self.resize(logits, top.shape[2:])
        return logits


class RestFCNHead(nn.Module):
    """Auxiliary FCN head on one stage, key-compatible with transformers' `UperNetFCNHead`."""

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
        hidden_state = features[self.in_index]
        output = self.convs(hidden_state)
        if self.concat_input:
            output = self.conv_cat(torch.cat([hidden_state, output], dim=1))
        return self.classifier(output)


class RestGlobalAttention(nn.Module):
    """Multi-head self-attention over every token of the scene, without positional terms.

    The fused `in_proj` holds the [q; k; v] row blocks, as `nn.MultiheadAttention`'s `in_proj_weight` does.
    """

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.in_proj = nn.Linear(hidden_size, 3 * hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Scaled dot-product attention of (B, heads, N, d) queries over (B, heads, N, d) keys and values."""
        return F.scaled_dot_product_attention(query, key, value)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        batch, length, channels = tokens.shape
        qkv = self.in_proj(tokens).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = self.attend(query, key, value)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, channels))


class RestDropPath(nn.Module):
    """Stochastic depth per sample (identity at inference or with rate 0)."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_state
        keep = 1.0 - self.drop_prob
        shape = (hidden_state.shape[0],) + (1,) * (hidden_state.ndim - 1)
        mask = torch.rand(shape, dtype=hidden_state.dtype, device=hidden_state.device).add_(keep).floor_()
        return hidden_state / keep * mask


class RestInteractionMLP(nn.Module):
    def __init__(self, hidden_size: int, mlp_ratio: float) -> None:
        super().__init__()
        inner = int(hidden_size * mlp_ratio)
        self.fc1 = nn.Linear(hidden_size, inner)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(inner, hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(tokens)))


class RestInteractionLayer(nn.Module):
    """Global interaction layer of one stage (the "I" of SPIM).

    A pre-norm transformer encoder layer whose attention spans the whole scene, plus the outer residual of the
    released checkpoints: `out = x + layer(x)` with `layer(x) = x1 + mlp(ln(x1))`, `x1 = x + attn(ln(x))`.
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

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens of the scene (or of this process's tile) -> (B, N, C)."""
        attended = tokens + self.attention(self.layernorm_before(tokens))
        layer_output = attended + self.drop_path(self.mlp(self.layernorm_after(attended)))
        return tokens + layer_output

    def forward_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, h, w), applying the layer to the flattened tokens."""
        batch, channels, height, width = feature_map.shape
        tokens = feature_map.flatten(2).transpose(1, 2)
        return self.forward(tokens).transpose(1, 2).reshape(batch, channels, height, width)


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


_CPU_ALIGNMENT_BYTES = 64


def _align_cpu_storage(module: nn.Module) -> None:
    """Copies each CPU parameter and buffer whose data is not 64-byte aligned into fresh (aligned) memory."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device.type == "cpu" and tensor.data_ptr() % _CPU_ALIGNMENT_BYTES:
                tensor.data = tensor.data.clone()


class RestPreTrainedModel(PreTrainedModel):
    config_class = RestConfig
    config: RestConfig
    base_model_prefix = "rest"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
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


class RestForSemanticSegmentation(RestPreTrainedModel):
    """REST for whole-scene semantic segmentation: backbone + interaction layers + UperNet (+ auxiliary FCN)."""

    def __init__(self, config: RestConfig) -> None:
        super().__init__(config)
        self.backbone = load_backbone(config)
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
        self.decode_head = RestUperHead(config, in_channels=channels)
        self.auxiliary_head = RestFCNHead(config, in_channels=channels) if config.use_auxiliary_head else None
        self.resize = RestBilinearResize()
        self.loss_function_module = RestSegmentationLoss(config.loss_ignore_index)
        self.post_init()

    def _interact(self, stage: int, feature_map: torch.Tensor) -> torch.Tensor:
        if str(stage) not in self.interaction_layers:
            return feature_map
        return self.interaction_layers[str(stage)].forward_map(feature_map)

    def _swin_features(self, pixel_values: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run transformers' SwinBackbone stage by stage, inserting the interaction layers.

        SwinBackbone itself runs the encoder with `always_partition=True` and takes each stage's tokens before
        downsampling; the interaction layer sits between those tokens and `hidden_states_norms`.
        """
        swin = self.backbone.swin
        hidden, (height, width) = swin.embeddings(pixel_values)
        batch = hidden.shape[0]
        features, stage_outputs = [], []
        for stage, layer in enumerate(swin.encoder.layers):
            for block in layer.blocks:
                hidden, _ = block(hidden, (height, width), always_partition=True)
            feature_map = hidden.transpose(1, 2).reshape(batch, -1, height, width)
            interacted = self._interact(stage, feature_map)
            if self.config.interaction_placement == "stream":
                feature_map = interacted
                hidden = feature_map.flatten(2).transpose(1, 2)
            stage_outputs.append(interacted)
            tokens = interacted.flatten(2).transpose(1, 2)
            norm = self.backbone.hidden_states_norms[f"stage{stage + 1}"]
            features.append(norm(tokens).transpose(1, 2).reshape(batch, -1, height, width))
            if layer.downsample is not None:
                hidden = layer.downsample(hidden, (height, width))
                height, width = (height + 1) // 2, (width + 1) // 2
        return features, stage_outputs

    def _convnext_features(self, pixel_values: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run transformers' ConvNextBackbone / ConvNextV2Backbone stage by stage with the interaction layers."""
        hidden = self.backbone.embeddings(pixel_values)
        features, stage_outputs = [], []
        for stage, layer in enumerate(self.backbone.encoder.stages):
            hidden = layer(hidden)
            interacted = self._interact(stage, hidden)
            if self.config.interaction_placement == "stream":
                hidden = interacted
            stage_outputs.append(interacted)
            features.append(self.backbone.hidden_states_norms[f"stage{stage + 1}"](interacted))
        return features, stage_outputs

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

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SemanticSegmenterOutput | tuple:
        """Segment whole scenes.

        Args:
            pixel_values: (B, num_channels, H, W) normalised bands.
            labels: (B, H, W) class ids; `config.loss_ignore_index` marks pixels the loss skips.
            output_hidden_states: Also return each stage's output (after its interaction layer, before the norm).
            return_dict: Return a `SemanticSegmenterOutput` (default) or a tuple.

        Returns:
            `SemanticSegmenterOutput` with `logits` (B, num_labels, H, W) at input resolution and, with labels, the
            cross-entropy loss plus `auxiliary_loss_weight` times the auxiliary head's loss.
        """
        self._check_inputs(pixel_values, labels)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if self.config.backbone_config.model_type == "swin":
            features, stage_outputs = self._swin_features(pixel_values)
        else:
            features, stage_outputs = self._convnext_features(pixel_values)

        size = pixel_values.shape[2:]
        logits = self.resize(self.decode_head(features), size)
        loss = None
        if labels is not None:
            loss = self.loss_function_module(logits, labels)
            if self.auxiliary_head is not None:
                auxiliary_logits = self.resize(self.auxiliary_head(features), size)
                auxiliary_loss = self.loss_function_module(auxiliary_logits, labels)
                loss = loss + self.config.auxiliary_loss_weight * auxiliary_loss

        hidden_states = tuple(stage_outputs) if output_hidden_states else None
        if not return_dict:
            output = (logits,) + ((hidden_states,) if hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=hidden_states)


__all__ = [
    "RestForSemanticSegmentation",
    "RestPreTrainedModel",
    "RestInteractionLayer",
    "RestGlobalAttention",
    "RestUperHead",
    "RestFCNHead",
    "RestPyramidPoolingModule",
    "RestConvModule",
    "RestBilinearResize",
    "RestSegmentationLoss",
]
