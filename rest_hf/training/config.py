"""`TrainConfig`: every knob of `scripts/train.py`, read from a YAML file plus `--name value` overrides.

```
python scripts/train.py scripts/configs/tiny-cpu.yaml --max_steps 3 --output_dir runs/try
```

The YAML file holds any subset of the fields below (unknown keys are refused, so a typo never trains with a
default silently); command-line overrides come after it and win. `transformers.HfArgumentParser` builds the
parser from the dataclass, so `python scripts/train.py --help` lists every field with its help text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..spatial.partition import parse_grid

AUGMENTS = ("rest", "nadir", "none")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TrainConfig:
    """Training run configuration (see `scripts/configs/*.yaml` for the paper's recipes).

    The batch is counted per spatial group: `batch_size` samples are split over the `grid`'s processes, and
    `world_size / (rows * cols)` groups each read their own samples, so one optimizer step sees
    `batch_size * gradient_accumulation_steps * dp_size` samples.
    """

    # ---------------------------------------------------------------------------------------------- model
    model: str | None = field(
        default=None, metadata=_help("preset name (tiny-swin, swin-large, ...), model folder or Hub id")
    )
    init_from: str | None = field(
        default=None,
        metadata=_help(
            "baseline folder (or Hub id) to start REST fine-tuning from: its weights are loaded and interaction "
            "layers are added on interaction_stages (the paper's stage b); give model or init_from"
        ),
    )
    interaction_stages: list[int] | None = field(
        default=None,
        metadata=_help(
            "0-based backbone stages with a global interaction layer; [] = crop baseline; default: the model's"
        ),
    )
    backbone_init: str | None = field(
        default=None,
        metadata=_help(
            "transformers backbone checkpoint (Hub id or folder) whose weights start a preset's backbone, e.g. "
            "microsoft/swin-large-patch4-window7-224-in22k"
        ),
    )
    freeze_stages: int = field(
        default=-1,
        metadata=_help(
            "-1: train everything; N >= 0: freeze the patch embedding and the first N backbone stages"
        ),
    )
    spatial_mode: Literal["exact", "regional"] = field(
        default="exact", metadata=_help("exact: identical to one process; regional: the original REST code")
    )
    activation_checkpointing: bool = field(
        default=False,
        metadata=_help(
            "recompute backbone blocks and interaction layers in backward (less memory, ~30% slower)"
        ),
    )

    # ----------------------------------------------------------------------------------------------- data
    dataset: str = field(default="", metadata=_help("dataset folder, CSV/Parquet index, or Hub dataset id"))
    layout: str = field(default="folder", metadata=_help("glh-water, fbp, whu-ohs, uavid or folder"))
    train_split: str = field(default="train", metadata=_help("split trained on"))
    val_split: str | None = field(default="val", metadata=_help("split validated on; none: no validation"))
    crop_size: str | None = field(
        default="512",
        metadata=_help("training sample size: 512, 1024x2048, or none for whole scenes (after scale jitter)"),
    )
    augment: Literal["rest", "nadir", "none"] = field(
        default="rest",
        metadata=_help(
            "rest: the paper's pipeline (scale 0.5-2, crop, h-flip, photometric); nadir: also v-flips and quarter "
            "turns; none: random crop position only"
        ),
    )
    num_workers: int = field(default=2, metadata=_help("DataLoader worker processes per process"))
    eval_window: int | None = field(
        default=None,
        metadata=_help(
            "validate scenes larger than this window by non-overlapping windows of this size (each still split "
            "over the grid); none: whole scenes"
        ),
    )
    max_eval_scenes: int | None = field(default=None, metadata=_help("validate on the first N scenes only"))

    # -------------------------------------------------------------------------------------- optimisation
    grid: str = field(
        default="1x1", metadata=_help("tiles per sample, ROWSxCOLS; must divide the process count")
    )
    batch_size: int = field(
        default=2, metadata=_help("samples per spatial group and micro-step (>= 2 for UperNet)")
    )
    gradient_accumulation_steps: int = field(default=1, metadata=_help("micro-steps per optimizer step"))
    max_steps: int = field(default=1000, metadata=_help("optimizer steps in all"))
    learning_rate: float = field(default=6e-5, metadata=_help("peak AdamW learning rate"))
    weight_decay: float = field(
        default=0.01, metadata=_help("AdamW weight decay (never on norms, biases, position tables)")
    )
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup_steps: int = field(default=1500, metadata=_help("linear warm-up steps"))
    warmup_ratio: float = field(default=1e-6, metadata=_help("learning rate at step 0, relative to the peak"))
    poly_power: float = field(
        default=1.0, metadata=_help("power of the polynomial decay to min_learning_rate")
    )
    min_learning_rate: float = field(default=0.0, metadata=_help("learning rate at max_steps"))
    grad_clip: float = field(
        default=0.0, metadata=_help("clip the global gradient norm to this; 0: no clipping")
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = field(default="no", metadata=_help("autocast precision"))
    seed: int = field(
        default=0, metadata=_help("seed of the weights, the sampling order and the augmentation")
    )

    # -------------------------------------------------------------------------------- logs and checkpoints
    output_dir: str = field(default="runs/rest", metadata=_help("metrics.jsonl, checkpoints/, best/, final/"))
    log_every: int = field(default=10, metadata=_help("steps between metrics.jsonl lines"))
    eval_every: int = field(default=1000, metadata=_help("steps between validations (0: only at the end)"))
    save_every: int = field(default=1000, metadata=_help("steps between resumable checkpoints (0: none)"))
    keep_checkpoints: int = field(
        default=2, metadata=_help("resumable checkpoints kept (older ones are deleted)")
    )
    resume: str = field(
        default="auto",
        metadata=_help(
            "auto: continue from output_dir's last complete checkpoint; never; or a checkpoint folder"
        ),
    )

    def __post_init__(self) -> None:
        if bool(self.model) == bool(self.init_from):
            raise ValueError(
                "give exactly one of model (a preset, folder or Hub id) and init_from (a baseline folder to add "
                f"interaction layers to); got model={self.model!r}, init_from={self.init_from!r}"
            )
        if not self.dataset:
            raise ValueError(
                "dataset is required: a dataset folder, index file or Hub dataset id (--dataset PATH)"
            )
        self.grid_shape  # noqa: B018  (validates the grid string)
        self.crop_size = _normalise_crop(self.crop_size)
        self.val_split = None if _is_none(self.val_split) else self.val_split
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.spatial_mode not in ("exact", "regional"):
            raise ValueError(f"spatial_mode must be exact or regional, got {self.spatial_mode!r}")
        positive = ("batch_size", "gradient_accumulation_steps", "max_steps", "log_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "num_workers", "grad_clip", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0 or not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(
                f"need 0 <= min_learning_rate ({self.min_learning_rate}) <= learning_rate ({self.learning_rate}) "
                "and learning_rate > 0"
            )
        if self.freeze_stages < -1:
            raise ValueError(f"freeze_stages must be -1 (nothing frozen) or >= 0, got {self.freeze_stages}")
        if self.eval_window is not None and self.eval_window < 1:
            raise ValueError(f"eval_window must be a positive size in pixels or none, got {self.eval_window}")

    @property
    def grid_shape(self) -> tuple[int, int]:
        """`grid` as (rows, cols)."""
        return parse_grid(self.grid)

    @property
    def crop_shape(self) -> tuple[int, int] | None:
        """`crop_size` as (height, width), or `None` for whole scenes."""
        if self.crop_size is None:
            return None
        height, _, width = self.crop_size.partition("x")
        return int(height), int(width or height)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _is_none(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and value.strip().lower() in ("", "none", "null", "whole")
    )


def _normalise_crop(value: Any) -> str | None:
    if _is_none(value):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not match or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
        raise ValueError(f"crop_size must be SIZE, HEIGHTxWIDTH or none (whole scenes), got {value!r}")
    return text if match[2] else f"{match[1]}x{match[1]}"


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def parse_train_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """A `TrainConfig` from ``[CONFIG.yaml] [--name value ...]`` (the YAML file is optional).

    Raises:
        ValueError: the YAML file is missing, is not a mapping, or names unknown fields; an option is unknown;
            a value is invalid.
        SystemExit: argparse's own refusal of a value of the wrong type (with its usage message).
    """
    from transformers import HfArgumentParser

    argv = list(argv or [])
    parser = HfArgumentParser(TrainConfig, description="Train a REST model (see scripts/train.py).")
    if argv and not argv[0].startswith("-"):
        values = load_yaml_config(argv.pop(0))
        parser.set_defaults(**values)
    parser.set_defaults(**_empty_lists(argv))
    config, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown}; options are --FIELD VALUE with the TrainConfig fields "
            f"({', '.join(config_fields())}), see --help"
        )
    return config


def _empty_lists(argv: list[str]) -> dict[str, list]:
    """Take ``--LIST_FIELD []`` out of `argv` (argparse's ``nargs="+"`` cannot express an empty list), e.g.
    ``--interaction_stages []`` for the crop baseline; returns those fields as empty lists."""
    lists = {f.name for f in dataclasses.fields(TrainConfig) if "list" in str(f.type)}
    empty = {}
    for index in range(len(argv) - 2, -1, -1):
        name = argv[index].lstrip("-").replace("-", "_")
        if argv[index].startswith("--") and name in lists and argv[index + 1] == "[]":
            empty[name] = []
            del argv[index : index + 2]
    return empty


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """The fields of a YAML config file, checked against `TrainConfig`'s field names."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"config file {path} does not exist; pass a YAML file such as scripts/configs/tiny-cpu.yaml"
        )
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ValueError(
            f"config file {path} must hold a mapping of field: value, got {type(values).__name__}"
        )
    known = set(config_fields())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"config file {path} has unknown field(s) {unknown}; known fields: {', '.join(config_fields())}"
        )
    return values


__all__ = ["TrainConfig", "config_fields", "load_yaml_config", "parse_train_config"]
