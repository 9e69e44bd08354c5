"""What a dataset is: its classes, colours, ignore value, band count and how its label files become class ids.

`DatasetInfo` is the one description the dataset, the sampler, `scripts/train.py`, the model config and the model
card share. Label files are turned into class ids by a `LabelMapping`, a small picklable object (DataLoader workers
copy it):

- `ValueMap`: a lookup table from stored values to class ids (GLH-Water 0/255 -> 0/1, FBP 1..24 -> 0..23, ...).
- `ColourMap`: RGB colour-coded masks (UAVid) to class ids through the class palette.

Every value or colour a mapping does not know becomes `ignore_index`; `validate_records` refuses such values up
front (sampled), so a wrong layout is reported before training, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class LabelMapping:
    """Base class: turns the raw bands of a label file (C, h, w) into class ids (h, w) int64."""

    #: Number of bands the label file must have (1: class values, 3: RGB colour codes).
    label_bands: int = 1

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def unknown(self, raw: np.ndarray) -> list[Any]:
        """The distinct stored values (or colours) of `raw` that the mapping does not know, sorted."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for error messages: which values are expected."""
        raise NotImplementedError


def _single_band(raw: np.ndarray) -> np.ndarray:
    if raw.ndim == 3:
        if raw.shape[0] != 1:
            raise ValueError(
                f"label array has {raw.shape[0]} bands; this mapping expects 1 band of class values"
            )
        raw = raw[0]
    return raw


