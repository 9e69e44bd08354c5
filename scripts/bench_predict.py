"""Benchmark `rest-hf predict`: time and peak memory of holistic (P = 1, 2), windowed and sliding prediction.

Every run is the command users run, in fresh processes (`python -m rest_hf predict`, or
`torchrun --standalone --nproc_per_node P -m rest_hf predict`), on a synthetic RGB GeoTIFF, with a model
saved in a temporary folder (random weights: timing and memory do not depend on them). The time is the
scene's own (read, predict, write) from the command's `--summary-json`, without start-up and model loading;
the memory is the peak of the largest process (CPU: max RSS; CUDA: max allocated), and the part of it added
after the model was loaded (the scene's own: activations, buffers, outputs).

    python scripts/bench_predict.py                                    # CPU: tiny and base, 1024-4096 px
    python scripts/bench_predict.py --models tiny --sizes 1024 2048    # a quicker look
    python scripts/bench_predict.py --device cuda --dtype bfloat16 --models large \\
        --interaction-stages all --sizes 6800x7200 --runs holistic:1   # Swin-L REST on a 6800 x 7200 scene

Runs (`--runs`): MODE:P, e.g. holistic:1 holistic:2 windowed:1 sliding:1 (windowed and sliding use `--window`
and `--crop`). Models: tiny (the tiny-swin preset), base (swin-base), large (swin-large). On CPUs the global
interaction over every token of stage 1 (1/4 resolution) costs hours at 4096 px, so the default keeps the
interaction layers on the two deepest stages (`--interaction-stages 2,3`); pass `all` for the paper's models.
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

MODELS = {"tiny": "tiny-swin", "base": "swin-base", "large": "swin-large"}


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width or height)


def make_scene(path: Path, height: int, width: int) -> Path:
    """A 3-band uint8 GeoTIFF with smooth structures, written in bands of rows (no whole-scene array)."""
    import rasterio
    from affine import Affine

    profile = dict(
        driver="GTiff", height=height, width=width, count=3, dtype="uint8", crs="EPSG:32618", tiled=True,
        blockxsize=512, blockysize=512, compress="deflate", transform=Affine(10, 0, 300000, 0, -10, 4400000),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, height, 512):
            rows = min(512, height - top)
            y, x = np.mgrid[top : top + rows, 0:width].astype(np.float32)
            bands = [120 + 80 * np.sin(0.01 * (b + 1) * y) * np.cos(0.013 * (b + 2) * x) for b in range(3)]
            block = np.stack(bands) + rng.normal(0, 8, size=(3, rows, width))
            dst.write(
                np.clip(block, 1, 255).astype(np.uint8), window=rasterio.windows.Window(0, top, width, rows)
            )
    return path


def save_model(folder: Path, preset: str, stages: list[int] | None) -> Path:
    from transformers.utils import logging as hf_logging

    from rest_hf import RestConfig, RestForSemanticSegmentation

    hf_logging.disable_progress_bar()

    overrides = {"num_labels": 24} if stages is None else {"num_labels": 24, "interaction_stages": stages}
    RestForSemanticSegmentation(RestConfig.from_preset(preset, **overrides)).eval().save_pretrained(folder)
    return folder


def run_one(scene: Path, model: Path, mode: str, processes: int, args, work: Path) -> dict:
    summary = work / "summary.json"
    summary.unlink(missing_ok=True)
    command = ["-m", "rest_hf", "predict", str(scene), "-o", str(work / "labels.tif"), "--model", str(model)]
    command += ["--overwrite", "--no-progress", "--mode", mode, "--summary-json", str(summary)]
    command += ["--device", args.device, "--dtype", args.dtype]
    if mode == "windowed":
        command += ["--window", str(args.window), "--overlap", str(args.overlap)]
    elif mode == "sliding":
        command += ["--window", str(args.crop)]
    if processes == 1:
        command = [sys.executable, *command]
    else:
        command = [
            str(Path(sys.executable).parent / "torchrun"),
            "--standalone",
            "--nproc_per_node",
            str(processes),
            *command,
        ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - started
    if done.returncode != 0 or not summary.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit code {done.returncode}", "wall": wall}
    data = json.loads(summary.read_text())
    scene_record = data["scenes"][0]
    return {
        "seconds": scene_record["seconds"],
        "windows": scene_record.get("windows", 1),
        "peak": data["peak_memory_bytes"],
        "baseline": data["baseline_memory_bytes"],
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny", "base"], choices=sorted(MODELS))
    parser.add_argument("--sizes", nargs="+", default=["1024", "2048", "4096"], help="scene sides, N or HxW")
    parser.add_argument(
        "--base-sizes", nargs="+", default=["1024"], help="sizes for the base and large models (slow on CPUs)"
    )
    parser.add_argument("--runs", nargs="+", default=["holistic:1", "holistic:2", "windowed:1", "sliding:1"])
    parser.add_argument("--window", type=int, default=1024, help="windowed mode's window (px)")
    parser.add_argument("--overlap", type=float, default=0.25, help="windowed mode's overlap")
    parser.add_argument("--crop", type=int, default=512, help="sliding mode's crop (px); overlap 1/3")
    parser.add_argument("--interaction-stages", default="2,3", help="'all' or comma-separated 0-based stages")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args()
    stages = (
        None if args.interaction_stages == "all" else [int(s) for s in args.interaction_stages.split(",")]
    )
    runs = [(r.split(":")[0], int(r.split(":")[1] if ":" in r else 1)) for r in args.runs]

    cores = os.cpu_count()
    print(f"# rest-hf predict benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()} {cores} cores, "
          f"device {args.device} {args.dtype}, interaction stages {args.interaction_stages}")  # fmt: skip
    print("| model | scene (px) | mode | P | windows | time (s) | peak memory (MiB) | of which scene (MiB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scenes: dict[tuple[int, int], Path] = {}
        for name in args.models:
            model = save_model(work / f"model-{name}", MODELS[name], stages)
            sizes = args.sizes if name == "tiny" else args.base_sizes
            for size in map(parse_size, sizes):
                if size not in scenes:
                    scenes[size] = make_scene(work / f"scene-{size[0]}x{size[1]}.tif", *size)
                for mode, processes in runs:
                    result = run_one(scenes[size], model, mode, processes, args, work)
                    row = {
                        "model": name,
                        "height": size[0],
                        "width": size[1],
                        "mode": mode,
                        "processes": processes,
                    }
                    row.update(result)
                    rows.append(row)
                    if "error" in result:
                        cells = f"- | failed: {result['error'][:120]} | - | -"
                    else:
                        peak, own = result["peak"] / 2**20, (result["peak"] - result["baseline"]) / 2**20
                        cells = f"{result['windows']} | {result['seconds']:.1f} | {peak:.0f} | {own:.0f}"
                    print(f"| {name} | {size[0]} x {size[1]} | {mode} | {processes} | {cells} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
