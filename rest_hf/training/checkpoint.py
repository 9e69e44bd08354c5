"""Checkpoints of a run: resumable training state and `save_pretrained` model folders, both written atomically.

Layout under `output_dir`:

- `checkpoints/step-N/`: accelerate state (optimizer, loss scaler, per-process RNG, registered model and
  scheduler) plus `train_state.json` (step, sampler position, best mIoU). Every process writes its part into
  `checkpoints/.tmp-step-N/`; the first process adds `train_state.json` last and renames the folder, so a run
  killed while saving leaves only a `.tmp-` folder, which resuming ignores and removes.
- `best/`, `final/`: `save_pretrained` folders (config with classes and palette, weights, image processor,
  README model card with the validation results), written by the first process into a temporary sibling and
  renamed into place (`rest_hf.conversion.write_model_folder`).

Resuming needs the same number of processes for an exact continuation (one RNG file per process) and a file
system that every process sees (one machine, or shared storage).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..conversion import write_model_folder
from ..data import DatasetInfo
from ..distributed import barrier, run_on_main
from ..hub.card import dataset_names, render_model_card, segmentation_eval_results

CHECKPOINTS = "checkpoints"
STATE_FILE = "train_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Room left free besides the estimate (file system metadata, logs, the model card).
DISK_MARGIN_BYTES = 64 * 2**20


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """`(step, folder)` of every complete checkpoint under `output_dir/checkpoints`, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        match = _STEP_DIR.match(folder.name)
        if match and (folder / STATE_FILE).is_file():
            found.append((int(match[1]), folder))
    return sorted(found)


def find_resume_checkpoint(output_dir: str | Path, resume: str) -> Path | None:
    """The checkpoint to resume from: `auto` (the last complete one, or none), `never`, or a folder."""
    found = complete_checkpoints(output_dir)
    if resume == "auto":
        return found[-1][1] if found else None
    if resume == "never":
        if found:
            raise ValueError(
                f"{output_dir} holds checkpoints of an earlier run (up to step {found[-1][0]}) and resume is 'never'; "
                "use --resume auto to continue it, or another --output_dir"
            )
        return None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ValueError(
            f"resume {resume!r} is not a complete checkpoint folder (no {STATE_FILE}); use auto or never"
        )
    return path


