"""Scene records and the folder scanning they come from.

A `SceneRecord` names one scene: its image file, its label file (or `None` for unlabeled scenes), its split and a
unique name. Layouts (`rest_hf.data.layouts`) turn a dataset folder into records with the helpers here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".vrt", ".img")
LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".gif", ".jpg", ".jpeg")

# Folder names each split goes by in the released datasets (WHU-OHS: tr/val/ts; UAVid toolkit: valid).
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training", "tr"),
    "val": ("val", "valid", "validation", "va"),
    "test": ("test", "testing", "ts"),
}


@dataclass(frozen=True)
class SceneRecord:
    """One scene of a dataset.

    Attributes:
        image: Path of the image file (GeoTIFF, PNG, JPEG; anything rasterio opens).
        label: Path of the label file, or `None` for an unlabeled scene.
        split: The split it belongs to (`"train"`, `"val"`, `"test"`, or `"all"` when the layout has no splits).
        name: A name unique within its split (used in logs, metrics and prediction file names).
    """

    image: str
    label: str | None
    split: str
    name: str


def split_folder_names(split: str) -> tuple[str, ...]:
    """Folder names that may hold `split` (its aliases, and the name itself)."""
    names = SPLIT_ALIASES.get(split, ())
    return (split, *[n for n in names if n != split])


def canonical_split(name: str) -> str:
    """`"tr"` -> `"train"`, `"valid"` -> `"val"`, ...; unknown names are kept."""
    lowered = name.lower()
    for split, aliases in SPLIT_ALIASES.items():
        if lowered in aliases:
            return split
    return name


def _is_raster(path: Path, suffixes: Sequence[str]) -> bool:
    name = path.name
    if name.startswith(".") or not path.is_file():
        return False
    lowered = name.lower()
    if lowered.endswith((".aux.xml", ".ovr", ".msk")):
        return False
    return path.suffix.lower() in suffixes


def list_rasters(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Raster files directly in `folder`, sorted by name (sidecar files such as .aux.xml are skipped)."""
    return sorted((p for p in folder.iterdir() if _is_raster(p, suffixes)), key=lambda p: p.name)


def find_child(folder: Path, names: Iterable[str]) -> Path | None:
    """The first existing sub-folder of `folder` among `names` (exact name first, then case-insensitive)."""
    names = list(names)
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    if folder.is_dir():
        lowered = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
        for name in names:
            if name.lower() in lowered:
                return lowered[name.lower()]
    return None


def pair_folder(
    image_dir: Path,
    label_dir: Path | None,
    split: str,
    label_suffix: str = "",
    name_prefix: str = "",
    image_suffixes: Sequence[str] = IMAGE_SUFFIXES,
    label_suffixes: Sequence[str] = LABEL_SUFFIXES,
) -> tuple[list[SceneRecord], list[Path]]:
    """Pair every image in `image_dir` with the label of the same stem (+ `label_suffix`) in `label_dir`.

    Returns the records (label `None` where no label matches) and the label files that match no image.
    """
    images = list_rasters(image_dir, image_suffixes)
    labels: dict[str, Path] = {}
    if label_dir is not None and label_dir.is_dir():
        for path in list_rasters(label_dir, label_suffixes):
            stem = path.stem
            if label_suffix and stem.endswith(label_suffix):
                stem = stem[: -len(label_suffix)]
            # Several files with one stem (x.png and x.tif): prefer the first suffix in `label_suffixes`.
            previous = labels.get(stem)
            if previous is None or label_suffixes.index(path.suffix.lower()) < label_suffixes.index(
                previous.suffix.lower()
            ):
                labels[stem] = path
    records = []
    used = set()
    for image in images:
        label = labels.get(image.stem)
        if label is not None:
            used.add(image.stem)
        records.append(
            SceneRecord(
                image=str(image),
                label=None if label is None else str(label),
                split=split,
                name=f"{name_prefix}{image.stem}",
            )
        )
    orphans = [path for stem, path in sorted(labels.items()) if stem not in used]
    return records, orphans


def check_unique_names(records: Sequence[SceneRecord]) -> None:
    """Scene names must be unique within a split (they name metrics rows and prediction files)."""
    seen: dict[tuple[str, str], str] = {}
    for record in records:
        key = (record.split, record.name)
        if key in seen:
            raise ValueError(
                f"two scenes of split {record.split!r} are named {record.name!r}: {seen[key]} and {record.image}; "
                "scene names must be unique within a split (rename one file, or keep each split in its own folder)"
            )
        seen[key] = record.image


__all__ = [
    "IMAGE_SUFFIXES",
    "LABEL_SUFFIXES",
    "SPLIT_ALIASES",
    "SceneRecord",
    "canonical_split",
    "check_unique_names",
    "find_child",
    "list_rasters",
    "pair_folder",
    "split_folder_names",
]
