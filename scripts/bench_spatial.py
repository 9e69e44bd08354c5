"""Benchmark SPIM: time, peak memory and communication share per process for P = 1, 2, 4.

Each configuration runs in fresh processes (gloo on CPU, NCCL on CUDA) so that the peak memory of one run is
not hidden by another's. Every process runs the parallelized model on its tile of one scene:

    python scripts/bench_spatial.py                                   # tiny model, 512-2048 px, CPU
    python scripts/bench_spatial.py --presets swin-base --sizes 512   # a base-size model
    python scripts/bench_spatial.py --device cuda --sizes 2048 4096   # on a GPU machine (one GPU per process)

Columns: seconds per forward (or training step), the speed-up over P = 1, peak activation memory per process
(CPU: growth of the max RSS over the process's state before the first run; CUDA: max_memory_allocated minus
the memory held before it) and its ratio to P = 1, and the share of time spent inside collectives.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.spatial import SpatialContext, parallelize_spatial, reduce_spatial_gradients, spatial_min_tile

COLLECTIVES = ("all_reduce", "all_gather", "all_to_all_single")


class CommTimer:
    """Wraps torch.distributed's collectives (as the primitives call them) to add up their wall time."""

    def __init__(self, device: str) -> None:
        self.seconds = 0.0
        self.device = device
        self.originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def __enter__(self) -> CommTimer:
        for name, original in self.originals.items():
            setattr(dist, name, self._timed(original))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self.originals.items():
            setattr(dist, name, original)

    def _timed(self, original):
        def call(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            if self.device == "cuda":
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
            return result

        return call


def _memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(rank: int, world: int, store: str, options: dict, result_path: str) -> None:
    device = options["device"]
    torch.set_num_threads(max(1, options["threads"] // world))
    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl" if device == "cuda" else "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=1800),
    )
    ctx = SpatialContext.init(grid=tuple(options["grid"]))
    torch.manual_seed(0)
    config = RestConfig.from_preset(options["preset"], num_labels=options["num_labels"])
    model = parallelize_spatial(RestForSemanticSegmentation(config).to(device), ctx)
    model.train(options["train"])
    size = options["size"]
    part = ctx.partition(size, size, config.spatial_alignment, min_tile=spatial_min_tile(config))
    box = part.box()
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, 3, size, size, generator=generator)[
        ..., box.top : box.bottom, box.left : box.right
    ]
    labels = torch.randint(0, options["num_labels"], (1, size, size), generator=generator)[
        ..., box.top : box.bottom, box.left : box.right
    ]
    pixels, labels = pixels.to(device).contiguous(), labels.to(device).contiguous()

    def run_once() -> None:
        if options["train"]:
            model.zero_grad(set_to_none=True)
            model(pixel_values=pixels, labels=labels).loss.backward()
            reduce_spatial_gradients(model, ctx)
        else:
            with torch.inference_mode():
                model(pixel_values=pixels)
        if device == "cuda":
            torch.cuda.synchronize()

    dist.barrier()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _memory_mb(device) if device == "cpu" else torch.cuda.memory_allocated() / 2**20
    run_once()  # warm-up, and the run whose peak memory is reported
    peak = _memory_mb(device) - before
    times, comm = [], 0.0
    for _ in range(options["repeats"]):
        dist.barrier()
        with CommTimer(device) as timer:
            start = time.perf_counter()
            run_once()
            times.append(time.perf_counter() - start)
        comm += timer.seconds
    result = {"seconds": min(times), "peak_mb": peak, "comm_share": comm / sum(times)}
    gathered = [None] * world
    dist.all_gather_object(gathered, result)
    if rank == 0:
        with open(result_path, "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


def measure(preset: str, size: int, procs: int, options: dict) -> dict:
    """Run one configuration in `procs` fresh processes; return the slowest rank's time and the peak memory."""
    rows, cols = (1, 1) if procs == 1 else {2: (1, 2), 4: (2, 2)}.get(procs, (1, procs))
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        run_options = dict(options, preset=preset, size=size, grid=(rows, cols))
        mp.start_processes(
            _worker,
            args=(procs, os.path.join(tmp, "store"), run_options, result_path),
            nprocs=procs,
            start_method="spawn",
        )
        with open(result_path) as f:
            ranks = json.load(f)
    return {
        "seconds": max(r["seconds"] for r in ranks),
        "peak_mb": max(r["peak_mb"] for r in ranks),
        "comm_share": max(r["comm_share"] for r in ranks),
        "grid": f"{rows}x{cols}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["tiny-swin"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--train", action="store_true", help="time a training step (forward + backward)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="CPU threads shared by the processes"
    )
    args = parser.parse_args()
    options = {
        "device": args.device,
        "train": args.train,
        "repeats": args.repeats,
        "threads": args.threads,
        "num_labels": 8,
    }
    what = "training step" if args.train else "forward"
    print(
        f"| model | scene | P | grid | s / {what} | speed-up | peak MB / process | memory vs P=1 | comm share |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for size in args.sizes:
            baseline = None
            for procs in args.procs:
                result = measure(preset, size, procs, options)
                baseline = baseline or result
                print(
                    f"| {preset} | {size} px | {procs} | {result['grid']} | {result['seconds']:.2f} | "
                    f"{baseline['seconds'] / result['seconds']:.2f}x | {result['peak_mb']:.0f} | "
                    f"{result['peak_mb'] / baseline['peak_mb']:.2f} | {100 * result['comm_share']:.1f}% |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
