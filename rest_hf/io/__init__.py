"""Raster reading and writing with rasterio: windowed, georeferenced, atomic.

Reading: `RasterSource` (windowed reads of selected bands, validity masks), `normalize` /
`normalize_with_processor` (model input). Writing: `LabelWriter`, `ProbabilityWriter` (windowed, atomic,
optional COG), `write_labels`, `write_probabilities`, `write_preview_png`. Colours: `default_palette`.

rasterio is imported lazily (inside functions), so `import rest_hf.io` works without it; the functions that
touch files need it (`pip install 'rest_hf[geo]'`).
"""

from .colors import default_palette, palette_to_colormap, resolve_palette
from .errors import RasterReadError, RasterWriteError, quiet_georeferencing
from .normalize import normalize, normalize_with_processor
from .preview import write_preview_png
from .reader import GeoReference, RasterSource, gdal_path, is_remote, valid_mask_from_array
from .writer import (
    LabelWriter,
    ProbabilityWriter,
    check_output_path,
    float16_supported,
    label_dtype,
    write_labels,
    write_probabilities,
)

__all__ = [
    "GeoReference",
    "LabelWriter",
    "ProbabilityWriter",
    "RasterReadError",
    "RasterSource",
    "RasterWriteError",
    "check_output_path",
    "default_palette",
    "float16_supported",
    "gdal_path",
    "is_remote",
    "label_dtype",
    "normalize",
    "normalize_with_processor",
    "palette_to_colormap",
    "quiet_georeferencing",
    "resolve_palette",
    "valid_mask_from_array",
    "write_labels",
    "write_preview_png",
    "write_probabilities",
]
