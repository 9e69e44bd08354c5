"""One prediction of the demo: rest_hf's `ScenePredictor` writing through `SceneWriter`, then the legend.

The label GeoTIFF (and, on request, the probability GeoTIFF) is written by the same code as `rest-hf predict`:
the input's CRS, transform and size, nodata, colour table and class names. The legend's pixel counts are the
predictor's own class histogram over the valid pixels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LegendRow", "Prediction", "PeakMemory", "legend_rows", "pixel_area_m2", "predict_scene"]


@dataclass(frozen=True)
class LegendRow:
    """One class of the legend: colour, name, share of the valid pixels (%), area in m2 (None: unknown)."""

    index: int
    name: str
    colour: tuple[int, int, int]
    pixels: int
    share: float
    area_m2: float | None


@dataclass
class Prediction:
    """What one run produced (files in the session's folder) and how long and how much memory it took."""

    labels_path: Path
    probabilities_path: Path | None
    legend: list[LegendRow]
    valid_pixels: int
    height: int
    width: int
    seconds: float
    peak_memory_bytes: int
    memory_kind: str
    notes: list[str] = field(default_factory=list)


def pixel_area_m2(crs: Any, transform: Any) -> float | None:
    """Ground area of one pixel in m2 for a projected CRS whose unit is a length (None otherwise).

    Planar area in the CRS (exact for equal-area projections, within the projection's scale error otherwise:
    UTM a few parts in ten thousand; Web Mercator overstates areas away from the equator).
    """
    if crs is None or transform is None or not crs.is_projected:
        return None
    try:
        _, factor = crs.linear_units_factor
    except Exception:  # noqa: BLE001 - a CRS without a length unit has no area in m2
        return None
    return abs(transform.a * transform.e - transform.b * transform.d) * float(factor) ** 2


def legend_rows(
    histogram: Sequence[int],
    id2label: dict[int, str],
    palette: Sequence[Sequence[int]],
    pixel_area: float | None,
) -> list[LegendRow]:
    """One row per class from the predictor's histogram (pixels per class over the valid pixels)."""
    from ..io.classes import class_names

    total = int(sum(int(v) for v in histogram))
    names = class_names(id2label, len(histogram))
    rows = []
    for index, count in enumerate(histogram):
        count = int(count)
        colour = palette[index]
        rows.append(
            LegendRow(
                index=index,
                name=names[index],
                colour=(int(colour[0]), int(colour[1]), int(colour[2])),
                pixels=count,
                share=100.0 * count / total if total else 0.0,
                area_m2=count * pixel_area if pixel_area is not None else None,
            )
        )
    return rows


class PeakMemory:
    """Peak memory of one run: CUDA allocations on a GPU, else this process's resident set size, sampled.

    On the CPU the operating system only keeps the process's all-time peak, so a thread samples the resident
    size every `interval` seconds while the run lasts (a peak shorter than that can be missed).
    """

    def __init__(self, device: Any, interval: float = 0.005) -> None:
        self.device, self.interval = device, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def kind(self) -> str:
        return "GPU allocations" if self.device.type == "cuda" else "process resident memory"

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        import psutil

        process = psutil.Process()
        self.peak = process.memory_info().rss

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, name="rest-hf-demo-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.device.type == "cuda":
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        import psutil

        self.peak = max(self.peak, psutil.Process().memory_info().rss)


def predict_scene(
    loaded: Any,
    scene: Path,
    bands: list[int],
    out_dir: Path,
    *,
    mode: str = "holistic",
    window: int | None = None,
    probabilities: bool = False,
    device: Any = "cpu",
    step: Callable[[float, str], None] | None = None,
) -> Prediction:
    """Predict `scene` with a loaded model (`LoadedModel`) into `out_dir`; ValueError (one line) on failure.

    Args:
        loaded: The model, its processor and config (`ModelCatalog.get`).
        scene: The scene file.
        bands: 1-based bands in the model's order.
        out_dir: Folder of this session's outputs (`<scene>_labels.tif`, `<scene>_probabilities.tif`).
        mode: `"holistic"` or `"windowed"`.
        window: Window side in px for `windowed` (None: the predictor's default).
        probabilities: Also write the per-class probabilities.
        device: Where the model runs.
        step: Called as `step(fraction, what)` between stages (the page's progress bar).
    """
    import torch

    from ..inference import SceneError, ScenePredictor, SceneWriter, open_source
    from ..io import resolve_palette

    device = torch.device(device)
    report = step or (lambda fraction, what: None)
    config = loaded.config
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(scene).stem
    labels_path = out_dir / f"{stem}_labels.tif"
    probabilities_path = out_dir / f"{stem}_probabilities.tif" if probabilities else None
    report(0.1, "preparing the model")
    predictor = ScenePredictor(
        loaded.model,
        loaded.processor,
        mode=mode,
        window=window if mode == "windowed" else None,
        device=device,
    )
    report(0.2, "reading the scene")
    started = time.perf_counter()
    writer = None
    try:
        with PeakMemory(device) as memory, open_source(scene, bands) as source:
            writer = SceneWriter(source, config, labels_path, probabilities_path, overwrite=True)
            report(0.3, "predicting")
            result = predictor.predict(source, writer, probabilities=probabilities, progress=True)
            report(0.9, "writing the GeoTIFF")
            writer.commit()
            area = pixel_area_m2(source.crs, source.transform)
    except SceneError as error:
        if writer is not None:
            writer.abort()
        raise ValueError(str(error)) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    seconds = time.perf_counter() - started
    palette = resolve_palette(config.palette, config.num_labels)
    return Prediction(
        labels_path=labels_path,
        probabilities_path=probabilities_path,
        legend=legend_rows(result.histogram, config.id2label, palette, area),
        valid_pixels=result.valid_pixels,
        height=result.height,
        width=result.width,
        seconds=seconds,
        peak_memory_bytes=memory.peak,
        memory_kind=memory.kind,
        notes=list(result.notes),
    )
