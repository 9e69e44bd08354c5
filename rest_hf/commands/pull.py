"""`rest-hf pull REPO_ID`: download a model repository into the Hub cache and print its local folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pull",
        help="download a model from the Hub into the local cache and print its folder",
        description=(
            "Download a rest_hf model repository (weights, configs, model code, card) through the Hub cache and "
            "print the local folder. With HF_HUB_OFFLINE=1 it answers from the cache only. The folder (or the "
            "Hub id itself) can then be given to --model of the other commands."
        ),
    )
    parser.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, org/name")
    parser.add_argument("--revision", help="branch, tag or commit id (default: main)")
    parser.add_argument("--cache-dir", help="Hub cache folder (default: HF_HUB_CACHE)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..hub.errors import HubError
    from ..hub.models import pull_model

    try:
        folder = pull_model(args.repo_id, revision=args.revision, cache_dir=args.cache_dir)
    except HubError as error:
        raise CommandError(str(error)) from None
    print(folder)
    return 0
