"""Class names: the one place they are derived from a config's `id2label` and read back from a label raster."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["class_names", "class_names_from_tags", "class_names_tag"]


def class_names(
    id2label: Mapping[Any, str] | Sequence[str] | None, num_classes: int, unnamed: str = "class_{}"
) -> list[str]:
    """Names of classes 0..K-1 from `id2label` (a mapping or a list); `unnamed.format(i)` where it names none."""
    names = [unnamed.format(i) for i in range(num_classes)]
    if isinstance(id2label, Mapping):
        for key, value in id2label.items():
            if 0 <= int(key) < num_classes:
                names[int(key)] = str(value)
    elif id2label is not None:
        for i, value in enumerate(list(id2label)[:num_classes]):
            names[i] = str(value)
    return names


def class_names_tag(names: Sequence[str]) -> str:
    """The JSON `class_names` tag the label and probability rasters carry: `{"0": "background", ...}`."""
    return json.dumps({str(i): name for i, name in enumerate(names)})


def class_names_from_tags(tags: Mapping[str, str]) -> dict[int, str] | None:
    """The `class_names` tag of a raster written by `rest-hf predict` as {id: name}; None if absent or broken."""
    try:
        return {int(k): str(v) for k, v in json.loads(tags["class_names"]).items()}
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
