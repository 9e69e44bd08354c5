"""Benchmark SPIM side by side in one run: exact against regional at the same grid, P processes against one.

Every configuration runs in fresh processes (gloo on CPU, NCCL on CUDA), one thread and one core each by
default, so the peak memory of one run is not hidden by another's; each process runs the parallelized model on
its tile of one scene, best of `--repeats`:

    python scripts/bench_spatial.py                       # tiny-convnext, interaction on stages 2 and 3, 1024 px
    python scripts/bench_spatial.py --train               # a training step, gradients reduced after backward
                                                          # and overlapped with it (GradientReducer)
    python scripts/bench_spatial.py --device cuda --presets swin-base --sizes 2048 --grids 2x2
    python scripts/bench_spatial.py --presets tiny-swin swin-base --sizes 256 512 --grids   # one process only
    python scripts/bench_spatial.py --heap keep           # glibc keeps freed memory: no page faults per pass
    python scripts/bench_spatial.py --interleaved --repeats 40   # both modes in the same processes, in turn

Columns: seconds per forward (or training step), the ratio to regional at the same grid and to one process,
collectives per forward (or step) and how many of them are metadata (layout) exchanges, the share of time
spent inside collectives, and the peak memory per process (CPU: growth of the max RSS over the process's state
before the first run; CUDA: max_memory_allocated minus the memory held before it). `--interleaved` prints
each mode's best and median forward, their ratios, and the median of the ratios of forwards run back to back
(the paired ratio, which the machine's slow drifts do not move).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.distributed import barrier, gather_objects, peak_memory_bytes
from rest_hf.inference.heap import keep_freed_heap
from rest_hf.spatial import GradientReducer, SpatialContext, parallelize_spatial, reduce_spatial_gradients

COLLECTIVES = ("all_reduce", "all_gather", "all_to_all_single", "broadcast")


class _TimedWork:
    """An asynchronous collective's handle whose `wait` adds the time spent waiting to the meter."""

    def __init__(self, work, meter: CommMeter) -> None:
        self._work, self._meter = work, meter

    def wait(self, *args, **kwargs):
        start = time.perf_counter()
        result = self._work.wait(*args, **kwargs)
        self._meter.seconds += time.perf_counter() - start
        return result

    def __getattr__(self, name):
        return getattr(self._work, name)


