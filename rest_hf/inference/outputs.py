"""The files of one predicted scene: label GeoTIFF, optional probabilities and colour preview, all atomic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["SceneWriter"]


class SceneWriter:
    """A `PredictionSink` (rank 0) that writes one scene's outputs and makes them visible together.

    The label raster and the probability raster are written window by window into temporary files
    (`rest_hf.io.LabelWriter` / `ProbabilityWriter`: the input's CRS, transform and size, nodata, the class
    colour table and names of `config`); `commit()` finishes them, renders the preview from the finished label
    raster (decimated, so no full-size copy is held), and only then renames them all into place: every output
    of the scene is replaced together or none is. `abort()` leaves nothing behind.

    Args:
        like: The input (`RasterSource`, `GeoReference`): size and georeferencing of the outputs.
        config: The model's config (`num_labels`, `id2label`, `palette`).
        labels: Label GeoTIFF path.
        probabilities: Probability GeoTIFF path, or None.
        preview: PNG path, or None.
        overwrite: Replace existing outputs (otherwise refused before any work).
        cog: Write Cloud-Optimized GeoTIFFs.
        probabilities_dtype: `"float32"` or `"float16"` (float32 where GDAL cannot write Float16).
        preview_size: Longest side of the preview in px (0: full size).
    """

    def __init__(
        self,
        like: Any,
        config: Any,
        labels: Path,
        probabilities: Path | None = None,
        preview: Path | None = None,
        *,
        overwrite: bool = False,
        cog: bool = False,
        probabilities_dtype: str = "float32",
        preview_size: int = 4096,
    ) -> None:
        from ..io import LabelWriter, ProbabilityWriter

        self.config, self.preview, self.preview_size, self.overwrite = (
            config,
            preview,
            preview_size,
            overwrite,
        )
        self.committed: list[Path] = []
        self.probabilities = None
        common = dict(id2label=config.id2label, overwrite=overwrite, cog=cog)
        self.labels = LabelWriter(labels, like, config.num_labels, palette=config.palette, **common)
        try:
            if probabilities is not None:
                self.probabilities = ProbabilityWriter(
                    probabilities, like, config.num_labels, dtype=probabilities_dtype, **common
                )
        except BaseException:
            self.abort()
            raise

    def write(self, top, left, labels, valid, probabilities) -> None:
        self.labels.write(labels, top, left, valid_mask=valid)
        if self.probabilities is not None and probabilities is not None:
            self.probabilities.write(probabilities, top, left, valid_mask=valid)

    def commit(self) -> list[Path]:
        """Make every output visible together, or none of them.

        Every file is first finished under its temporary name (the rasters closed and translated, the preview
        rendered from the finished label raster); only then are they renamed into place together
        (`publish_together`). A failure at any step (a full disk, an unwritable preview) leaves the previous
        outputs of this scene as they were and no temporary behind.
        """
        from ..io.preview import render_preview_png
        from ..io.writer.temporary import publish_together, temporary_path, unlink_quietly

        preview_tmp = None
        try:
            moves = [(self.labels.finish(), self.labels.path)]
            if self.probabilities is not None:
                moves.append((self.probabilities.finish(), self.probabilities.path))
            if self.preview is not None:
                preview_tmp = temporary_path(self.preview)
                self._render_preview(moves[0][0], preview_tmp, render_preview_png)
                moves.append((preview_tmp, self.preview))
            self.committed = publish_together(moves, self.overwrite)
        except BaseException:
            self.abort()
            if preview_tmp is not None:
                unlink_quietly(preview_tmp)
            raise
        for writer in (self.labels, self.probabilities):
            if writer is not None:
                writer.mark_committed()
        return self.committed

    def _render_preview(self, labels_file: Path, target: Path, render: Any) -> None:
        from ..io import RasterSource, RasterWriteError, resolve_palette
        from ..io.errors import gdal_detail

        try:
            with RasterSource(labels_file) as finished:
                longest = max(finished.height, finished.width)
                scale = (
                    longest / self.preview_size if self.preview_size and longest > self.preview_size else 1.0
                )
                shape = (max(1, round(finished.height / scale)), max(1, round(finished.width / scale)))
                labels = finished.read_overview(*shape)[0][0]
            palette = resolve_palette(self.config.palette, self.config.num_labels)
            render(labels, palette, target, self.labels.nodata)
        except Exception as error:
            raise RasterWriteError(f"failed to write preview {self.preview}: {gdal_detail(error)}") from error

    def abort(self) -> None:
        """Discard every output not yet committed."""
        for writer in (self.labels, self.probabilities):
            if writer is not None:
                writer.abort()
