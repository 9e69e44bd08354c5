"""The models a demo offers and how it loads them: safely, once, through rest_hf's public loaders.

What a model name can be, and where it is read from:

- a name of `default_model_names()` (the trained models shipped in the package, then presets with random
  weights): `rest_hf.loading.load_model`;
- a name the operator gave on the command line (`rest-hf demo --model DIR_OR_HUB_ID`): a `save_pretrained`
  folder (checked to hold safetensors weights of a rest_hf model first) or a Hub id;
- a Hub id typed in the page (only when the app allows it): downloaded through the Hub cache by
  `rest_hf.hub.models.pull_model` (safetensors, JSON and the model card only), then loaded from that snapshot.
  A typed name is never looked up on the local disk, so the page cannot make the server read a path.

Weights are only ever read from safetensors (nothing is unpickled) and remote code is never run: rest_hf's own
classes load every model.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HUB_ID_PATTERN", "LoadedModel", "ModelCatalog", "default_model_names"]

# org/name as the Hub spells it: no path separators beyond the one slash, no "..", no leading dot or dash.
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# The presets the demo offers by default, smallest first (the large ones take minutes on a CPU).
DEFAULT_PRESETS = ("tiny-swin", "tiny-convnext", "swin-tiny", "convnext-tiny")


def default_model_names() -> list[str]:
    """The models every demo offers, the default first: the trained models shipped in the package, then the
    presets (random weights: they show the pipeline, not a segmentation)."""
    from ..models import PRESETS
    from ..pretrained import list_shipped_models

    return [*list_shipped_models(), *(name for name in DEFAULT_PRESETS if name in PRESETS)]


@dataclass
class LoadedModel:
    """A model ready to predict: the model, its image processor and what the page says about it."""

    name: str
    model: Any
    processor: Any
    random_weights: bool

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def num_channels(self) -> int:
        return int(self.model.config.num_channels)


class ModelCatalog:
    """The models of one demo, loaded on first use and kept (the `capacity` most recently used ones).

    Args:
        extra: Folders or Hub ids the operator chose (`--model`), offered before the defaults.
        allow_hub_ids: Whether a Hub id typed in the page may be loaded (downloaded through the Hub cache).
        include_defaults: Also offer `default_model_names()`.
        revision: Hub revision for the operator's Hub ids.
        capacity: How many loaded models stay in memory.
    """

    def __init__(
        self,
        extra: Sequence[str] = (),
        *,
        allow_hub_ids: bool = True,
        include_defaults: bool = True,
        revision: str | None = None,
        capacity: int = 2,
    ) -> None:
        names = [*extra, *(default_model_names() if include_defaults else [])]
        self.names: list[str] = list(dict.fromkeys(str(name) for name in names))
        if not self.names:
            raise ValueError("the demo has no model to offer; pass --model")
        self.operator_names = {str(name) for name in extra}
        self.allow_hub_ids = allow_hub_ids
        self.revision = revision
        self.capacity = max(1, int(capacity))
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        """The loaded model called `name`; ValueError (one line) when it cannot be offered or loaded."""
        name = (name or "").strip()
        if not name:
            raise ValueError("choose a model")
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            loaded = self._load(name)
            self._loaded[name] = loaded
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return loaded

    def _load(self, name: str) -> LoadedModel:
        import torch

        from ..loading import load_image_processor, load_model
        from ..models import PRESETS

        if name in PRESETS and name in self.names:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # random weights, but the same in every run
                model = load_model(name)
            return LoadedModel(name, model.eval(), load_image_processor(name, model.config), True)
        if name in self.names and name not in self.operator_names:
            model = load_model(name)  # a default that is not a preset (a shipped model)
            return LoadedModel(name, model.eval(), load_image_processor(name, model.config), False)
        if name in self.operator_names and Path(name).is_dir():
            folder = _checked_folder(Path(name))
        elif name in self.operator_names or self.allow_hub_ids:
            folder = _pulled(name, self.revision if name in self.operator_names else None)
        else:
            raise ValueError(f"model {name!r} is not offered here; choose one of {', '.join(self.names)}")
        model = load_model(str(folder))
        return LoadedModel(name, model.eval(), load_image_processor(str(folder), model.config), False)


def _checked_folder(folder: Path) -> Path:
    """A `save_pretrained` folder with safetensors weights of a rest_hf model (so nothing is unpickled)."""
    from ..hub.errors import HubError
    from ..hub.models import validate_model_dir

    try:
        validate_model_dir(folder)
    except HubError as error:
        raise ValueError(str(error)) from None
    return folder


def _pulled(repo_id: str, revision: str | None) -> Path:
    """The Hub cache snapshot of `repo_id` (weights as safetensors only)."""
    from ..hub.errors import HubError
    from ..hub.models import pull_model

    if not HUB_ID_PATTERN.match(repo_id) or ".." in repo_id:
        raise ValueError(f"{repo_id!r} is not a Hub model id (org/name)")
    try:
        return pull_model(repo_id, revision=revision)
    except HubError as error:
        raise ValueError(str(error)) from None