class CommMeter:
    """Wraps torch.distributed's collectives (as the primitives call them) to count them and add up their
    wall time: the call, and for an asynchronous one (halos in flight, overlapped gradient buckets) the time
    spent in its `wait` too, i.e. the communication the computation did not hide."""

    def __init__(self, device: str) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.metadata = 0
        self.device = device
        self.originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def __enter__(self) -> CommMeter:
        for name, original in self.originals.items():
            setattr(dist, name, self._timed(name, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self.originals.items():
            setattr(dist, name, original)

    def _timed(self, name, original):
        def call(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            if self.device == "cuda":
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - start
            self.calls += 1
            tensor = args[1] if name == "all_gather" and len(args) > 1 else None
            self.metadata += int(isinstance(tensor, torch.Tensor) and tensor.dtype == torch.int64)
            return _TimedWork(result, self) if kwargs.get("async_op") else result

        return call


def _join(
    rank: int, world: int, store: str, options: dict
) -> tuple[SpatialContext, torch.device, RestConfig]:
    """This process's heap, threads, core and process group; the spatial context and the model's config."""
    if options["heap"] == "keep" and not keep_freed_heap():
        raise RuntimeError("--heap keep needs glibc's malloc; run with --heap default")
    device = torch.device(options["device"], rank) if options["device"] == "cuda" else torch.device("cpu")
    torch.set_num_threads(options["threads"])
    if options["pin"] and hasattr(os, "sched_setaffinity"):
        # One core per process, as one GPU per process: the OS does not stack two ranks on one core while
        # another sits idle, which costs a collective-heavy mode far more than a quiet one.
        cores = sorted(os.sched_getaffinity(0))
        first = rank * options["threads"] % len(cores)
        os.sched_setaffinity(0, set(cores[first : first + options["threads"]]))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=1800),
    )
    ctx = SpatialContext.init(grid=tuple(options["grid"]))
    torch.manual_seed(0)
    config = RestConfig.from_preset(
        options["preset"], num_labels=options["num_labels"], interaction_stages=options["stages"]
    )
    return ctx, device, config


def _worker(rank: int, world: int, store: str, options: dict, result_path: str) -> None:
    ctx, device, config = _join(rank, world, store, options)
    model = parallelize_spatial(RestForSemanticSegmentation(config).to(device), ctx, mode=options["mode"])
    model.train(options["train"])
    size = options["size"]
    part = ctx.partition(size, size, config)
    generator = torch.Generator().manual_seed(1)
    batch = 2 if options["train"] else 1  # UperNet's BatchNorm on the 1x1 pooled map needs 2 in training
    pixels = part.local(torch.randn(batch, 3, size, size, generator=generator)).to(device).contiguous()
    labels = part.local(torch.randint(0, options["num_labels"], (batch, size, size), generator=generator))
    labels = labels.to(device).contiguous()
    reducer = GradientReducer(model, ctx) if options["reduction"] == "overlapped" else None

    def run_once() -> None:
        if options["train"]:
            model.zero_grad(set_to_none=True)
            if reducer is not None:
                reducer.arm()
            model(pixel_values=pixels, labels=labels).loss.backward()
            if reducer is not None:
                reducer.finish()
            else:
                reduce_spatial_gradients(model, ctx)
        else:
            with torch.inference_mode():
                model(pixel_values=pixels)
        if device.type == "cuda":
            torch.cuda.synchronize()

    barrier()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = peak_memory_bytes(device)
    run_once()  # warm-up, and the run whose peak memory is reported
    peak = (peak_memory_bytes(device) - before) / 2**20
    times, comm, calls, metadata = [], 0.0, 0, 0
    for _ in range(options["repeats"]):
        barrier()
        with CommMeter(device.type) as meter:
            start = time.perf_counter()
            run_once()
            times.append(time.perf_counter() - start)
        comm += meter.seconds
        calls, metadata = meter.calls, meter.metadata
    result = {
        "seconds": min(times),
        "peak_mb": peak,
        "comm_share": comm / sum(times),
        "calls": calls,
        "metadata": metadata,
    }
    gathered = gather_objects(result)
    if rank == 0:
        with open(result_path, "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


def measure(grid: tuple[int, int], mode: str, reduction: str, options: dict) -> dict:
    """Run one configuration in fresh processes; the slowest rank's time, the largest peak memory."""
    procs = grid[0] * grid[1]
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        run_options = dict(options, grid=grid, mode=mode, reduction=reduction)
        mp.start_processes(
            _worker,
            args=(procs, os.path.join(tmp, "store"), run_options, result_path),
            nprocs=procs,
            start_method="spawn",
        )
        with open(result_path) as f:
            ranks = json.load(f)
    return {
        "procs": procs,
        "seconds": max(r["seconds"] for r in ranks),
        "peak_mb": max(r["peak_mb"] for r in ranks),
        "comm_share": max(r["comm_share"] for r in ranks),
        "calls": ranks[0]["calls"],
        "metadata": ranks[0]["metadata"],
    }


def _interleaved_worker(rank: int, world: int, store: str, options: dict, result_path: str) -> None:
    """Both modes in the same processes, one forward of each in turn: the processes' placement, their heap
    and the machine's load then weigh on both alike, which fresh processes per mode cannot ensure."""
    ctx, device, config = _join(rank, world, store, options)
    base = RestForSemanticSegmentation(config).to(device).eval()
    models = {
        mode: parallelize_spatial(copy.deepcopy(base), ctx, mode=mode) for mode in ("regional", "exact")
    }
    size = options["size"]
    part = ctx.partition(size, size, config)
    generator = torch.Generator().manual_seed(1)
    pixels = part.local(torch.randn(1, 3, size, size, generator=generator)).to(device).contiguous()
    times: dict[str, list[float]] = {mode: [] for mode in models}
    with torch.inference_mode():
        for model in models.values():
            model(pixel_values=pixels)
        for i in range(options["repeats"]):
            for mode in list(models) if i % 2 else list(models)[::-1]:
                barrier()
                start = time.perf_counter()
                models[mode](pixel_values=pixels)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[mode].append(time.perf_counter() - start)
    gathered = gather_objects(times)
    if rank == 0:
        with open(result_path, "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


def measure_interleaved(grid: tuple[int, int], options: dict) -> dict[str, list[float]]:
    """Seconds of every forward of each mode (the slowest rank's), both modes in the same fresh processes."""
    procs = grid[0] * grid[1]
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        mp.start_processes(
            _interleaved_worker,
            args=(procs, os.path.join(tmp, "store"), dict(options, grid=grid), result_path),
            nprocs=procs,
            start_method="spawn",
        )
        with open(result_path) as f:
            ranks = json.load(f)
    return {mode: [max(run) for run in zip(*(r[mode] for r in ranks), strict=True)] for mode in ranks[0]}


def _print_interleaved(args: argparse.Namespace, grids: list[tuple[int, int]], options: dict) -> None:
    print(
        f"interaction stages {args.stages}, {args.threads} thread(s) per process, {args.device}, "
        f"{args.heap} heap, both modes in the same processes, {args.repeats} forwards each x {args.rounds} "
        "round(s)"
    )
    print(
        "| model | scene | grid | regional s (best, median) | exact s (best, median) "
        "| exact / regional (best, median) | paired: median of exact_i / regional_i |"
    )
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for size in args.sizes:
            for grid in grids:
                times: dict[str, list[float]] = {"regional": [], "exact": []}
                for _ in range(args.rounds):
                    for mode, seconds in measure_interleaved(
                        grid, dict(options, preset=preset, size=size)
                    ).items():
                        times[mode] += seconds
                best = {mode: min(seconds) for mode, seconds in times.items()}
                median = {mode: statistics.median(seconds) for mode, seconds in times.items()}
                # Forward i of each mode ran back to back: their ratio cancels the machine's slow drifts.
                paired = statistics.median(
                    e / r for e, r in zip(times["exact"], times["regional"], strict=True)
                )
                print(
                    f"| {preset} | {size} px | {grid[0]}x{grid[1]} | {best['regional']:.3f}, {median['regional']:.3f} | "
                    f"{best['exact']:.3f}, {median['exact']:.3f} | {best['exact'] / best['regional']:.2f}x, "
                    f"{median['exact'] / median['regional']:.2f}x | {paired:.2f}x |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["tiny-convnext"])
    parser.add_argument("--stages", nargs="*", type=int, default=[2, 3], help="interaction stages")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024], help="scene sides in pixels")
    parser.add_argument(
        "--grids", nargs="*", default=["1x2"], help="grids of the split runs (none: P=1 only)"
    )
    parser.add_argument("--train", action="store_true", help="time a training step (forward + backward)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per process (the best counts)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds over all configurations, interleaved (the best counts)"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="inference only: both modes in the same processes, forwards alternating (no memory column)",
    )
    parser.add_argument(
        "--heap",
        default="default",
        choices=["default", "keep"],
        help="glibc's heap: its default (freed memory returned, refaulted at the next pass) or kept "
        "(rest_hf.inference.heap.keep_freed_heap), to time the model without the allocator's page faults",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the OS place processes (default: one core each)",
    )
    args = parser.parse_args()
    grids = [tuple(int(v) for v in grid.lower().split("x")) for grid in args.grids]
    options = {
        "device": args.device,
        "train": args.train,
        "repeats": args.repeats,
        "threads": args.threads,
        "pin": args.pin,
        "heap": args.heap,
        "num_labels": 8,
        "stages": args.stages,
    }
    if args.interleaved:
        if args.train or not grids:
            parser.error("--interleaved times inference on split grids; drop --train and give --grids")
        _print_interleaved(args, grids, options)
        return
    what = "step" if args.train else "forward"
    reductions = ("after", "overlapped") if args.train else ("after",)
    print(
        f"interaction stages {args.stages}, {args.threads} thread(s) per process, {args.device}, "
        f"{args.heap} heap, best of {args.repeats} x {args.rounds} round(s)"
    )
    print(
        f"| model | scene | P | grid | mode | gradients | s / {what} | vs regional | vs P=1 | "
        f"collectives / {what} (metadata) | comm share | peak MB / process |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for size in args.sizes:
            runs = [((1, 1), "exact", "after")]
            runs += [(grid, mode, r) for grid in grids for r in reductions for mode in ("regional", "exact")]
            results = {}
            # Rounds interleave the configurations, so that a burst of load on a shared machine hits them alike.
            for _ in range(args.rounds):
                for run in runs:
                    result = measure(*run, dict(options, preset=preset, size=size))
                    if run not in results or result["seconds"] < results[run]["seconds"]:
                        results[run] = result
            for grid, mode, reduction in runs:
                result = results[grid, mode, reduction]
                single = results[(1, 1), "exact", "after"]
                regional = results.get((grid, "regional", reduction))
                versus = result["seconds"] / regional["seconds"] if regional and grid != (1, 1) else 1.0
                print(
                    f"| {preset} | {size} px | {result['procs']} | {grid[0]}x{grid[1]} | {mode} | "
                    f"{reduction if args.train else '-'} | {result['seconds']:.3f} | {versus:.2f}x | "
                    f"{result['seconds'] / single['seconds']:.2f}x | {result['calls']} ({result['metadata']}) | "
                    f"{100 * result['comm_share']:.1f}% | {result['peak_mb']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