class ValueMap(LabelMapping):
    """Stored value -> class id through a table; unknown values become `ignore_index`.

    Args:
        table: Stored value -> class id (a class id may be `ignore_index`, e.g. FBP's 0 "unlabeled").
        ignore_index: The id of pixels to skip in the loss and the metrics.
    """

    label_bands = 1

    def __init__(self, table: Mapping[int, int], ignore_index: int = 255) -> None:
        self.table = {int(k): int(v) for k, v in table.items()}
        self.ignore_index = int(ignore_index)
        keys = np.array(sorted(self.table), dtype=np.int64)
        self._keys = keys
        self._values = np.array([self.table[int(k)] for k in keys], dtype=np.int64)
        self._luts: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def identity(cls, num_labels: int, ignore_index: int = 255) -> ValueMap:
        """Values 0..num_labels-1 are the classes; `ignore_index` is kept as the ignore value."""
        table = {i: i for i in range(num_labels)}
        table[ignore_index] = ignore_index
        return cls(table, ignore_index)

    def _lut(self, size: int, offset: int) -> np.ndarray:
        """Lookup table over every value of a small integer type (value + offset -> class id), cached."""
        key = (size, offset)
        if key not in self._luts:
            lut = np.full(size, self.ignore_index, np.int64)
            for value, class_id in self.table.items():
                if 0 <= value + offset < size:
                    lut[value + offset] = class_id
            self._luts[key] = lut
        return self._luts[key]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = _single_band(np.asarray(raw))
        if raw.dtype == np.bool_:
            raw = raw.view(np.uint8)
        if raw.dtype.kind in "ui" and raw.dtype.itemsize <= 2:  # 8/16-bit labels: one table lookup per pixel
            size = 1 << (8 * raw.dtype.itemsize)
            if raw.dtype.kind == "u":
                return self._lut(size, 0)[raw]
            return self._lut(size, size // 2)[raw.astype(np.int32) + size // 2]
        if np.issubdtype(raw.dtype, np.floating):
            integral = np.isfinite(raw) & (np.floor(raw) == raw)
            raw = np.where(integral, raw, np.iinfo(np.int64).min).astype(np.int64)
        flat = raw.astype(np.int64, copy=False).ravel()
        position = np.clip(np.searchsorted(self._keys, flat), 0, len(self._keys) - 1)
        found = self._keys[position] == flat
        out = np.where(found, self._values[position], self.ignore_index)
        return out.reshape(raw.shape).astype(np.int64, copy=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_luts": {}}

    def unknown(self, raw: np.ndarray) -> list[Any]:
        raw = _single_band(np.asarray(raw))
        values = np.unique(raw)
        if np.issubdtype(values.dtype, np.floating):
            bad = [
                v
                for v in values.tolist()
                if not (np.isfinite(v) and float(v).is_integer() and int(v) in self.table)
            ]
            return bad
        return [int(v) for v in values.tolist() if int(v) not in self.table]

    def describe(self) -> str:
        keys = sorted(self.table)
        if len(keys) > 12:
            return f"values {keys[:6]} ... {keys[-3:]} ({len(keys)} known values)"
        return f"values {keys}"

    def __repr__(self) -> str:
        return f"ValueMap({self.describe()}, ignore_index={self.ignore_index})"


class ColourMap(LabelMapping):
    """RGB colour-coded masks -> class ids: class `i` is the pixels of colour `palette[i]`.

    Args:
        palette: One (r, g, b) per class, in class-id order.
        ignore_index: The id given to colours not in the palette.
        extra: Additional colour -> id entries (e.g. an explicit "ignore" colour).
    """

    label_bands = 3

    def __init__(
        self,
        palette: Sequence[Sequence[int]],
        ignore_index: int = 255,
        extra: Mapping[tuple[int, int, int], int] | None = None,
    ) -> None:
        self.palette = [tuple(int(v) for v in colour) for colour in palette]
        self.ignore_index = int(ignore_index)
        self.extra = {tuple(int(v) for v in k): int(v) for k, v in (extra or {}).items()}
        codes = {self._code(c): i for i, c in enumerate(self.palette)}
        codes.update({self._code(c): i for c, i in self.extra.items()})
        keys = np.array(sorted(codes), dtype=np.int64)
        self._keys = keys
        self._values = np.array([codes[int(k)] for k in keys], dtype=np.int64)
        self._lut: np.ndarray | None = None

    @staticmethod
    def _code(colour: Sequence[int]) -> int:
        r, g, b = (int(v) for v in colour)
        return (r << 16) | (g << 8) | b

    def _codes(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if raw.ndim != 3 or raw.shape[0] < 3:
            raise ValueError(
                f"colour-coded label needs 3 bands (R, G, B), got an array of shape {raw.shape}; "
                "pass the RGB mask, not a class-id mask"
            )
        rgb = raw[:3].astype(np.int64 if raw.dtype.itemsize > 1 else np.int32)
        return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        codes = self._codes(raw)
        if raw.dtype == np.uint8 and self._values.max(initial=0) < 256 and self.ignore_index < 256:
            if self._lut is None:  # 2^24 colours -> id, 16 MB, built once
                lut = np.full(1 << 24, self.ignore_index, np.uint8)
                lut[self._keys] = self._values
                self._lut = lut
            return self._lut[codes].astype(np.int64)
        flat = codes.ravel()
        position = np.clip(np.searchsorted(self._keys, flat), 0, len(self._keys) - 1)
        found = self._keys[position] == flat
        return np.where(found, self._values[position], self.ignore_index).reshape(codes.shape)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_lut": None}

    def unknown(self, raw: np.ndarray) -> list[Any]:
        codes = np.unique(self._codes(raw))
        known = set(self._keys.tolist())
        return [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in codes.tolist() if c not in known]

    def describe(self) -> str:
        return f"colours {self.palette}"

    def __repr__(self) -> str:
        return f"ColourMap({len(self.palette)} colours, ignore_index={self.ignore_index})"


class ColourOrValueMap(LabelMapping):
    """Accepts either an RGB colour-coded mask (3 bands) or a mask of class ids (1 band).

    UAVid ships colour masks; converted copies (e.g. by UAVidToolKit or the REST preprocessing) hold class ids.
    """

    label_bands = 0  # either

    def __init__(self, colours: ColourMap, values: ValueMap) -> None:
        self.colours = colours
        self.values = values

    def _pick(self, raw: np.ndarray) -> LabelMapping:
        raw = np.asarray(raw)
        return self.colours if raw.ndim == 3 and raw.shape[0] >= 3 else self.values

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self._pick(raw)(raw)

    def unknown(self, raw: np.ndarray) -> list[Any]:
        return self._pick(raw).unknown(raw)

    def describe(self) -> str:
        return f"RGB {self.colours.describe()}, or class ids {self.values.describe()}"


@dataclass(frozen=True, eq=False)
class DatasetInfo:
    """Everything about a dataset that the model, the training script and the model card need.

    Attributes:
        name: Layout name (`"glh-water"`, `"fbp"`, `"whu-ohs"`, `"uavid"`, `"folder"`).
        id2label: Class id -> class name, ids 0..K-1.
        palette: One (r, g, b) colour per class.
        ignore_index: Label id skipped by the loss and the metrics (nodata, padding, unlabeled pixels).
        num_bands: Bands the model sees (after `bands` selection).
        label_mapping: Raw label file bands -> class ids.
        bands: 1-based bands to read from each image file; `None` reads them all.
        image_mean, image_std: Per-band normalisation statistics on the raw scale of the files, or `None` to
            compute them from the training scenes (`compute_band_statistics`).
        value_range: Full scale of the raw values (255 for 8-bit imagery); photometric jitter works in this unit.
        clip_range: Clip photometrically jittered raw values to [0, value_range] (integer imagery).
        mask_alpha: Treat a band the file tags as alpha as a validity mask (pixels with alpha 0 are nodata).
            `False` where that band is data (FBP's N,R,G,B files are often tagged RGBA).
        title, url: Human-readable name and where the data comes from (model cards).
    """

    name: str
    id2label: dict[int, str]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int
    num_bands: int
    label_mapping: LabelMapping
    bands: tuple[int, ...] | None = None
    image_mean: tuple[float, ...] | None = None
    image_std: tuple[float, ...] | None = None
    value_range: float = 255.0
    clip_range: bool = True
    mask_alpha: bool = True
    title: str = ""
    url: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = sorted(self.id2label)
        if ids != list(range(len(ids))):
            raise ValueError(f"id2label of {self.name!r} must use ids 0..K-1, got {ids}")
        if len(self.palette) != len(ids):
            raise ValueError(f"{self.name!r} has {len(ids)} classes but {len(self.palette)} palette colours")
        if 0 <= self.ignore_index < len(ids):
            raise ValueError(f"ignore_index {self.ignore_index} of {self.name!r} is a class id; use e.g. 255")
        for stats in (self.image_mean, self.image_std):
            if stats is not None and len(stats) != self.num_bands:
                raise ValueError(
                    f"{self.name!r}: {len(stats)} normalisation values for {self.num_bands} bands; give one per band"
                )

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    def map_labels(self, raw: np.ndarray) -> np.ndarray:
        """Raw label bands (C, h, w) or (h, w) -> class ids (h, w) int64 (unknown values -> ignore_index)."""
        return self.label_mapping(raw)

    def replace(self, **changes: Any) -> DatasetInfo:
        """A copy with some fields changed, e.g. `info.replace(image_mean=..., image_std=...)`."""
        from dataclasses import replace

        return replace(self, **changes)

    def config_kwargs(self) -> dict[str, Any]:
        """Fields for `RestConfig` / `RestConfig.from_preset`: classes, palette, band count, ignore value."""
        return {
            "num_labels": self.num_labels,
            "id2label": dict(self.id2label),
            "label2id": self.label2id,
            "num_channels": self.num_bands,
            "loss_ignore_index": self.ignore_index,
            "palette": [list(c) for c in self.palette],
        }

    def processor_kwargs(self) -> dict[str, Any]:
        """Fields for `RestImageProcessor` (needs `image_mean`/`image_std`; see `compute_band_statistics`)."""
        if self.image_mean is None or self.image_std is None:
            raise ValueError(
                f"dataset {self.name!r} has no normalisation statistics; compute them from the training scenes "
                "with rest_hf.data.compute_band_statistics(records, info) and use info.replace(image_mean=..., "
                "image_std=...)"
            )
        return {"image_mean": list(self.image_mean), "image_std": list(self.image_std)}

    def __repr__(self) -> str:
        return (
            f"DatasetInfo(name={self.name!r}, num_labels={self.num_labels}, num_bands={self.num_bands}, "
            f"ignore_index={self.ignore_index}, bands={self.bands}, label_mapping={self.label_mapping!r})"
        )


__all__ = ["ColourMap", "ColourOrValueMap", "DatasetInfo", "LabelMapping", "ValueMap"]
