"""Converted model folders: written atomically (temporary sibling folder, then rename), with their model card."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from huggingface_hub import ModelCard

from ..models import RestConfig, RestForSemanticSegmentation, RestImageProcessor
from .report import ConversionError, ConversionReport


def check_output(output_dir: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless `overwrite`) or that is not a model folder; call it before any work."""
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
    check_output(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        image_processor.save_pretrained(staging)
        card.save(staging / "README.md")
        check_output(output_dir, overwrite)
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


def conversion_card(
    config: RestConfig,
    report: ConversionReport,
    processor: RestImageProcessor,
    summary: str,
    *,
    training_dataset: str | None = None,
) -> ModelCard:
    """The model card of a converted folder; its notes say how the folder was made, then give the report."""
    from ..hub.card import render_model_card

    skip = ("written", "architecture")
    details = "\n".join(f"- {line}" for line in report.lines() if not line.startswith(skip))
    return render_model_card(
        config,
        notes=f"{summary}\n\nConversion report:\n\n{details}",
        image_processor=processor,
        license="other",
        training_dataset=training_dataset,
    )