def remove_partial_writes(output_dir: str | Path) -> list[Path]:
    """Delete the leftovers of interrupted saves (`checkpoints/.tmp-*`, `.NAME.tmp-*` model folders)."""
    output_dir = Path(output_dir)
    leftovers = [*output_dir.glob(".*.tmp-*"), *output_dir.glob(".*.old-*")]
    if (output_dir / CHECKPOINTS).is_dir():
        leftovers += list((output_dir / CHECKPOINTS).glob(".tmp-*"))
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict (one copy of the weights and buffers)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def checkpoint_bytes(model: nn.Module) -> int:
    """Expected size of a training checkpoint: the weights plus AdamW's two moments per trainable parameter."""
    moments = sum(2 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return model_bytes(model) + moments


def check_output_dir(folder: str | Path) -> None:
    """Raise a `ValueError` unless `folder` is an existing folder or a path where one can be created.

    Checked before anything is built, so a run that could never save does not start (an existing regular file
    used to end the run in `FileExistsError` when the first file was written).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"--output_dir {folder} is an existing file, not a folder; choose a new or existing folder"
        )
    probe = folder.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(
            f"--output_dir {folder} cannot be created: {probe} is a file, not a folder; choose another path"
        )


def check_free_space(folder: str | Path, needed: int, what: str) -> None:
    """Raise a `ValueError` when the file system of `folder` has less than `needed` bytes (plus a margin) free."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed + DISK_MARGIN_BYTES:
        raise ValueError(
            f"not enough disk space for {what} in {folder}: about {_gb(needed + DISK_MARGIN_BYTES)} needed, "
            f"{_gb(free)} free; free some space, lower keep_checkpoints, or choose another --output_dir"
        )


def _gb(size: int) -> str:
    return f"{size / 2**30:.2f} GB" if size >= 2**28 else f"{size / 2**20:.1f} MB"


def save_training_state(
    accelerator: Any, output_dir: str | Path, step: int, state: Mapping[str, Any], needed: int, keep: int
) -> Path:
    """Write a resumable checkpoint of step `step` (collective: every process calls it).

    Args:
        accelerator: The run's `Accelerator`, with the model and scheduler registered for checkpointing.
        output_dir: The run folder.
        step: Optimizer steps done.
        state: JSON-serialisable training state (sampler position, best mIoU, ...).
        needed: Expected size in bytes (`checkpoint_bytes`), checked against the free space first.
        keep: Complete checkpoints to keep; older ones are deleted once this one is complete.

    Raises:
        ValueError: on every process, before anything is written, when the disk is too full.
    """
    root = Path(output_dir) / CHECKPOINTS
    staging, final = root / f".tmp-step-{step}", root / f"step-{step}"

    def prepare() -> None:
        root.mkdir(parents=True, exist_ok=True)
        check_free_space(root, needed, f"the step-{step} checkpoint")
        shutil.rmtree(staging, ignore_errors=True)

    run_on_main(prepare)
    accelerator.save_state(str(staging))
    barrier()

    def publish() -> None:
        (staging / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        for _, old in complete_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    run_on_main(publish)
    return final


def load_training_state(accelerator: Any, folder: str | Path) -> dict[str, Any]:
    """Restore the accelerate state of `folder` (every process) and return its `train_state.json`."""
    folder = Path(folder)
    accelerator.load_state(str(folder))
    return json.loads((folder / STATE_FILE).read_text())


def metrics_eval_results(metrics: Mapping[str, Any], info: DatasetInfo, split: str) -> list:
    """`EvalResult`s for the model card from `metrics_to_json`'s dict: mIoU and per-class IoU in percent."""
    per_class = {
        info.id2label[i]: 100.0 * float(v)
        for i, v in enumerate(metrics["per_category_iou"])
        if v is not None  # None: the class is absent from the split
    }
    name = info.title or info.name
    return segmentation_eval_results(name, 100.0 * metrics["mean_iou"], per_class, split=split)


def save_model_folder(
    folder: str | Path,
    model: nn.Module,
    processor: Any,
    info: DatasetInfo,
    notes: str,
    metrics: Mapping[str, Any] | None = None,
    split: str = "val",
    base_model: str | None = None,
) -> Path:
    """Write a `save_pretrained` folder with image processor and model card (collective: the first process
    writes, every process returns its path or raises its error). `metrics`: the validation as
    `metrics_to_json` gives it, shown on the card.

    Raises:
        ValueError: when the disk is too full for one more copy of the weights.
    """
    folder = Path(folder)

    def write() -> Path:
        check_free_space(folder.parent, model_bytes(model), f"the model folder {folder.name}")
        has_results = metrics is not None and metrics.get("mean_iou") is not None
        card = render_model_card(
            model.config,
            eval_results=metrics_eval_results(metrics, info, split) if has_results else None,
            image_processor=processor,
            training_dataset=info.name if info.name in dataset_names() else None,
            # The card's base_model is a Hub id: local folders and preset names are left out.
            base_model=base_model
            if base_model and "/" in base_model and not Path(base_model).exists()
            else None,
            notes=notes,
        )
        return write_model_folder(folder, model, processor, card, overwrite=True)

    return run_on_main(write)


__all__ = [
    "CHECKPOINTS",
    "STATE_FILE",
    "check_free_space",
    "check_output_dir",
    "checkpoint_bytes",
    "complete_checkpoints",
    "find_resume_checkpoint",
    "load_training_state",
    "model_bytes",
    "remove_partial_writes",
    "save_model_folder",
    "save_training_state",
]
