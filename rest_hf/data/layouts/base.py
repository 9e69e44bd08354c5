"""Layout machinery shared by every dataset: folder patterns, matching them under a root, pairing images with
labels, and the label conventions several datasets share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..info import DatasetInfo, ValueMap
from ..records import (
    SPLIT_ALIASES,
    SceneRecord,
    canonical_split,
    check_unique_names,
    find_child,
    pair_folder,
    split_folder_names,
)

# The ignore_index of every built-in dataset: unlabeled pixels and label values a mapping does not know.
IGNORE = 255


def shifted_labels(num_labels: int) -> ValueMap:
    """0 = unlabeled -> ignore; k -> k - 1 (FBP and WHU-OHS official masks)."""
    table = {0: IGNORE, **{k: k - 1 for k in range(1, num_labels + 1)}}
    return ValueMap(table, IGNORE)


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
