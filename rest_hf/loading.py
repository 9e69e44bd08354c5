"""Resolve what users name a model by: a preset, a shipped model's name (`rest_hf.pretrained`), a
`save_pretrained` folder or a Hub id (with a revision).

Every failure becomes one `ValueError` line that says what was looked for and how to fix it, instead of the
long chain of hub, HTTP and JSON errors `from_pretrained` raises.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .models import PRESETS, RestConfig, RestForSemanticSegmentation, RestImageProcessor
from .pretrained import resolve_model_source


def _hub_error(source: str, error: Exception) -> ValueError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    name = type(error).__name__
    if offline:
        hint = (
            "it is not in the local Hub cache and HF_HUB_OFFLINE=1; download it once online or pass a folder"
        )
    elif "RevisionNotFound" in name:
        hint = "that revision does not exist; check --revision"
    elif "RepositoryNotFound" in name or "404" in str(error):
        hint = "no such model on the Hub (or it is private: log in with `hf auth login`)"
    else:
        hint = f"{name}: {str(error).splitlines()[0] if str(error) else 'no details'}"
    return ValueError(f"cannot load model {source!r}: {hint}")


def _check_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise ValueError(
            f"{path} is not a rest_hf model folder (no config.json); pass a folder written by save_pretrained"
        )


def load_config(source: str, revision: str | None = None, **overrides: Any) -> RestConfig:
    """Config of a preset name, a shipped model, a model folder or a Hub id."""
    source = resolve_model_source(source)
    if source in PRESETS:
        return RestConfig.from_preset(source, **overrides)
    path = Path(source)
    if path.exists():
        _check_folder(path)
    try:
        config = RestConfig.from_pretrained(source, revision=revision, **overrides)
    except (OSError, ValueError) as error:
        raise _hub_error(source, error) from None
    if getattr(config, "model_type", None) != "rest":
        raise ValueError(f"{source} holds a {config.model_type!r} model, not a rest_hf model")
    return config


def load_model(source: str, revision: str | None = None, **overrides: Any) -> RestForSemanticSegmentation:
    """A `RestForSemanticSegmentation` from a preset (random weights), a shipped model, a folder or a Hub id."""
    source = resolve_model_source(source)
    if source in PRESETS:
        return RestForSemanticSegmentation(RestConfig.from_preset(source, **overrides))
    config = load_config(source, revision=revision, **overrides)
    try:
        return RestForSemanticSegmentation.from_pretrained(source, config=config, revision=revision)
    except (OSError, ValueError) as error:
        raise _hub_error(source, error) from None


def load_image_processor(source: str, config: RestConfig, revision: str | None = None) -> RestImageProcessor:
    """The model's image processor; ImageNet statistics on the 0-255 scale for presets and folders without one."""
    source = resolve_model_source(source)
    if source not in PRESETS:
        try:
            return RestImageProcessor.from_pretrained(source, revision=revision)
        except OSError:
            pass
    if config.num_channels == 3:
        return RestImageProcessor()
    # Other band counts have no standard statistics: mean 0 and std 1 leave the values as they are.
    return RestImageProcessor(image_mean=[0.0] * config.num_channels, image_std=[1.0] * config.num_channels)


__all__ = ["load_config", "load_model", "load_image_processor"]
