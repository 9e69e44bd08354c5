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
from dataclasses import dataclass
from pathlib import Path
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


# ----------------------------------------------------------------------------------------------- planning
@dataclass
class ScenePlan:
    """Where one input's outputs go."""

    input: Path | str  # a local path, or a URL / GDAL virtual path (read by range requests)
    labels: Path
    probabilities: Path | None
    preview: Path | None


def _stem(path: Path | str) -> str:
    """The name of a scene without its extension: `scene` for `a/scene.tif` and `https://h/b/scene.tif?x=1`."""
    from pathlib import PurePosixPath
    from urllib.parse import urlparse

    if isinstance(path, Path):
        return path.stem
    return PurePosixPath(urlparse(path).path if "://" in path else path).stem or "scene"


def parse_bands(text: str | None) -> list[int] | None:
    """`"3,2,1"` or `"1-4"` (1-based) -> [3, 2, 1] / [1, 2, 3, 4]."""
    from ..cli import CommandError

    if text is None:
        return None
    bands: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                first, last = (int(v) for v in part.split("-", 1))
                bands.extend(range(first, last + 1))
            else:
                bands.append(int(part))
    except ValueError:
        raise CommandError(
            f"--bands {text!r} is not a list of 1-based band numbers such as 3,2,1 or 1-4"
        ) from None
    if not bands or min(bands) < 1:
        raise CommandError(f"--bands {text!r}: band numbers start at 1")
    return bands


def plan_outputs(args: argparse.Namespace) -> list[ScenePlan]:
    """Output paths of every input; refuses duplicate names and outputs that would replace an input."""
    from ..cli import CommandError

    if not args.output.strip():
        raise CommandError("-o is empty: give the label raster's file name (or a folder ending in /)")
    from ..io import is_remote

    inputs: list[Path | str] = [p if is_remote(p) else Path(p) for p in args.inputs]
    out = Path(args.output)
    as_folder = len(inputs) > 1 or out.is_dir() or args.output.endswith(("/", os.sep))
    if as_folder and out.exists() and not out.is_dir():
        raise CommandError(f"-o {out} is a file, but {len(inputs)} inputs need an output folder")
    stems = [_stem(p) for p in inputs]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if as_folder and duplicates:
        raise CommandError(
            f"several inputs are named {duplicates[0]!r}; their outputs would collide in {out}: predict them separately"
        )

    def extra(option: str | None, labels: Path, suffix: str, ext: str, stem: str) -> Path | None:
        if option is None:
            return None
        if option == "":
            return labels.with_name(f"{labels.stem}{suffix}{ext}")
        path = Path(option)
        if as_folder or path.is_dir() or option.endswith(("/", os.sep)):
            return path / f"{stem}{ext}"
        return path

    plans = []
    for path, stem in zip(inputs, stems, strict=True):
        labels = out / f"{stem}.tif" if as_folder else out
        plans.append(
            ScenePlan(
                input=path,
                labels=labels,
                probabilities=extra(args.probabilities, labels, "_probs", ".tif", stem),
                preview=extra(args.preview, labels, "_preview", ".png", stem),
            )
        )
    resolved_inputs = {p.resolve() for p in inputs if isinstance(p, Path)}
    for plan in plans:
        for output in (plan.labels, plan.probabilities, plan.preview):
            if output is not None and output.resolve() in resolved_inputs:
                raise CommandError(f"output {output} is one of the inputs; choose another -o")
    return plans


# ------------------------------------------------------------------------------------------------ running
def _check_arguments(args: argparse.Namespace) -> tuple[list[int] | None, list[ScenePlan], Any]:
    """Every refusal that needs no model and no peer: (bands, plans, device)."""
    from ..cli import CommandError
    from ..inference.runtime import resolve_device
    from .json_reports import check_report_path

    if args.window is not None and args.window < 1:
        raise CommandError(f"--window must be a positive number of pixels, got {args.window}")
    if args.overlap is not None and not 0 <= args.overlap < 1:
        raise CommandError(f"--overlap must be a fraction in [0, 1), got {args.overlap}")
    if args.mode == "holistic" and (args.window is not None or args.overlap is not None):
        raise CommandError("--window and --overlap apply to --mode windowed or sliding, not holistic")
    if args.timeout <= 0:
        raise CommandError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.preview_size < 0:
        raise CommandError(f"--preview-size must be >= 0, got {args.preview_size}")
    bands = parse_bands(args.bands)
    plans = plan_outputs(args)
    check_report_path(args.summary_json, "--summary-json")  # before any work: a folder, a device, read-only
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return bands, plans, device


