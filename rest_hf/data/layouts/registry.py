"""The registry of dataset layouts by name, and the functions that scan a dataset folder or describe its classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..info import DatasetInfo
from ..records import SceneRecord
from .base import Layout
from .fbp import FBP_LAYOUT
from .folder import FolderLayout
from .glh_water import GLH_WATER_LAYOUT
from .uavid import UAVID_LAYOUT
from .whu_ohs import WHU_OHS_LAYOUT

LAYOUTS: dict[str, Layout] = {
    "glh-water": GLH_WATER_LAYOUT,
    "fbp": FBP_LAYOUT,
    "whu-ohs": WHU_OHS_LAYOUT,
    "uavid": UAVID_LAYOUT,
    "folder": FolderLayout(),
}


def get_layout(layout: str) -> Layout:
    """The layout registered as `layout`; `ValueError` naming the registered ones otherwise."""
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}") from None


def scan_layout(root: str | Path, layout: str, split: str | None = None) -> list[SceneRecord]:
    """The scenes of `split` (`"train"`, `"val"`, `"test"`, another split folder name, or `None` for all).

    Raises `ValueError` naming the expected arrangement when `root` does not match `layout`.
    """
    return get_layout(layout).scan(Path(root), split)


def dataset_info(
    layout: str, root: str | Path | None = None, split: str | None = None, **kwargs: Any
) -> DatasetInfo:
    """The `DatasetInfo` of `layout`; with `root`, that of the arrangement found there (FBP and WHU-OHS have
    official and REST-preprocessed conventions). `kwargs` go to `FolderLayout.info` for the generic layout."""
    chosen = get_layout(layout)
    if isinstance(chosen, FolderLayout):
        return chosen.info(root, split, **kwargs)
    if kwargs:
        return chosen.info(root, split).replace(**kwargs)
    return chosen.info(root, split)
