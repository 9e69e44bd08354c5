"""Benchmark memory over many scenes: does `rest-hf predict`'s peak memory stay flat, and at what speed cost?

One `rest-hf predict` run per setting, each in a fresh process, over the same list of synthetic RGB GeoTIFFs:
one large scene, then `--scenes` scenes of random sizes between 100 and `--largest` - 40 px a side, the large
scene again, then `--repeats` scenes of one size (where oneDNN's cache of primitives pays off). Growth is the
peak RSS after the last scene minus the peak RSS after the first one (the largest scene alone sets the
expected peak: anything above it is memory that was not given back); "second half": the part of it after
the middle scene. Seconds per scene come from the command's `--summary-json` (read, predict and write;
start-up and model loading excluded), all settings measured in one run. Settings (the row marked rest-hf
predict is the command as it is; the others switch parts of `rest_hf.inference.heap` off or add to it):

- `as before issue 12`: default convolution caches, no trim after each scene;
- `trim`: `malloc_trim` after each scene only (the previous state);
- `no conv caches`: oneDNN's primitive cache at 0 entries and PyTorch's ideep cache at 1 (ideep crashes at
  0), what `rest_hf.inference.heap.cap_convolution_caches` sets; `of 64`: 64 entries each;
- `mmap 64 KiB`: glibc's mmap threshold fixed at 64 KiB (MALLOC_MMAP_THRESHOLD_=65536; the same as
  `mallopt(M_MMAP_THRESHOLD, 65536)` at start, measured alike).

    python scripts/bench_predict_memory.py --scenes 150 --repeats 30   # the table in docs/benchmarks.md
    python scripts/bench_predict_memory.py                             # 40 scenes, a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CACHES = "import rest_hf.inference.heap as h; h.cap_convolution_caches = lambda: None; "
NO_TRIM = "h.return_freed_heap = lambda: None; "
MMAP_64K = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def caches(entries: int) -> dict[str, str]:
    return {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(entries), "LRU_CACHE_CAPACITY": str(entries)}


# name: (code run before the command, environment)
SETTINGS = {
    "as before issue 12": (DEFAULT_CACHES + NO_TRIM, {}),
    "trim": (DEFAULT_CACHES, {}),
    "trim + mmap 64 KiB": (DEFAULT_CACHES, MMAP_64K),
    "trim + no conv caches (rest-hf predict)": ("", {}),
    "trim + no conv caches + mmap 64 KiB": ("", MMAP_64K),
    "trim + conv caches of 64": ("", caches(64)),
    "trim + no oneDNN cache (ideep's kept)": (DEFAULT_CACHES, {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}),
}


def make_scene(path: Path, height: int, width: int, seed: int) -> Path:
    """A 3-band uint8 GeoTIFF of smooth structures and noise."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    bands = [120 + 80 * np.sin(0.02 * (b + 1) * y) * np.cos(0.017 * (b + 2) * x) for b in range(3)]
    pixels = np.clip(np.stack(bands) + rng.normal(0, 8, size=(3, height, width)), 1, 255).astype(np.uint8)
    profile = dict(
        driver="GTiff", height=height, width=width, count=3, dtype="uint8", crs="EPSG:32618",
        transform=Affine(10, 0, 300000, 0, -10, 4400000),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


def save_model(folder: Path) -> Path:
    from transformers.utils import logging as hf_logging

    from rest_hf import RestConfig, RestForSemanticSegmentation

    hf_logging.disable_progress_bar()
    config = RestConfig.from_preset("tiny-swin", num_labels=8, interaction_stages=[2, 3])
    RestForSemanticSegmentation(config).eval().save_pretrained(folder)
    return folder


def scene_list(work: Path, count: int, largest: int, repeats: int) -> tuple[list[Path], int]:
    """The scenes in the order they are predicted, and the index of the first repeated one."""
    rng = np.random.default_rng(0)
    large = make_scene(work / "large.tif", largest, largest, 0)
    scenes = [large]
    for i in range(count):
        height, width = (int(v) for v in rng.integers(100, largest - 40, size=2))
        scenes.append(make_scene(work / f"varied-{i:03d}.tif", height, width, i + 1))
    scenes.append(make_scene(work / "large-again.tif", largest, largest, 0))
    first_repeat = len(scenes)
    scenes += [make_scene(work / f"repeat-{i:03d}.tif", 384, 384, 1000 + i) for i in range(repeats)]
    return scenes, first_repeat


def run_setting(code: str, env: dict[str, str], scenes: list[Path], model: Path, work: Path, timeout: float):
    summary = work / "summary.json"
    summary.unlink(missing_ok=True)
    argv = ["predict", *map(str, scenes), "-o", str(work / "out") + "/", "--model", str(model), "--overwrite"]
    argv += ["--no-progress", "--device", "cpu", "--summary-json", str(summary)]
    program = code + f"from rest_hf.cli import main; sys.exit(main({argv!r}))"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; " + program],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )
    if done.returncode != 0 or not summary.exists():
        raise RuntimeError(f"predict failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(summary.read_text())["scenes"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenes", type=int, default=40, help="scenes of random sizes (default: 40)")
    parser.add_argument(
        "--largest", type=int, default=640, help="side of the large scene in px (default: 640)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="scenes of one size at the end (default: 10)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per setting")
    args = parser.parse_args()

    print(
        f"# rest-hf predict memory over {args.scenes + 2 + args.repeats} scenes, {time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()} {os.cpu_count()} cores, tiny-swin (interaction stages 2,3), one process"
    )
    print(
        "| setting | peak after the first scene (MiB) | peak at the end (MiB) | growth (MiB) "
        "| of which in the second half (MiB) | s / scene, varied sizes | s / scene, one size |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = save_model(work / "model")
        scenes, first_repeat = scene_list(work, args.scenes, args.largest, args.repeats)
        for name in args.settings:
            code, env = SETTINGS[name]
            records = run_setting(code, env, scenes, model, work, args.timeout)
            peaks = [r["peak_rss_bytes"] / 2**20 for r in records]
            first, middle, last = peaks[0], peaks[len(peaks) // 2], peaks[-1]
            varied = np.mean([r["seconds"] for r in records[1:first_repeat]])
            repeated = (
                np.mean([r["seconds"] for r in records[first_repeat:]]) if args.repeats else float("nan")
            )
            print(
                f"| {name} | {first:.0f} | {last:.0f} | {last - first:+.0f} | {last - middle:+.0f} | {varied:.3f} "
                f"| {repeated:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
