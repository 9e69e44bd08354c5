"""Checking a dataset against its layout before training starts.

Every problem found is collected and reported in one `ValueError` that names the files and the fix, so a user
fixes everything in one go instead of discovering one bad file per hour of training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .info import DatasetInfo
from .reading import open_raster
from .records import SceneRecord

# Problems listed in the message before "... and N more".
MAX_LISTED = 8


def _sample_windows(height: int, width: int, count: int, size: int, rng: np.random.Generator) -> list[tuple]:
    """Windows (top, left, h, w) to sample label values from: the whole label when small, else `count` windows."""
    if height * width <= size * size * count:
        return [(0, 0, height, width)]
    windows = []
    for _ in range(count):
        h, w = min(size, height), min(size, width)
        windows.append((int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w))
    return windows


def validate_records(
    records: Sequence[SceneRecord],
    info: DatasetInfo,
    check_values: bool = True,
    require_labels: bool = True,
    max_value_checks: int = 16,
    window: int = 1024,
    windows_per_scene: int = 4,
    seed: int = 0,
) -> None:
    """Check that `records` fit `info`; raise one `ValueError` listing every problem found.

    Checks every record: the files exist and open, the image has the bands `info` reads and the model expects
    (`num_bands`), a label exists (when `require_labels`), the label has the image's size and the band count its
    mapping needs. With `check_values`, label values are sampled (up to `max_value_checks` scenes, spread over
    the dataset; `windows_per_scene` random windows of `window` px, or the whole label when small) and values
    the layout does not know are reported (e.g. an FBP mask that still uses 0 for unlabeled).
    """
    if not records:
        raise ValueError(f"no scenes to check for dataset {info.name!r}: the split is empty")
    problems: list[str] = []
    fixes: set[str] = set()
    checked: list[SceneRecord] = []
    for record in records:
        try:
            with open_raster(record.image, info.bands, info.mask_alpha) as image:
                size = (image.height, image.width)
                if image.count != info.num_bands:
                    problems.append(
                        f"{record.image} gives {image.count} band(s) (bands {info.bands or 'all'}), the "
                        f"{info.name!r} dataset needs {info.num_bands}"
                    )
                    fixes.add("give every image the same bands (or set the dataset's 'bands' selection)")
        except FileNotFoundError:
            problems.append(f"image {record.image} does not exist")
            continue
        except ValueError as error:  # RasterReadError, or a band index the file lacks
            problems.append(f"image {record.image}: {error}")
            fixes.add("re-export or remove unreadable files")
            continue
        if record.label is None:
            if require_labels:
                problems.append(f"image {record.image} has no label")
                fixes.add(
                    "add a label file with the image's name to the labels folder (or remove the image from the "
                    "training split)"
                )
            continue
        try:
            with open_raster(record.label, mask_alpha=False) as label:
                label_size, label_bands = (label.height, label.width), label.count
        except FileNotFoundError:
            problems.append(f"label {record.label} (of image {record.image}) does not exist")
            continue
        except ValueError as error:
            problems.append(f"label {record.label}: {error}")
            fixes.add("re-export or remove unreadable files")
            continue
        if label_size != size:
            problems.append(
                f"label {record.label} is {label_size[0]}x{label_size[1]} px but image {record.image} is "
                f"{size[0]}x{size[1]} px"
            )
            fixes.add(
                "labels must cover their image pixel for pixel: re-export the label at the image's size"
            )
            continue
        needed = info.label_mapping.label_bands
        if needed == 3 and label_bands < 3 or needed == 1 and label_bands != 1:
            kind = "an RGB colour-coded mask" if needed == 3 else "one band of class values"
            problems.append(
                f"label {record.label} has {label_bands} band(s); the {info.name!r} layout expects {kind}"
            )
            fixes.add("use label files in the layout's format")
            continue
        checked.append(record)

    if check_values and checked:
        rng = np.random.default_rng(seed)
        step = max(1, len(checked) // max_value_checks)
        for record in checked[::step][:max_value_checks]:
            unknown: set = set()
            with open_raster(record.label, mask_alpha=False) as label:
                for top, left, h, w in _sample_windows(
                    label.height, label.width, windows_per_scene, window, rng
                ):
                    try:
                        raw = label.read(top, left, h, w)
                    except ValueError as error:
                        problems.append(f"label {record.label}: {error}")
                        break
                    unknown.update(info.label_mapping.unknown(raw))
            if unknown:
                shown = sorted(unknown)[:10]
                what = "colours" if isinstance(shown[0], tuple) else "values"
                problems.append(
                    f"label {record.label} holds {what} {shown}{' ...' if len(unknown) > 10 else ''} that the "
                    f"{info.name!r} layout does not know (expected {info.label_mapping.describe()}, "
                    f"ignore value {info.ignore_index})"
                )
                fixes.add(
                    "check that the layout matches the files (e.g. FBP masks with 0 = unlabeled belong in "
                    "Annotation__index/, REST's 0..23 masks in {split}/annotation/), or convert the labels"
                )

    if problems:
        listed = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        fix = "; ".join(sorted(fixes)) or "fix the files listed"
        raise ValueError(
            f"dataset {info.name!r} ({len(records)} scenes) does not match its layout: {len(problems)} problem(s):\n  "
            + "\n  ".join(listed)
            + more
            + f"\nFix: {fix}."
        )


__all__ = ["validate_records"]
