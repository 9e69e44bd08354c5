"""Trained models that ship inside the rest_hf package, loadable by name.

    rest-hf predict scene.tif -o labels.tif --model bluemarble-rest-tiny-convnext
    RestForSemanticSegmentation.from_pretrained(shipped_model_path("bluemarble-rest-tiny-convnext"))

Each model is a `save_pretrained` folder under `rest_hf/pretrained/models/NAME/` (config, safetensors weights,
image processor, model card with its data, licence, split, training command and test metrics), trained on a
sample dataset (`rest_hf.samples`) by `scripts/bench_real.py --ship`. A shipped name is accepted wherever a model
is (`rest_hf.loading` resolves it before presets, folders and Hub ids).
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"

#: Shipped model name -> the sample dataset (`rest_hf.samples`) it was trained and tested on.
SHIPPED_MODELS: dict[str, str] = {
    "bluemarble-rest-tiny-convnext": "bluemarble",
    "raleigh-landsat-rest-tiny-convnext": "raleigh-landsat",
}


def list_shipped_models() -> list[str]:
    """Names of the shipped models present in this installation."""
    return sorted(name for name in SHIPPED_MODELS if (MODELS_DIR / name / "config.json").is_file())


def shipped_model_path(name: str) -> Path:
    """The folder of a shipped model, for `RestForSemanticSegmentation.from_pretrained`.

    Raises:
        ValueError: `name` is not a shipped model (the message lists them).
    """
    if name not in list_shipped_models():
        shipped = ", ".join(list_shipped_models()) or "none in this installation"
        raise ValueError(f"{name!r} is not a shipped rest_hf model; shipped models: {shipped}")
    return MODELS_DIR / name


def resolve_model_source(source: str) -> str:
    """`source` itself, or the folder of the shipped model of that name (a shipped name wins over a Hub id)."""
    if source in SHIPPED_MODELS and (MODELS_DIR / source / "config.json").is_file():
        return str(MODELS_DIR / source)
    return source


__all__ = [
    "MODELS_DIR",
    "SHIPPED_MODELS",
    "list_shipped_models",
    "resolve_model_source",
    "shipped_model_path",
]
