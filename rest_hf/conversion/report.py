"""What a conversion did (`ConversionReport`), the one error converters raise, and error-message listings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models import RestConfig


class ConversionError(ValueError):
    """A checkpoint that cannot be converted faithfully; the message says which keys, shapes or options."""


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


def listing(items: list[str], limit: int = 12) -> str:
    """`items` joined for an error message, at most `limit` of them, then how many more there are."""
    shown = "; ".join(items[:limit])
    return shown + (f"; ... and {len(items) - limit} more" if len(items) > limit else "")
