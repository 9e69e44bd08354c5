"""Dataset layouts: how the four datasets of the REST paper (and a generic one) are arranged on disk.

Facts and assumptions behind each layout (sources: the dataset papers and official releases, the REST code's
dataset classes and configs (weichenrs/REST_code), `../shared/reference/rest_checkpoint_layout.md` section 9):

- **glh-water** (GLH-Water, Li et al., AAAI 2024; 250 RGB scenes of 12800 x 12800 px at 0.3 m). Masks hold
  0 (background) and 255 (water); 255 is mapped to 1 as REST's `LoadAnnotations_binary` does. Masks already
  converted to 0/1 are accepted too. There is no ignore value inside the masks (255 is water, not ignore).
  Folders: `{split}/image|img/*.{png,jpg,tif}` + `{split}/label/*.png` (what REST's configs read: crops under
  `train|val|test/image`, whole scenes under `train|val|test/img` as .jpg). *Assumption*: the official release
  uses the same split/image/label arrangement (not verifiable offline); any other arrangement works with
  `folder`.
- **fbp** (Five-Billion-Pixels, Tong et al., ISPRS J. 2023; 150 Gaofen-2 scenes of 6800 x 7200 px, 24 classes
  in the order of REST's `FBPDataset_new`). Two conventions:
  * the official release: `Image__8bit_NirRGB/X.tiff` (4 bands N, R, G, B; bands 2, 3, 4 are read, giving RGB)
    or an `Image_RGB/` folder (REST's RGB copy), with `Annotation__index/X_24label.png` where **0 = unlabeled**
    and 1..24 are the classes: 0 -> 255 (ignored), k -> k - 1. Optional `{split}` sub-folders under both
    (as in REST's preprocessing, `ori/Image_RGB/train`). *Assumption* (unverified here, reference section 9):
    the index masks number the classes 1..24 in the documented order.
  * REST's `FBP_new` crops: `{split}/img/*.png` + `{split}/annotation/*.png` with ids 0..23 and **255
    ignored** (`reduce_zero_label=False`).
  The 16-bit `Image_16bit_BGRNir` files need other statistics and band order: use `folder` with a
  `dataset_info.json` for them.
- **whu-ohs** (WHU-OHS, Li et al., JAG 2022; 32-band Orbita hyperspectral, 512 x 512 px patches from 42 scenes,
  24 classes). Official release: `tr|val|ts/image/*.tif` + `tr|val|ts/label/*.tif`; images are reflectance
  x 10000 (int16), labels 0 = unlabeled, 1..24 the classes (0 -> 255 ignored, k -> k - 1), as in the authors'
  `WHU-OHS-Pytorch` loader. REST's mosaics: `image/{split}` + `label_0/{split}` holding ids 0..23 (255
  ignored; *assumption*). There are no standard statistics: `image_mean`/`image_std` are `None` and come from
  `compute_band_statistics` over the training scenes (or are given).
- **uavid** (UAVid, Lyu et al., ISPRS J. 2020; 4K oblique UAV frames, 8 classes). Official release:
  `uavid_{train,val,test}/seqN/Images/*.png` + `.../seqN/Labels/*.png` (colour-coded RGB masks; the test split
  has no labels); UAVidToolKit renames the splits `train/valid/test`. Colours are the toolkit's
  (`UAVidColorTransformer`); class ids follow REST's `UAVIDDataset` order (background clutter, building, road,
  tree, low vegetation, moving car, static car, human), not the toolkit's id order. REST's copies
  (`{split}/img` + `{split}/mask`, e.g. `trainval`) may hold colour masks or ids 0..7: both are accepted.
  Unknown colours are reported by the validation (and would be ignored).
- **folder** (generic): `images/` + `labels/` with matching stems, optionally under split folders
  (`{split}/images`, or `images/{split}`), or a CSV/Parquet index with columns `image`, `label` and optionally
  `split` (paths relative to the index file). Classes come from `dataset_info.json` in the root (or the index's
  folder), or from arguments: see `FolderLayout.info`.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .info import ColourMap, ColourOrValueMap, DatasetInfo, ValueMap
from .records import (
    SPLIT_ALIASES,
    SceneRecord,
    canonical_split,
    check_unique_names,
    find_child,
    pair_folder,
    split_folder_names,
)

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)
IGNORE = 255

GLH_WATER_CLASSES = ("background", "water")
GLH_WATER_PALETTE = ((0, 0, 0), (255, 255, 255))

FBP_CLASSES = (
    "industrial area", "paddy field", "irrigated field", "dry cropland", "garden land", "arbor forest",
    "shrub forest", "park land", "natural meadow", "artificial meadow", "river", "urban residential", "lake",
    "pond", "fish pond", "snow", "bareland", "rural residential", "stadium", "square", "road", "overpass",
    "railway station", "airport",
)  # fmt: skip
FBP_PALETTE = (
    (200, 0, 0), (0, 200, 0), (150, 250, 0), (150, 200, 150), (200, 0, 200), (150, 0, 250), (150, 150, 250),
    (200, 150, 200), (250, 200, 0), (200, 200, 0), (0, 0, 200), (250, 0, 150), (0, 150, 200), (0, 200, 250),
    (150, 200, 250), (250, 250, 250), (200, 200, 200), (200, 150, 150), (250, 200, 150), (150, 150, 0),
    (250, 150, 150), (250, 150, 0), (250, 200, 250), (200, 150, 0),
)  # fmt: skip

WHU_OHS_CLASSES = (
    "paddy field", "dry farm", "woodland", "shrubbery", "sparse woodland", "other forest land",
    "high-covered grassland", "medium-covered grassland", "low-covered grassland", "river/canal", "lake",
    "reservoir/pond", "beach land", "shoal", "urban built-up", "rural settlement", "other construction land",
    "sand", "gobi", "saline/alkali soil", "marshland", "bare land", "bare rock", "ocean",
)  # fmt: skip
WHU_OHS_PALETTE = (
    (188, 207, 251), (51, 223, 199), (34, 113, 5), (168, 237, 115), (79, 213, 0), (69, 210, 0), (111, 113, 0),
    (166, 164, 0), (255, 242, 3), (113, 174, 251), (0, 91, 228), (5, 37, 113), (121, 139, 244), (0, 168, 132),
    (114, 0, 3), (252, 126, 125), (251, 188, 189), (254, 186, 229), (248, 0, 197), (226, 5, 168), (167, 0, 131),
    (113, 0, 75), (254, 110, 222), (160, 160, 160),
)  # fmt: skip

UAVID_CLASSES = (
    "background clutter", "building", "road", "tree", "low vegetation", "moving car", "static car", "human",
)  # fmt: skip
UAVID_PALETTE = (
    (0, 0, 0), (128, 0, 0), (128, 64, 128), (0, 128, 0), (128, 128, 0), (64, 0, 128), (192, 0, 192), (64, 64, 0),
)  # fmt: skip


def _id2label(names: Sequence[str]) -> dict[int, str]:
    return dict(enumerate(names))


def _shifted(num_labels: int) -> ValueMap:
    """0 = unlabeled -> ignore; k -> k - 1 (FBP and WHU-OHS official masks)."""
    table = {0: IGNORE, **{k: k - 1 for k in range(1, num_labels + 1)}}
    return ValueMap(table, IGNORE)


GLH_WATER = DatasetInfo(
    name="glh-water",
    id2label=_id2label(GLH_WATER_CLASSES),
    palette=GLH_WATER_PALETTE,
    ignore_index=IGNORE,
    num_bands=3,
    bands=(1, 2, 3),
    label_mapping=ValueMap({0: 0, 1: 1, 255: 1}, IGNORE),
    image_mean=IMAGENET_MEAN_255,
    image_std=IMAGENET_STD_255,
    title="GLH-Water (global surface water, 0.3 m)",
    url="https://jack-bo1220.github.io/project/GLH-water.html",
)

FBP = DatasetInfo(
    name="fbp",
    id2label=_id2label(FBP_CLASSES),
    palette=FBP_PALETTE,
    ignore_index=IGNORE,
    num_bands=3,
    bands=(1, 2, 3),
    label_mapping=ValueMap.identity(24, IGNORE),
    image_mean=IMAGENET_MEAN_255,
    image_std=IMAGENET_STD_255,
    title="Five-Billion-Pixels (Gaofen-2 land cover, 4 m)",
    url="https://x-ytong.github.io/project/Five-Billion-Pixels.html",
)
# 4-band 8-bit TIFFs are tagged R, G, B, alpha by GDAL by default: the 4th band is data here, never a mask.
FBP_OFFICIAL_NIRRGB = FBP.replace(bands=(2, 3, 4), label_mapping=_shifted(24), mask_alpha=False)
FBP_OFFICIAL_RGB = FBP.replace(label_mapping=_shifted(24))

WHU_OHS = DatasetInfo(
    name="whu-ohs",
    id2label=_id2label(WHU_OHS_CLASSES),
    palette=WHU_OHS_PALETTE,
    ignore_index=IGNORE,
    num_bands=32,
    label_mapping=_shifted(24),
    value_range=10000.0,
    clip_range=False,
    title="WHU-OHS (Orbita 32-band hyperspectral land cover, 10 m)",
    url="http://irsip.whu.edu.cn/resources/WHU_OHS_show.php",
)
WHU_OHS_REST = WHU_OHS.replace(label_mapping=ValueMap.identity(24, IGNORE))

UAVID = DatasetInfo(
    name="uavid",
    id2label=_id2label(UAVID_CLASSES),
    palette=UAVID_PALETTE,
    ignore_index=IGNORE,
    num_bands=3,
    bands=(1, 2, 3),
    label_mapping=ColourOrValueMap(ColourMap(UAVID_PALETTE, IGNORE), ValueMap.identity(8, IGNORE)),
    image_mean=IMAGENET_MEAN_255,
    image_std=IMAGENET_STD_255,
    title="UAVid (oblique UAV video frames, 4K)",
    url="https://uavid.nl/",
)


@dataclass(frozen=True)
class FolderPattern:
    """One arrangement of a dataset's files.

    `image` and `label` are folder paths relative to the dataset root, made of segments: a literal name,
    alternatives `a|b|c` (the first that exists), `{split}` (the split's folder, any of its aliases; may be part
    of a segment, e.g. `uavid_{split}`) or `{seq}` (every sub-folder, e.g. UAVid sequences; the sub-folder's name
    prefixes the scene names). A pattern without `{split}` holds one unsplit set of scenes (split `"all"`).
    """

    name: str
    image: str
    label: str
    info: DatasetInfo
    label_suffix: str = ""

    @property
    def has_split(self) -> bool:
        return "{split}" in self.image

    def describe(self) -> str:
        suffix = f" (label name = image name + {self.label_suffix!r})" if self.label_suffix else ""
        return f"{self.image}/<name>.* + {self.label}/<name>{self.label_suffix}.*{suffix}"


def _resolve(root: Path, template: str, split_names: Sequence[str]) -> list[tuple[Path, str, str]]:
    """Folders matching `template` under `root`: (folder, the split folder name used, scene-name prefix)."""
    found: list[tuple[Path, str, str]] = [(root, "", "")]
    for segment in template.split("/"):
        next_found = []
        for folder, split_used, prefix in found:
            if segment == "{seq}":
                for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                    next_found.append((child, split_used, f"{prefix}{child.name}_"))
            elif "{split}" in segment:
                for split_name in split_names:
                    child = find_child(folder, [segment.replace("{split}", split_name)])
                    if child is not None:
                        next_found.append((child, split_name, prefix))
                        break
            else:
                child = find_child(folder, segment.split("|"))
                if child is not None:
                    next_found.append((child, split_used, prefix))
        found = next_found
    return found


def _label_folder(root: Path, template: str, image_dir: Path, split_used: str) -> Path | None:
    """The label folder paired with `image_dir`: the same split folder name and the same `{seq}` sub-folder
    (a `{seq}` segment sits at the same depth in the image and the label templates)."""
    image_parts = image_dir.relative_to(root).parts
    folder: Path | None = root
    for depth, segment in enumerate(template.split("/")):
        if segment == "{seq}":
            child = folder / image_parts[depth] if depth < len(image_parts) else None
            folder = child if child is not None and child.is_dir() else None
        elif "{split}" in segment:
            folder = find_child(folder, [segment.replace("{split}", split_used)])
        else:
            folder = find_child(folder, segment.split("|"))
        if folder is None:
            return None
    return folder


class Layout:
    """A named dataset layout: folder patterns (tried in order) and the classes of each."""

    def __init__(self, name: str, patterns: Sequence[FolderPattern]) -> None:
        self.name = name
        self.patterns = list(patterns)

    @property
    def default_info(self) -> DatasetInfo:
        return self.patterns[0].info

    def expected(self) -> str:
        return "; ".join(p.describe() for p in self.patterns)

    def _splits_to_try(self, split: str | None) -> list[tuple[str, tuple[str, ...]]]:
        if split in (None, "all"):
            return [(s, split_folder_names(s)) for s in SPLIT_ALIASES]
        return [(canonical_split(split), split_folder_names(canonical_split(split)) + (split,))]

    def match(
        self, root: Path, split: str | None = None, patterns: Sequence[FolderPattern] | None = None
    ) -> tuple[FolderPattern, list[SceneRecord]]:
        """The first pattern that finds scenes for `split` under `root`, with its records."""
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"dataset folder {root} does not exist (layout {self.name!r})")
        unsplit_hint = None
        for pattern in self.patterns if patterns is None else patterns:
            records: list[SceneRecord] = []
            orphans: list[Path] = []
            if pattern.has_split:
                for split_name, folder_names in self._splits_to_try(split):
                    for image_dir, used, prefix in _resolve(root, pattern.image, folder_names):
                        label_dir = _label_folder(root, pattern.label, image_dir, used)
                        found, lost = pair_folder(
                            image_dir, label_dir, split_name, pattern.label_suffix, prefix
                        )
                        records += found
                        orphans += lost
            else:
                for image_dir, _, prefix in _resolve(root, pattern.image, ()):
                    if split not in (None, "all"):
                        unsplit_hint = pattern
                        continue
                    label_dir = _label_folder(root, pattern.label, image_dir, "")
                    found, lost = pair_folder(image_dir, label_dir, "all", pattern.label_suffix, prefix)
                    records += found
                    orphans += lost
            if records or orphans:
                _refuse_orphans(orphans, records, pattern)
                check_unique_names(records)
                return pattern, records
        if unsplit_hint is not None:
            raise ValueError(
                f"{root} holds the {self.name!r} files as one unsplit set ({unsplit_hint.describe()}), so there is "
                f"no {split!r} split; use split=None for all scenes, move the files into split sub-folders "
                f"({unsplit_hint.image}/{split}/...), or use the 'folder' layout with a CSV index that has a "
                "'split' column"
            )
        present = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))[:20]
        wanted = "" if split in (None, "all") else f" for split {split!r}"
        raise ValueError(
            f"{root} does not match the {self.name!r} layout{wanted}: expected {self.expected()} "
            f"({{split}} = one of {', '.join(SPLIT_ALIASES)} or their aliases); found {present or 'an empty folder'}. "
            "Arrange the files like that, or use layout 'folder' (images/ + labels/, or a CSV index)"
        )

    def scan(self, root: str | Path, split: str | None = None) -> list[SceneRecord]:
        return self.match(Path(root), split)[1]

    def info(self, root: str | Path | None = None, split: str | None = None) -> DatasetInfo:
        """The classes and label mapping; with `root`, those of the arrangement found there."""
        if root is None:
            return self.default_info
        return self.match(Path(root), split)[0].info

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {len(self.patterns)} patterns)"


def _refuse_orphans(orphans: list[Path], records: list[SceneRecord], pattern: FolderPattern) -> None:
    if not orphans:
        return
    unlabeled = [r.image for r in records if r.label is None]
    listed = ", ".join(str(p) for p in orphans[:5]) + (
        f" and {len(orphans) - 5} more" if len(orphans) > 5 else ""
    )
    message = f"{len(orphans)} label file(s) match no image: {listed}"
    if unlabeled:
        message += f"; and {len(unlabeled)} image(s) have no label, e.g. {unlabeled[0]}"
    raise ValueError(
        f"{message}. Labels are paired with images by name ({pattern.describe()}); rename the files so the names "
        "match, or remove the stray labels"
    )


# ----------------------------------------------------------------------------------------------------------------
# The generic layout


def _default_palette(num_labels: int) -> tuple[tuple[int, int, int], ...]:
    colours = []
    for i in range(num_labels):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return tuple(colours)


INDEX_NAMES = ("index.csv", "index.parquet", "scenes.csv", "scenes.parquet")
INFO_NAMES = ("dataset_info.json", "classes.json")


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
                FolderPattern("flat", "images|image|img", "labels|label|masks|mask|annotations", placeholder),
                FolderPattern(
                    "split-outer",
                    "{split}/images|image|img",
                    "{split}/labels|label|masks|mask|annotations",
                    placeholder,
                ),
                FolderPattern(
                    "split-inner",
                    "images|image|img/{split}",
                    "labels|label|masks|mask|annotations/{split}",
                    placeholder,
                ),
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
            from .reading import open_raster

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


LAYOUTS: dict[str, Layout] = {
    "glh-water": Layout(
        "glh-water",
        [
            FolderPattern("splits", "{split}/image|img|images", "{split}/label|labels", GLH_WATER),
        ],
    ),
    "fbp": Layout(
        "fbp",
        [
            FolderPattern("rest-fbp-new", "{split}/img|image", "{split}/annotation|ann", FBP),
            FolderPattern(
                "official-nirrgb-split",
                "Image__8bit_NirRGB/{split}",
                "Annotation__index/{split}",
                FBP_OFFICIAL_NIRRGB,
                "_24label",
            ),
            FolderPattern(
                "official-rgb-split",
                "Image_RGB/{split}",
                "Annotation__index/{split}",
                FBP_OFFICIAL_RGB,
                "_24label",
            ),
            FolderPattern(
                "official-nirrgb", "Image__8bit_NirRGB", "Annotation__index", FBP_OFFICIAL_NIRRGB, "_24label"
            ),
            FolderPattern("official-rgb", "Image_RGB", "Annotation__index", FBP_OFFICIAL_RGB, "_24label"),
        ],
    ),
    "whu-ohs": Layout(
        "whu-ohs",
        [
            FolderPattern("official", "{split}/image", "{split}/label", WHU_OHS),
            FolderPattern("rest", "image/{split}", "label_0/{split}", WHU_OHS_REST),
        ],
    ),
    "uavid": Layout(
        "uavid",
        [
            FolderPattern("official", "uavid_{split}/{seq}/Images", "uavid_{split}/{seq}/Labels", UAVID),
            FolderPattern("toolkit", "{split}/{seq}/Images", "{split}/{seq}/Labels", UAVID),
            FolderPattern("rest", "{split}/img", "{split}/mask", UAVID),
        ],
    ),
    "folder": FolderLayout(),
}


def get_layout(layout: str) -> Layout:
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


__all__ = [
    "FBP",
    "GLH_WATER",
    "LAYOUTS",
    "UAVID",
    "WHU_OHS",
    "FolderLayout",
    "FolderPattern",
    "Layout",
    "dataset_info",
    "get_layout",
    "scan_layout",
]