def run(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..distributed import destroy_distributed, init_distributed
    from ..inference.runtime import DTYPES

    try:
        bands, plans, device = _check_arguments(args)
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
    from ..inference.heap import limit_heap_growth, return_freed_heap
    from ..loading import load_image_processor, load_model
    from ..models import PRESETS
    from ..spatial import SpatialContext

    hf_logging.disable_progress_bar()  # the weights' loading bar; ours are the scenes' and windows'
    limit_heap_growth()  # before the first scene: memory stays flat over any number of scenes
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
        _remove_stale_temporaries(plans)
    mine = plans[ctx.dp_rank :: ctx.dp_size]
    baseline = peak_memory_bytes(device)  # imports and the model: the scenes' own memory is the rest
    start = time.perf_counter()
    records = []
    show = is_root and not args.no_progress and sys.stderr.isatty()
    scenes_bar = tqdm(total=len(mine), unit="scene", disable=not (show and len(mine) > 1), dynamic_ncols=True)
    try:
        for plan in mine:
            records.append(_predict_scene(plan, predictor, ctx, args, bands, show))
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


def _predict_scene(plan: ScenePlan, predictor, ctx, args, bands, progress) -> dict[str, Any]:
    """Predict and write one scene (collective over the spatial group); returns its summary record."""
    from ..distributed import agreed, one_line
    from ..inference import SceneError, open_source
    from ..io import check_output_path

    config = predictor.config
    record: dict[str, Any] = {"input": str(plan.input), "labels": str(plan.labels), "notes": []}
    root = ctx.rank == 0
    started = time.perf_counter()
    outputs = None
    try:
        planned = [p for p in (plan.labels, plan.probabilities, plan.preview) if p is not None]
        agreed(lambda: [check_output_path(p, args.overwrite) for p in planned], ctx, root, error=SceneError)
        source = open_source(plan.input, bands, ctx)
        try:
            source = _drop_alpha(source, bands, config.num_channels, record, ctx)
            outputs = agreed(lambda: _writer(plan, source, config, args), ctx, root, error=SceneError)
            result = predictor.predict(
                source, outputs, probabilities=plan.probabilities is not None, progress=progress
            )
        finally:
            source.close()
        if root:
            try:
                outputs.commit()
            except Exception as error:
                raise SceneError(one_line(error)) from None
    except SceneError as error:
        if outputs is not None:
            outputs.abort()
        record.update(error=str(error), seconds=time.perf_counter() - started)
        return record
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    record.update(
        height=result.height,
        width=result.width,
        seconds=time.perf_counter() - started,
        predict_seconds=result.seconds,
        windows=result.windows,
        predicted_size=list(result.predicted_size) if result.predicted_size else None,
        valid_pixels=result.valid_pixels,
        nodata_pixels=result.height * result.width - result.valid_pixels,
        histogram=[int(v) for v in result.histogram] if result.histogram is not None else None,
        probabilities=str(plan.probabilities) if plan.probabilities else None,
        preview=str(plan.preview) if plan.preview else None,
    )
    record["notes"].extend(result.notes)
    return record


def _remove_stale_temporaries(plans: list[ScenePlan]) -> None:
    from ..io.writer.temporary import remove_stale_temporaries

    folders = [p.parent for plan in plans for p in (plan.labels, plan.probabilities, plan.preview) if p]
    removed = remove_stale_temporaries(folders)
    if removed:
        print(
            f"rest-hf predict: removed {len(removed)} temporary file{'s' if len(removed) != 1 else ''} left by a "
            f"killed run ({removed[0]}{', ...' if len(removed) > 1 else ''})",
            file=sys.stderr,
            flush=True,
        )


def _writer(plan: ScenePlan, source: Any, config: Any, args: argparse.Namespace) -> Any:
    from ..inference.outputs import SceneWriter

    return SceneWriter(
        source,
        config,
        plan.labels,
        plan.probabilities,
        plan.preview,
        overwrite=args.overwrite,
        cog=args.cog,
        probabilities_dtype=args.probabilities_dtype,
        preview_size=args.preview_size,
    )


def _drop_alpha(source, bands, num_channels: int, record: dict[str, Any], ctx) -> Any:
    """Without --bands, an RGBA input for an RGB model is read as RGB (alpha still masks pixels)."""
    from ..inference import open_source

    if bands is not None or source.count == num_channels or source.alpha_band is None:
        return source
    others = [b for b in source.bands if b != source.alpha_band]
    if len(others) != num_channels:
        return source
    path = source.path
    source.close()
    record["notes"].append(f"alpha band {source.alpha_band} used as a mask, bands {others} as input")
    return open_source(path, others, ctx)


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
