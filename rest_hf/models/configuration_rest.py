"""Configuration of REST (whole-scene remote-sensing segmentation): backbone, interaction layers, UperNet decoder."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from transformers import AutoConfig, ConvNextConfig, ConvNextV2Config, PretrainedConfig, SwinConfig
from transformers.configuration_utils import SubConfigSpec

SUPPORTED_BACKBONES = ("swin", "convnext", "convnextv2")
INTERACTION_PLACEMENTS = ("side", "stream")
DECODER_VARIANTS = ("upernet", "lwc")

# ImageNet statistics on the 0-255 scale, as used by the released REST checkpoints (reference section 9).
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def _stages(count: int) -> list[str]:
    return [f"stage{i}" for i in range(1, count + 1)]


class RestConfig(PretrainedConfig):
    r"""Configuration of [`RestForSemanticSegmentation`].

    REST = a transformers backbone (Swin, ConvNeXt or ConvNeXt-V2) + global interaction layers on selected stages
    + an UperNet decoder (+ an optional auxiliary FCN head). The UperNet fields keep transformers' names and
    defaults, so a `UperNetForSemanticSegmentation` state dict loads into a REST model with no interaction stages.
    The process layout (grid, number of GPUs) is never part of the configuration.

    Args:
        backbone_config (`SwinConfig | ConvNextConfig | ConvNextV2Config | dict`, *optional*):
            The backbone. Defaults to a Swin-T configuration. Its `out_features` are always set to every stage.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input bands (RGB, multispectral, hyperspectral); written into the backbone configuration.
        hidden_size (`int`, *optional*, defaults to 512):
            Channels of the UperNet decoder.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialiser of the interaction layers.
        pool_scales (`tuple[int]`, *optional*, defaults to `(1, 2, 3, 6)`):
            Output sizes of the pyramid pooling module on the last feature map.
        use_auxiliary_head (`bool`, *optional*, defaults to `True`):
            Whether to add the auxiliary FCN head (used in the training loss only).
        auxiliary_loss_weight (`float`, *optional*, defaults to 0.4):
            Weight of the auxiliary cross-entropy loss.
        auxiliary_in_channels (`int`, *optional*):
            Input channels of the auxiliary head; `None` takes the channels of the third backbone stage.
        auxiliary_channels (`int`, *optional*, defaults to 256):
            Channels of the auxiliary head.
        auxiliary_num_convs (`int`, *optional*, defaults to 1):
            Number of 3x3 convolutions in the auxiliary head.
        auxiliary_concat_input (`bool`, *optional*, defaults to `False`):
            Whether the auxiliary head concatenates its input before the classifier.
        loss_ignore_index (`int`, *optional*, defaults to 255):
            Label value that the loss and the metrics skip.
        interaction_stages (`list[int]`, *optional*, defaults to `[0, 1, 2, 3]`):
            0-based backbone stages that get a global interaction layer; `[]` gives the plain UperNet baseline.
        interaction_num_heads (`list[int]`, *optional*):
            Attention heads of the interaction layer of each backbone stage (one entry per stage). `None` takes the
            Swin stage head counts, or channels // 32 (at least 1) for ConvNeXt. Never tied to the process count.
        interaction_mlp_ratio (`float`, *optional*, defaults to 4.0):
            Hidden width of the interaction MLP relative to the stage channels.
        interaction_drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth on the interaction MLP branch (the paper's ConvNeXt uses 0.3 in training).
        interaction_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the interaction layer norms.
        interaction_placement (`str`, *optional*):
            `"side"`: the interaction acts only on the features sent to the decoder (the paper's Swin);
            `"stream"`: it acts in the backbone stream, so deeper stages see it (the paper's ConvNeXt).
            `None` picks `"side"` for Swin and `"stream"` for ConvNeXt.
        decoder_variant (`str`, *optional*, defaults to `"upernet"`):
            `"upernet"`: transformers' UperNet head. `"lwc"`: the head of the released GLH-Water REST checkpoint
            (pooled maps upsampled before their conv-BN-ReLU, an extra conv block before the classifier, logits
            resized to the last stage's size before the final upsampling).
        palette (`list[list[int]]`, *optional*):
            RGB colour of each class, used for colour tables and previews.
    """

    model_type = "rest"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="swin",
            init_kwargs={"out_features": _stages(4)},
        ),
    }

    backbone_config: dict | PretrainedConfig | None = None
    num_channels: int | None = None
    hidden_size: int = 512
    initializer_range: float = 0.02
    pool_scales: list[int] | tuple[int, ...] = (1, 2, 3, 6)
    use_auxiliary_head: bool = True
    auxiliary_loss_weight: float = 0.4
    auxiliary_in_channels: int | None = None
    auxiliary_channels: int = 256
    auxiliary_num_convs: int = 1
    auxiliary_concat_input: bool = False
    loss_ignore_index: int = 255
    interaction_stages: list[int] | tuple[int, ...] = (0, 1, 2, 3)
    interaction_num_heads: list[int] | tuple[int, ...] | None = None
    interaction_mlp_ratio: float = 4.0
    interaction_drop_path_rate: float = 0.0
    interaction_layer_norm_eps: float = 1e-5
    interaction_placement: str | None = None
    decoder_variant: str = "upernet"
    palette: list[list[int]] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        backbone = self.backbone_config
        if backbone.model_type not in SUPPORTED_BACKBONES:
            raise ValueError(
                f"backbone model_type {backbone.model_type!r} is not supported; use a SwinConfig, ConvNextConfig "
                "or ConvNextV2Config"
            )
        if backbone.model_type == "swin" and backbone.use_absolute_embeddings:
            raise ValueError(
                "Swin with use_absolute_embeddings=True ties the model to one input size; whole-scene "
                "segmentation needs use_absolute_embeddings=False"
            )
        backbone.out_features = list(backbone.stage_names[1:])
        if self.num_channels is None:
            self.num_channels = backbone.num_channels
        if self.num_channels < 1:
            raise ValueError(f"num_channels must be at least 1, got {self.num_channels}")
        backbone.num_channels = self.num_channels

        self.pool_scales = list(self.pool_scales)
        self.interaction_stages = sorted(int(s) for s in self.interaction_stages)
        num_stages = len(self.stage_channels)
        bad = [s for s in self.interaction_stages if not 0 <= s < num_stages]
        if bad or len(set(self.interaction_stages)) != len(self.interaction_stages):
            raise ValueError(
                f"interaction_stages {self.interaction_stages} must be distinct 0-based stage indices below "
                f"{num_stages}"
            )
        if self.interaction_num_heads is None:
            if backbone.model_type == "swin":
                self.interaction_num_heads = list(backbone.num_heads)
            else:
                self.interaction_num_heads = [max(1, c // 32) for c in self.stage_channels]
        self.interaction_num_heads = [int(h) for h in self.interaction_num_heads]
        if len(self.interaction_num_heads) != num_stages:
            raise ValueError(
                f"interaction_num_heads needs one entry per backbone stage ({num_stages}), got "
                f"{self.interaction_num_heads}"
            )
        for stage in self.interaction_stages:
            heads, channels = self.interaction_num_heads[stage], self.stage_channels[stage]
            if heads < 1 or channels % heads:
                raise ValueError(
                    f"interaction_num_heads[{stage}]={heads} must divide the {channels} channels of stage {stage}"
                )
        if self.interaction_placement is None:
            self.interaction_placement = "side" if backbone.model_type == "swin" else "stream"
        if self.interaction_placement not in INTERACTION_PLACEMENTS:
            raise ValueError(
                f"interaction_placement must be one of {INTERACTION_PLACEMENTS}, got {self.interaction_placement!r}"
            )
        if self.decoder_variant not in DECODER_VARIANTS:
            raise ValueError(
                f"decoder_variant must be one of {DECODER_VARIANTS}, got {self.decoder_variant!r}"
            )
        if self.palette is not None:
            self.palette = [[int(v) for v in colour] for colour in self.palette]
            if len(self.palette) != self.num_labels or any(len(c) != 3 for c in self.palette):
                raise ValueError(
                    f"palette needs one RGB triple per class ({self.num_labels} classes), got {len(self.palette)} entries"
                )

    @property
    def stage_channels(self) -> list[int]:
        """Channels of each backbone stage's feature map."""
        backbone = self.backbone_config
        if backbone.model_type == "swin":
            return [int(backbone.embed_dim * 2**i) for i in range(len(backbone.depths))]
        return list(backbone.hidden_sizes)

    @property
    def patch_size(self) -> int:
        """Stride of the backbone's patch embedding."""
        patch = self.backbone_config.patch_size
        return int(patch if isinstance(patch, int) else patch[0])

    @property
    def total_stride(self) -> int:
        """Stride of the last stage's feature map relative to the input pixels."""
        return self.patch_size * 2 ** (len(self.stage_channels) - 1)

    @property
    def spatial_alignment(self) -> int:
        """Tile alignment in pixels so that tile borders cut no patch, window or strided step at any stage.

        Swin: patch x window x 2^(stages-1) (window borders at every stage); ConvNeXt: the total stride.
        """
        if self.backbone_config.model_type == "swin":
            return self.total_stride * self.backbone_config.window_size
        return self.total_stride

    @property
    def min_input_size(self) -> int:
        """Smallest scene side in pixels the model accepts (ConvNeXt floors every stride; Swin pads)."""
        return self.total_stride if self.backbone_config.model_type != "swin" else 1

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RestConfig:
        """Build a named configuration, e.g. `RestConfig.from_preset("swin-large", num_labels=24)`.

        Args:
            name: One of `PRESETS` (`"swin-tiny"`, `"swin-base"`, `"swin-large"`, `"convnext-tiny"`,
                `"convnext-large"`, `"tiny-swin"`, `"tiny-convnext"`).
            **overrides: Any `RestConfig` field, e.g. `num_labels`, `num_channels`, `interaction_stages`.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
        backbone_cls, backbone_kwargs, rest_kwargs = copy.deepcopy(PRESETS[name])
        backbone_kwargs["out_features"] = _stages(len(backbone_kwargs["depths"]))
        kwargs = {**rest_kwargs, **overrides}
        if "backbone_config" not in overrides:
            kwargs["backbone_config"] = backbone_cls(**backbone_kwargs)
        return cls(**kwargs)


_SWIN = dict(patch_size=4, window_size=7, drop_path_rate=0.3)
PRESETS: dict[str, tuple[type, dict[str, Any], dict[str, Any]]] = {
    # The paper's models (UperNet widths of mmseg; aux head on stage 3).
    "swin-tiny": (SwinConfig, dict(_SWIN, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]), {}),
    "swin-base": (SwinConfig, dict(_SWIN, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]), {}),
    "swin-large": (
        SwinConfig,
        dict(_SWIN, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48]),
        {},
    ),
    "convnext-tiny": (
        ConvNextConfig,
        dict(hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 9, 3], drop_path_rate=0.4),
        {},
    ),
    "convnext-large": (
        ConvNextV2Config,
        dict(hidden_sizes=[192, 384, 768, 1536], depths=[3, 3, 27, 3], drop_path_rate=0.4),
        {"interaction_drop_path_rate": 0.3},
    ),
    # Tiny models for tests and CPU demos: one block per stage, a few channels.
    "tiny-swin": (
        SwinConfig,
        dict(
            patch_size=4,
            window_size=2,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 2, 2, 4],
            drop_path_rate=0.0,
        ),
        dict(hidden_size=16, auxiliary_channels=8, interaction_num_heads=[2, 2, 4, 4]),
    ),
    "tiny-convnext": (
        ConvNextV2Config,
        dict(patch_size=4, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], drop_path_rate=0.0),
        dict(hidden_size=16, auxiliary_channels=8, interaction_num_heads=[2, 2, 4, 4]),
    ),
}

__all__ = ["RestConfig", "PRESETS", "IMAGENET_MEAN_255", "IMAGENET_STD_255"]
