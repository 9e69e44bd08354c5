"""`rest-hf dataset push|pull`: scene datasets on the Hub (files as they are, a Parquet index, a dataset card)."""

from __future__ import annotations

import argparse

LAYOUT_NAMES = ("glh-water", "fbp", "whu-ohs", "uavid", "folder")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="push a scene dataset to the Hub, or pull one")
    actions = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    push = actions.add_parser(
        "push",
        help="upload a dataset folder: scene files as they are, a Parquet index and a dataset card",
        description=(
            "Upload the scenes a layout finds under ROOT (with their sidecar files) to a Hub dataset repository, "
            "in commits of --chunk-size files; files already on the Hub with the same content are skipped, so an "
            "interrupted push resumes when run again. The index (metadata/<split>.parquet) and the card come last."
        ),
    )
    push.add_argument(
        "root", metavar="ROOT", help="the dataset folder (or, for --layout folder, an index file)"
    )
    push.add_argument(
        "repo_id", metavar="REPO_ID", help="Hub dataset repository, org/name (created if missing)"
    )
    push.add_argument("--layout", required=True, choices=LAYOUT_NAMES, help="how ROOT is arranged")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--revision", help="branch to push to (created if missing)")
    push.add_argument(
        "--chunk-size", type=int, default=100, metavar="N", help="files per commit (default 100)"
    )
    push.set_defaults(func=run_push)

    pull = actions.add_parser(
        "pull",
        help="download a dataset (or one split) through the Hub cache and print its folder",
        description=(
            "Download a dataset pushed with `rest-hf dataset push`: all of it, one --split, or the files matching "
            "--allow-patterns (the card, the index and the layout's root files always come along). Prints the "
            "local folder, which the layouts scan like the original."
        ),
    )
    pull.add_argument("repo_id", metavar="REPO_ID", help="Hub dataset repository, org/name")
    pull.add_argument("--split", help="only the scenes of this split (train, val, test, ...)")
    pull.add_argument(
        "--allow-patterns", nargs="+", metavar="GLOB", help="only files matching these patterns"
    )
    pull.add_argument("--local-dir", help="download into this folder instead of the Hub cache")
    pull.add_argument("--revision", help="branch, tag or commit id (default: main)")
    pull.add_argument("--cache-dir", help="Hub cache folder (default: HF_HUB_CACHE)")
    pull.set_defaults(func=run_pull)


def run_push(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..hub.datasets import push_dataset
    from ..hub.errors import HubError

    try:
        commits = push_dataset(
            args.root,
            args.repo_id,
            layout=args.layout,
            private=args.private,
            revision=args.revision,
            chunk_size=args.chunk_size,
        )
    except HubError as error:
        raise CommandError(str(error)) from None
    print(f"pushed {args.root} to {args.repo_id} in {len(commits)} commit(s); last: {commits[-1].commit_url}")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..hub.datasets import pull_dataset
    from ..hub.errors import HubError

    try:
        folder = pull_dataset(
            args.repo_id,
            split=args.split,
            allow_patterns=args.allow_patterns,
            local_dir=args.local_dir,
            revision=args.revision,
            cache_dir=args.cache_dir,
        )
    except HubError as error:
        raise CommandError(str(error)) from None
    print(folder)
    return 0
