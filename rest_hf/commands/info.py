"""`rest-hf info`: describe a model (preset, folder or Hub id): backbone, classes, alignment, parameters."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a model: backbone, classes, tile alignment, size")
    parser.add_argument("model", help="a preset name (e.g. tiny-swin), a save_pretrained folder or a Hub id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.classes import class_names
    from ..loading import load_config

    config = load_config(args.model)
    backbone = config.backbone_config
    print(f"model:            {args.model}")
    print(f"backbone:         {backbone.model_type} (stage channels {config.stage_channels})")
    print(f"input bands:      {config.num_channels}")
    print(
        f"classes:          {config.num_labels} ({', '.join(class_names(config.id2label, config.num_labels))})"
    )
    print(
        f"interaction:      stages {config.interaction_stages}, heads {config.interaction_num_heads}, "
        f"placement {config.interaction_placement}"
    )
    print(f"decoder:          {config.decoder_variant}, hidden size {config.hidden_size}")
    print(f"tile alignment:   {config.spatial_alignment} px")
    return 0
