"""`rest-hf push MODEL_DIR REPO_ID [--space ORG/NAME]`: upload a save_pretrained folder to the Hub in one commit,
with model card and remote code; optionally a Gradio Space that serves it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a model folder to the Hub (one commit: weights, configs, model code, model card)",
        description=(
            "Upload a folder written by save_pretrained to a Hub model repository in one commit. The repository "
            "gets the weights as they are, config.json and preprocessor_config.json with an auto_map, the model "
            "code (so transformers loads it with trust_remote_code=True, without rest_hf) and a model card "
            "(README.md, generated unless the folder has one). Needs a write token (hf auth login or HF_TOKEN)."
        ),
    )
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="folder written by model.save_pretrained, or a shipped model's name",
    )
    parser.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, org/name (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to commit to (created from main if missing)")
    parser.add_argument("--message", help="commit message (default: 'Upload rest_hf model')")
    parser.add_argument(
        "--space",
        metavar="ORG/NAME",
        help="also create (or update) a Gradio Space serving the model with rest_hf's demo; the model card "
        "links to it",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..hub.errors import HubError
    from ..hub.models import push_model
    from ..hub.space import push_space, space_url
    from ..pretrained import resolve_model_source

    if args.space is not None and args.space.count("/") != 1:
        raise CommandError(f"--space {args.space!r} is not a Hub id; use the form org/name")
    try:
        info = push_model(
            resolve_model_source(args.model_dir),  # a shipped model's name pushes its folder
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.message,
            space_id=args.space,
        )
    except HubError as error:
        raise CommandError(str(error)) from None
    print(f"pushed {args.model_dir} to {info.commit_url}")
    if args.space is None:
        return 0
    try:
        space = push_space(args.repo_id, args.space, revision=args.revision, private=args.private)
    except HubError as error:
        raise CommandError(
            f"the model is pushed, but not the Space: {error}; run the same command again to retry"
        ) from None
    print(f"created the Space {space_url(args.space)} ({space.commit_url})")
    return 0
