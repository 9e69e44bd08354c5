"""Holistic training: the pieces `scripts/train.py` is built from (importable, so tests run the same code).

- `config`: `TrainConfig` and `parse_train_config` (YAML + `--name value` overrides).
- `build`: the model (preset, folder, or a baseline plus interaction layers).
- `data`: datasets and loaders of a run, up-front checks (layout, grid vs crop, batch size).
- `optim`: AdamW parameter groups, warm-up + polynomial schedule, frozen stages.
- `step`: one optimizer step with the spatial gradient rule.
- `evaluation`: validation through the spatial path, confusion matrix over every process.
- `checkpoint`: atomic resumable checkpoints and model folders, disk-space checks.
- `logs`: metrics.jsonl, TensorBoard, peak memory. `synthetic`: demo datasets.
"""

from .build import build_image_processor, build_model, init_from_baseline
from .checkpoint import (
    check_free_space,
    check_output_dir,
    checkpoint_bytes,
    complete_checkpoints,
    find_resume_checkpoint,
    load_training_state,
    model_bytes,
    remove_partial_writes,
    save_model_folder,
    save_training_state,
)
from .config import TrainConfig, parse_train_config
from .data import (
    RunData,
    UnreadableSceneError,
    batches_forever,
    build_loaders,
    check_batch_size,
    load_run_data,
)
from .evaluation import evaluate
from .logs import RunLog, read_metrics
from .optim import (
    build_optimizer,
    build_scheduler,
    freeze,
    frozen_modules,
    lr_factor,
    param_groups,
    set_train_mode,
)
from .step import StepResult, train_step
from .synthetic import write_synthetic_dataset

__all__ = [
    "RunData",
    "UnreadableSceneError",
    "RunLog",
    "StepResult",
    "TrainConfig",
    "batches_forever",
    "build_image_processor",
    "build_loaders",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "check_batch_size",
    "check_free_space",
    "check_output_dir",
    "checkpoint_bytes",
    "complete_checkpoints",
    "evaluate",
    "find_resume_checkpoint",
    "freeze",
    "frozen_modules",
    "init_from_baseline",
    "load_run_data",
    "load_training_state",
    "lr_factor",
    "model_bytes",
    "param_groups",
    "parse_train_config",
    "read_metrics",
    "remove_partial_writes",
    "save_model_folder",
    "save_training_state",
    "set_train_mode",
    "train_step",
    "write_synthetic_dataset",
]
