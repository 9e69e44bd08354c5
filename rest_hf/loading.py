"""Resolve what users name a model by: a preset, a shipped model's name (`rest_hf.pretrained`), a
`save_pretrained` folder or a Hub id (with a revision).

Every failure becomes one `ValueError` line that says what is wrong and how to fix it, instead of the long
chain of hub, HTTP, JSON and safetensors errors `from_pretrained` raises: a folder that does not exist, a near
miss of a preset name, a folder without weights, a broken `config.json` or `model.safetensors`, a config field
of the wrong type, weights that do not cover the model.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from .models import PRESETS, RestConfig, RestForSemanticSegmentation, RestImageProcessor
from .pretrained import resolve_model_source

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _hub_error(source: str, error: Exception) -> ValueError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    name = type(error).__name__
    if "HFValidationError" in name or "Repo id must" in str(error):
        hint = "that is not a folder here, a preset, or a valid Hub id (org/name)"
    elif offline:
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


def _looks_like_path(source: str) -> bool:
    """A name that can only be a local folder: absolute, ./ ../ ~, or more than one '/' (a Hub id has one)."""
    return (
        source.startswith(("/", "./", "../", "~", "."))
        or source.endswith(("/", os.sep))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
    )


def _check_source(source: str) -> Path | None:
    """The local folder `source` names (checked), or None for a Hub id; refuses near misses of presets."""
    path = Path(source).expanduser()
    if path.exists():
        _check_folder(path)
        return path
    if _looks_like_path(source):
        raise ValueError(f"cannot load model {source!r}: no such folder")
    if "/" not in source:
        near = difflib.get_close_matches(source, list(PRESETS), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ValueError(
            f"cannot load model {source!r}: not a preset, a folder or a Hub id (org/name); {hint}"
            f"presets: {', '.join(sorted(PRESETS))}"
        )
    return None


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise ValueError(
            f"cannot load model {str(path)!r}: it is a file; pass the folder save_pretrained wrote"
        )
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(
            f"{path} is not a rest_hf model folder (no config.json); pass a folder written by save_pretrained"
        )
    try:
        json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{config} is not valid JSON ({' '.join(str(error).split())}); re-save the model"
        ) from None


def load_config(source: str, revision: str | None = None, **overrides: Any) -> RestConfig:
    """Config of a preset name, a shipped model, a model folder or a Hub id."""
    source = resolve_model_source(source)
    if source in PRESETS:
        return RestConfig.from_preset(source, **overrides)
    _check_source(source)
    try:
        config = RestConfig.from_pretrained(source, revision=revision, **overrides)
    except (OSError, ValueError) as error:
        error = _hub_error(source, error)
        if "/" in source and not Path(source).expanduser().exists():
            error = ValueError(f"{error} (and there is no folder {source} here)")
        raise error from None
    except (TypeError, KeyError, AttributeError) as error:  # a field of the wrong type or shape
        raise ValueError(f"cannot load model {source!r}: invalid config.json: {_one_line(error)}") from None
    if getattr(config, "model_type", None) != "rest":
        raise ValueError(f"{source} holds a {config.model_type!r} model, not a rest_hf model")
    _check_field_types(source, config)
    return config


def _check_field_types(source: str, config: RestConfig) -> None:
    """Refuse a config field whose type differs from its default's (e.g. `"hidden_size": "sixteen"`), which
    would otherwise fail deep inside the model's construction."""
    defaults = RestConfig()
    for name, default in vars(defaults).items():
        if name.startswith("_") or default is None or not hasattr(config, name):
            continue
        value = getattr(config, name)
        expected: tuple[type, ...] = (int, float) if type(default) is float else (type(default),)
        if type(default) not in (int, float, bool, str, list) or value is None:
            continue
        if not isinstance(value, expected) or (isinstance(value, bool) and type(default) is not bool):
            raise ValueError(
                f"cannot load model {source!r}: invalid config.json: {name} is {value!r}, expected "
                f"{'a number' if type(default) is float else 'a ' + type(default).__name__} like {default!r}"
            )


def load_model(source: str, revision: str | None = None, **overrides: Any) -> RestForSemanticSegmentation:
    """A `RestForSemanticSegmentation` from a preset (random weights), a shipped model, a folder or a Hub id.

    A checkpoint whose weights do not cover the model (missing or mis-shaped tensors, which `from_pretrained`
    would fill with random values) is refused, naming the tensors.
    """
    from transformers.utils import logging as hf_logging

    source = resolve_model_source(source)
    if source in PRESETS:
        return RestForSemanticSegmentation(RestConfig.from_preset(source, **overrides))
    config = load_config(source, revision=revision, **overrides)
    folder = _check_source(source)
    if folder is not None and not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ValueError(
            f"cannot load model {source!r}: the folder has a config.json but no weights ({WEIGHT_FILES[0]}); "
            "save the model with save_pretrained, or use a preset name for random weights"
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the loading report: the missing tensors are named in our error instead
    try:
        model, info = RestForSemanticSegmentation.from_pretrained(
            source, config=config, revision=revision, output_loading_info=True
        )
    except (OSError, ValueError) as error:
        if folder is not None:
            raise ValueError(f"cannot load model {source!r}: damaged weights: {_one_line(error)}") from None
        raise _hub_error(source, error) from None
    except Exception as error:  # safetensors' own errors (a truncated or empty file), shape errors
        raise ValueError(f"cannot load model {source!r}: damaged weights: {_one_line(error)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(
        str(item[0] if isinstance(item, tuple) else item) for item in info.get("mismatched_keys") or []
    )
    if missing or mismatched:
        what = "missing" if missing else "of the wrong shape"
        names = missing or mismatched
        raise ValueError(
            f"cannot load model {source!r}: its weights do not cover the model: {len(names)} tensor"
            f"{'s' if len(names) != 1 else ''} {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); "
            "the checkpoint is incomplete or for another config"
        )
    return model


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


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


__all__ = ["WEIGHT_FILES", "load_config", "load_image_processor", "load_model"]
