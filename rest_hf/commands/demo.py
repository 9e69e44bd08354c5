"""`rest-hf demo`: a web page to segment scenes with rest_hf models (Gradio; `pip install 'rest_hf[demo]'`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="serve a web page that segments uploaded scenes (needs rest_hf[demo])",
        description=(
            "Serve a Gradio page on HOST:PORT (127.0.0.1:7860 by default, reachable from this machine only): "
            "upload a GeoTIFF, PNG or JPEG (or pick a sample), choose a model and a mode, and get the label map "
            "side by side with the scene and as an overlay, a legend with each class's share (and area when "
            "georeferenced), the run's time and peak memory, and the georeferenced label GeoTIFF (and, on "
            "request, the probabilities) to download. One prediction runs at a time."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="DIR_OR_HUB_ID",
        help="a save_pretrained folder or a Hub id to offer first (repeatable); the presets are offered too",
    )
    parser.add_argument("--revision", help="Hub revision of the --model Hub ids")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes the page)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="SCENE",
        help="a scene of yours to offer as a sample (repeatable); a synthetic one is always offered",
    )
    parser.add_argument("--max-upload-mb", type=float, default=64, help="largest upload in MB (default: 64)")
    parser.add_argument(
        "--max-megapixels", type=float, default=16.8, help="largest scene in megapixels (default: 16.8)"
    )
    parser.add_argument("--max-queue", type=int, default=8, help="predictions that may wait (default: 8)")
    parser.add_argument(
        "--no-hub-ids", action="store_true", help="do not let the page load Hub ids typed by its users"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import CommandError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CommandError(
            "the demo needs Gradio: pip install 'rest_hf[demo]' (with -c constraints.txt in a checkout)"
        ) from None
    from ..demo import ModelCatalog, UploadLimits, serve
    from ..inference.runtime import resolve_device

    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0 or args.max_queue < 1:
        raise CommandError("--max-upload-mb, --max-megapixels and --max-queue must be positive")
    try:
        resolve_device(args.device)
    except ValueError as error:
        raise CommandError(str(error)) from None
    samples = {}
    for scene in args.sample:
        path = Path(scene)
        if not path.is_file():
            raise CommandError(f"--sample {scene}: no such file")
        samples[path.name] = path
    catalog = ModelCatalog(args.model, allow_hub_ids=not args.no_hub_ids, revision=args.revision)
    for name in args.model:  # fail now, not in the page, when an operator's model cannot load
        try:
            catalog.get(name)
        except ValueError as error:
            raise CommandError(str(error)) from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"rest-hf demo: serving on {args.host}: anyone who can reach this address can use it",
            file=sys.stderr,
        )
    limits = UploadLimits(int(args.max_upload_mb * 2**20), int(args.max_megapixels * 1e6))
    serve(
        catalog,
        host=args.host,
        port=args.port,
        limits=limits,
        samples=samples,
        device=args.device,
        max_queue=args.max_queue,
    )
    return 0
