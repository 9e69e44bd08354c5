"""Peak memory of `rest-hf predict` stays flat over many scenes of varying sizes (issue 12, item 8).

glibc kept the heap that scenes of varying sizes freed, and oneDNN and PyTorch's ideep cached the
convolution primitives of every input shape they saw (1,024 each by default): peak RSS crept up scene after
scene (+142 MiB over 182 scenes in `scripts/bench_predict_memory.py`). The command now trims the heap after
each scene and caps both caches before its first forward pass (`rest_hf.inference.heap`).
"""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import write_geotiff
from tests.inference.helpers import save_model, synthetic_scene

from .helpers import run_cli

LARGEST = 320
SCENES = 120  # of random sizes, each new to the caches; a few seconds in all
SETTLED_AFTER = 5  # scenes: the first ones set the peak (the largest is first)
# With the caches at their defaults (the fault) these 120 scenes add 40 MiB to the peak (22 MiB for 60: it
# grows with every new size); capped, 1-3 MiB of allocator slack whatever the count. 8 MiB tells them apart
# with room for another allocator's slack, and is a fifth of what the fault adds here.
GROWTH_BOUND = 8 * 2**20


def test_peak_memory_stays_flat_over_many_scenes_of_varying_sizes(tmp_path, monkeypatch):
    for variable in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        monkeypatch.delenv(variable, raising=False)  # the command's own settings, not the caller's
    model = save_model(tmp_path / "model", 3)
    rng = np.random.default_rng(0)
    scenes = [write_geotiff(tmp_path / "in" / "large.tif", synthetic_scene(LARGEST, LARGEST))]
    for i in range(SCENES):
        height, width = (int(v) for v in rng.integers(64, LARGEST - 20, size=2))
        scenes.append(
            write_geotiff(tmp_path / "in" / f"s{i:03d}.tif", synthetic_scene(height, width, seed=i))
        )
    summary = tmp_path / "summary.json"
    done = run_cli(
        "predict", *map(str, scenes), "-o", str(tmp_path / "out") + "/", "--model", str(model),
        "--summary-json", str(summary),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    peaks = [scene["peak_rss_bytes"] for scene in json.loads(summary.read_text())["scenes"]]
    assert len(peaks) == SCENES + 1 and peaks == sorted(peaks)  # a high-water mark, scene after scene
    growth = peaks[-1] - peaks[SETTLED_AFTER - 1]
    assert growth < GROWTH_BOUND, (
        f"peak RSS grew by {growth / 2**20:.1f} MiB over {SCENES + 1 - SETTLED_AFTER} scenes"
    )
