"""The generic `folder` layout: `images/` + `labels/` with matching stems, optionally under split folders
(`{split}/images`, or `images/{split}`), or a CSV/Parquet index with columns `image`, `label` and optionally
`split` (paths relative to the index file). Classes come from `dataset_info.json` in the root (or the index's
folder), or from arguments: see `FolderLayout.info`.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...models.configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255
from ..info import ColourMap, DatasetInfo, ValueMap
from ..records import SceneRecord, canonical_split, check_unique_names
from .base import IGNORE, FolderPattern, Layout


def _default_palette(num_labels: int) -> tuple[tuple[int, int, int], ...]:
    """`num_labels` distinct colours, hues spaced by the golden ratio: for a dataset_info.json without a palette."""
    colours = []
    for i in range(num_labels):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return tuple(colours)


INDEX_NAMES = ("index.csv", "index.parquet", "scenes.csv", "scenes.parquet")
INFO_NAMES = ("dataset_info.json", "classes.json")
# Folder names tried in order, in every arrangement.
_IMAGES = "images|image|img"
_LABELS = "labels|label|masks|mask|annotations"


class FolderLayout(Layout):
    """`images/` + `labels/` (matching stems; optionally under split folders) or a CSV/Parquet index.

    The root may be a folder or the index file itself. Classes are read from `dataset_info.json` (or
    `classes.json`) next to the data, e.g.::

        {"classes": ["background", "building"], "ignore_index": 255, "palette": [[0, 0, 0], [255, 0, 0]],
         "bands": [1, 2, 3], "image_mean": [...], "image_std": [...], "value_range": 255,
         "label_values": {"0": 0, "255": 1}, "colour_coded": false, "mask_alpha": true}

    Only `classes` (or `id2label`) is required; labels then hold ids 0..K-1 and `ignore_index`.
    """

    def __init__(self) -> None:
        placeholder = DatasetInfo(
            name="folder",
            id2label={0: "class_0"},
            palette=((0, 0, 0),),
            ignore_index=IGNORE,
            num_bands=3,
            label_mapping=ValueMap.identity(1, IGNORE),
        )
        super().__init__(
            "folder",
            [
                FolderPattern("flat", _IMAGES, _LABELS, placeholder),
                FolderPattern("split-outer", f"{{split}}/{_IMAGES}", f"{{split}}/{_LABELS}", placeholder),
                FolderPattern("split-inner", f"{_IMAGES}/{{split}}", f"{_LABELS}/{{split}}", placeholder),
            ],
        )

    @staticmethod
    def index_file(root: Path) -> Path | None:
        if root.is_file() and root.suffix.lower() in (".csv", ".parquet", ".pq"):
            return root
        for name in INDEX_NAMES:
            if (root / name).is_file():
                return root / name
        return None

    def match(
        self, root: Path, split: str | None = None, patterns: Sequence[FolderPattern] | None = None
    ) -> tuple[FolderPattern, list[SceneRecord]]:
        root = Path(root)
        index = self.index_file(root) if root.exists() else None
        if index is not None:
            return self.patterns[0], _read_index(index, split)
        if root.is_dir():
            # A pattern without split folders serves split=None only; with a split asked, try split folders first.
            if split in (None, "all"):
                return super().match(root, split)
            ordered = [p for p in self.patterns if p.has_split] + [
                p for p in self.patterns if not p.has_split
            ]
            return super().match(root, split, ordered)
        raise ValueError(f"dataset folder or index file {root} does not exist (layout 'folder')")

    def info(
        self,
        root: str | Path | None = None,
        split: str | None = None,
        *,
        id2label: Mapping[int, str] | Sequence[str] | None = None,
        num_bands: int | None = None,
        **overrides: Any,
    ) -> DatasetInfo:
        """Classes of a generic dataset: `dataset_info.json` next to the data, then these arguments.

        Args:
            root: The dataset folder or index file (to find `dataset_info.json` and count the image bands).
            id2label: Class names (a list, or id -> name) when there is no `dataset_info.json`.
            num_bands: Bands per image after `bands` selection; counted from the first image when not given.
            **overrides: Any `DatasetInfo` field (`palette`, `ignore_index`, `bands`, `image_mean`, ...).
        """
        spec: dict[str, Any] = {}
        base = None
        if root is not None:
            root = Path(root)
            base = root.parent if root.is_file() else root
            for name in INFO_NAMES:
                if (base / name).is_file():
                    try:
                        spec = json.loads((base / name).read_text())
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{base / name} is not valid JSON: {error}") from None
                    break
        if id2label is not None:
            spec["id2label"] = id2label
        names = spec.get("id2label", spec.get("classes"))
        if names is None:
            raise ValueError(
                "the 'folder' layout needs the class names: write dataset_info.json next to images/ with "
                '{"classes": ["background", "building", ...]} or pass id2label=[...]'
            )
        if isinstance(names, Mapping):
            classes = {int(k): str(v) for k, v in names.items()}
        else:
            classes = dict(enumerate(str(n) for n in names))
        ignore_index = int(overrides.pop("ignore_index", spec.get("ignore_index", IGNORE)))
        palette = overrides.pop("palette", spec.get("palette")) or _default_palette(len(classes))
        palette = tuple(tuple(int(v) for v in c) for c in palette)
        if "label_mapping" in overrides:
            mapping = overrides.pop("label_mapping")
        elif spec.get("colour_coded") or spec.get("color_coded"):
            mapping = ColourMap(palette, ignore_index)
        elif spec.get("label_values"):
            mapping = ValueMap({int(k): int(v) for k, v in spec["label_values"].items()}, ignore_index)
        else:
            mapping = ValueMap.identity(len(classes), ignore_index)
        bands = overrides.pop("bands", spec.get("bands"))
        bands = None if bands is None else tuple(int(b) for b in bands)
        if num_bands is None:
            num_bands = spec.get("num_bands")
        if num_bands is None and bands is not None:
            num_bands = len(bands)
        if num_bands is None and root is not None:
            records = self.scan(root, split)
            from ..reading import open_raster

            with open_raster(records[0].image) as source:
                num_bands = source.count
        if num_bands is None:
            raise ValueError("the 'folder' layout needs num_bands (or a root to count the image bands)")
        mean = overrides.pop("image_mean", spec.get("image_mean"))
        std = overrides.pop("image_std", spec.get("image_std"))
        value_range = float(overrides.pop("value_range", spec.get("value_range", 255.0)))
        if mean is None and std is None and int(num_bands) == 3 and value_range == 255.0:
            mean, std = IMAGENET_MEAN_255, IMAGENET_STD_255
        return DatasetInfo(
            name=overrides.pop("name", spec.get("name", "folder")),
            id2label=classes,
            palette=palette,
            ignore_index=ignore_index,
            num_bands=int(num_bands),
            label_mapping=mapping,
            bands=bands,
            image_mean=None if mean is None else tuple(float(v) for v in mean),
            image_std=None if std is None else tuple(float(v) for v in std),
            value_range=value_range,
            clip_range=bool(overrides.pop("clip_range", spec.get("clip_range", True))),
            mask_alpha=bool(overrides.pop("mask_alpha", spec.get("mask_alpha", True))),
            title=overrides.pop("title", spec.get("title", "")),
            url=overrides.pop("url", spec.get("url", "")),
            **overrides,
        )


def _read_index(index: Path, split: str | None) -> list[SceneRecord]:
    """Records from a CSV or Parquet file with columns image, label[, split][, name]."""
    if index.suffix.lower() == ".csv":
        import csv

        with index.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        columns = set(rows[0]) if rows else set()
    else:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {index} needs pyarrow: pip install 'rest_hf[hub]'") from None
        table = pq.read_table(index)
        columns = set(table.column_names)
        rows = table.to_pylist()
    if not rows:
        raise ValueError(f"index {index} lists no scenes")
    if "image" not in columns:
        raise ValueError(
            f"index {index} needs an 'image' column (and 'label', optionally 'split'); has {sorted(columns)}"
        )
    base = index.parent
    records = []
    for number, row in enumerate(rows):
        row_split = canonical_split(str(row.get("split") or "all"))
        if split not in (None, "all") and "split" not in columns:
            raise ValueError(
                f"index {index} has no 'split' column, so there is no {split!r} split; add a split column "
                "(train/val/test) or use split=None"
            )
        if split not in (None, "all") and row_split != canonical_split(split):
            continue
        image = str(row["image"] or "").strip()
        if not image:
            raise ValueError(f"index {index}, row {number + 2}: empty image path")
        label = row.get("label")
        label = None if label is None or str(label).strip() in ("", "nan", "None") else str(label).strip()
        image_path = Path(image) if Path(image).is_absolute() else base / image
        label_path = None if label is None else (Path(label) if Path(label).is_absolute() else base / label)
        name = str(row.get("name") or image_path.stem)
        records.append(
            SceneRecord(str(image_path), None if label_path is None else str(label_path), row_split, name)
        )
    if not records:
        raise ValueError(f"index {index} has no rows with split {split!r}")
    check_unique_names(records)
    return records
