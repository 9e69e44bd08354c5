"""`rest-hf predict`: segment whole scenes into georeferenced label rasters, on one process or many.

    rest-hf predict SCENE.tif -o LABELS.tif --model DIR_OR_HUB_ID
    torchrun --nproc_per_node 4 -m rest_hf predict SCENE.tif -o LABELS.tif --model ... --grid 2x2

Under torchrun / `accelerate launch` the command joins the process group itself (gloo on the CPU, NCCL on
GPUs), splits each scene over a `--grid` of processes (by default all of them, in the most square grid) and
leaves the group at exit. Only the first process prints and writes files.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

MODES = ("holistic", "windowed", "sliding")
PROGRAM = "rest-hf predict"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment whole scenes (GeoTIFF, PNG, JPEG) into georeferenced label rasters",
        description=(
            "Segment whole scenes into label GeoTIFFs with the input's CRS, transform and size (uint8 or uint16, "
            "nodata where the input has none, class colour table and names). Runs on one process, or on several "
            "under `torchrun --nproc_per_node N -m rest_hf predict ...` / `accelerate launch -m rest_hf predict "
            "...`, where each scene is split over the processes (exact: the labels do not depend on the number "
            "of processes). Outputs are written to temporary files and renamed when complete."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="scene rasters (GeoTIFF, PNG, JPEG, ...)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="label raster (one input) or folder (several inputs, or a path ending in /): FOLDER/<name>.tif",
    )
    parser.add_argument("--model", required=True, help="a save_pretrained folder, a Hub id, or a preset name")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="holistic",
        help="holistic: the whole scene at once (REST); windowed: large windows, each whole-scene, blended; "
        "sliding: the classic overlapping-crop baseline (default: holistic)",
    )
    parser.add_argument(
        "--window",
        type=int,
        help="window (crop) side in px [windowed: 2048, rounded up to the model's alignment; sliding: 512]",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        help="fraction of a window shared with its neighbour [windowed: 0.25; sliding: 0.33]",
    )
    parser.add_argument(
        "--grid", help="processes per scene as ROWSxCOLS (default: every process, most square grid)"
    )
    parser.add_argument("--bands", help="1-based bands to read, in the model's order, e.g. 3,2,1 or 1-4")
    parser.add_argument(
        "--probabilities",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write per-class probabilities (float GeoTIFF); PATH: file (one input) or folder; "
        "default <labels>_probs.tif",
    )
    parser.add_argument(
        "--probabilities-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="probability storage (default: float32)",
    )
    parser.add_argument(
        "--preview",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write a colour PNG of the labels; PATH: file (one input) or folder; default <labels>_preview.png",
    )
    parser.add_argument(
        "--preview-size",
        type=int,
        default=4096,
        help="longest side of the preview in px, 0: full size (default: 4096)",
    )
    parser.add_argument("--cog", action="store_true", help="write Cloud-Optimized GeoTIFFs")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU if there is one), cpu, cuda or cuda:N (default: auto)"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="autocast precision of the forward pass; bfloat16/float16 mainly for GPUs (default: float32)",
    )
    parser.add_argument(
        "--spatial-mode",
        choices=("exact", "regional"),
        default="exact",
        help="exact: P processes give the labels of one; regional: the original REST checkpoints' behaviour "
        "(default: exact)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds a process waits for the others before failing (default: 1800)",
    )
    parser.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..distributed import destroy_distributed, init_distributed
    from ..inference.runtime import DTYPES
    from .predict_plans import check_arguments

    try:
        bands, plans, device = check_arguments(args)
    except CommandError:
        # Under a launcher every process checks the same arguments: only the first one says what is wrong.
        if os.environ.get("RANK", "0") != "0":
            return 2
        raise
    dtype = DTYPES[args.dtype]
    try:
        created = init_distributed(device, args.timeout)
    except Exception as error:
        raise CommandError(f"cannot join the process group: {' '.join(str(error).split())}") from None
    # torchrun stops the other processes with SIGTERM when one fails, and a closed terminal sends SIGHUP: raise
    # instead of dying on the spot, so the scene being written is aborted and no temporary file is left behind.
    previous = {sig: signal.signal(sig, _terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run(args, plans, bands, device, dtype)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if created:
            destroy_distributed()


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _run(args, plans, bands, device, dtype) -> int:
    import torch
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    from ..cli import CommandError
    from ..distributed import (
        AgreedError,
        agreed,
        exit_alone,
        is_distributed,
        one_line,
        peak_memory_bytes,
        report_once,
    )
    from ..distributed import rank as world_rank
    from ..inference import FatalError, ScenePredictor
    from ..inference.heap import cap_convolution_caches, return_freed_heap
    from ..loading import load_image_processor, load_model
    from ..models import PRESETS
    from ..spatial import SpatialContext
    from .predict_scene import predict_scene, remove_stale_temporaries

    hf_logging.disable_progress_bar()  # the weights' loading bar; ours are the scenes' and windows'
    cap_convolution_caches()  # before the first forward pass: memory stays flat over any number of scenes
    is_root = world_rank() == 0

    def refuse(message: str) -> int:
        if not is_distributed():
            raise CommandError(message)
        report_once(message, PROGRAM)
        return 2

    try:
        ctx = SpatialContext.init(args.grid)
    except ValueError as error:
        return refuse(one_line(error))

    def build() -> Any:
        if args.model in PRESETS:
            torch.manual_seed(0)  # random weights, but the same on every process (and in every run)
        model = load_model(args.model, revision=args.revision)
        processor = load_image_processor(args.model, model.config, revision=args.revision)
        return ScenePredictor(
            model,
            processor,
            ctx,
            mode=args.mode,
            window=args.window,
            overlap=args.overlap,
            device=device,
            dtype=dtype,
            spatial_mode=args.spatial_mode,
        )

    try:
        predictor = agreed(build, catch=(ValueError, OSError))
    except AgreedError as error:
        return refuse(str(error))

    if is_root:  # SIGKILL gives no chance to clean up: the temporaries of killed runs go on the next one
        remove_stale_temporaries(plans)
    mine = plans[ctx.dp_rank :: ctx.dp_size]
    baseline = peak_memory_bytes(device)  # imports and the model: the scenes' own memory is the rest
    start = time.perf_counter()
    records = []
    show = is_root and not args.no_progress and sys.stderr.isatty()
    scenes_bar = tqdm(total=len(mine), unit="scene", disable=not (show and len(mine) > 1), dynamic_ncols=True)
    try:
        for plan in mine:
            records.append(predict_scene(plan, predictor, ctx, args, bands, show))
            return_freed_heap()
            # the high-water mark so far, so that growth over many scenes can be seen (and tested)
            records[-1]["peak_rss_bytes"] = peak_memory_bytes(torch.device("cpu"))
            scenes_bar.update(1)
    except FatalError as error:
        exit_alone(f"{error}; stopping every process", PROGRAM)
    except Exception as error:
        if not is_distributed():
            raise
        exit_alone(f"{type(error).__name__}: {one_line(error)}; stopping every process", PROGRAM)
    finally:
        scenes_bar.close()
    return _report(args, plans, records, predictor, ctx, device, time.perf_counter() - start, baseline)


def _report(args, plans, records, predictor, ctx, device, seconds: float, baseline: int) -> int:
    """Gather every group's records on process 0, print the summary there; the exit code on every process."""
    import torch

    from ..cli import CommandError
    from ..distributed import agree_max, gather_objects, peak_memory_bytes, world_size
    from ..distributed import rank as world_rank
    from ..inference.report import format_summary
    from ..io.classes import class_names
    from ..models import PRESETS
    from .json_reports import write_report

    gathered = gather_objects(records if ctx.rank == 0 else None)
    order = {str(plan.input): i for i, plan in enumerate(plans)}
    records = sorted((r for group in gathered if group for r in group), key=lambda r: order[r["input"]])
    peak = int(agree_max(peak_memory_bytes(device)))
    peak_rss = int(agree_max(peak_memory_bytes(torch.device("cpu"))))
    baseline = int(agree_max(baseline))
    failed = [r for r in records if "error" in r]
    if world_rank() != 0:
        return 1 if failed else 0
    config = predictor.config
    summary = {
        "model": args.model,
        "backbone": config.backbone_config.model_type,
        "bands": config.num_channels,
        "class_names": class_names(config.id2label, config.num_labels),
        "random_weights": args.model in PRESETS,
        "mode": args.mode,
        "window": predictor.window,
        "overlap": predictor.overlap,
        "processes": world_size(),
        "grid": list(ctx.grid),
        "scenes_at_once": ctx.dp_size,
        "device": str(device),
        "dtype": args.dtype,
        "seconds": seconds,
        "peak_memory_bytes": peak,
        "peak_rss_bytes": peak_rss,
        "baseline_memory_bytes": baseline,
        "scenes": records,
    }
    if len(plans) == 1 and failed:
        write_report(args.summary_json, summary, "--summary-json")
        raise CommandError(failed[0]["error"], exit_code=1)  # one input: the one-line error says it all
    print(format_summary(summary), flush=True)
    write_report(args.summary_json, summary, "--summary-json")
    return 1 if failed else 0
