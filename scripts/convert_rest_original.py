"""Convert an original REST checkpoint (mmseg layout) into a rest_hf `save_pretrained` folder.

    python scripts/convert_rest_original.py REST_water_swin_large.pth rest-water-swin-large \
        --dataset glh-water --interaction-heads 8
    python scripts/convert_rest_original.py baseline_fbp_swin_large.pth baseline-fbp-swin-large --dataset fbp

REST checkpoints do not record the head count of their interaction layers (the original code used the number
of GPUs): `--interaction-heads` is required for them, and the model card records the choice.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rest_hf.conversion import DATASETS, ConversionError, convert_original_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="the original .pth file")
    parser.add_argument("output_dir", help="folder to write (config.json, model.safetensors, ...)")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="class names and palette")
    parser.add_argument(
        "--interaction-heads",
        type=int,
        help="heads of the interaction layers; required for REST checkpoints, which do not record it",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    parser.add_argument(
        "--allow-unused", action="store_true", help="drop source tensors the model has no place for"
    )
    args = parser.parse_args(argv)
    try:
        report = convert_original_checkpoint(
            args.checkpoint,
            args.output_dir,
            dataset=args.dataset,
            interaction_heads=args.interaction_heads,
            overwrite=args.overwrite,
            allow_unused=args.allow_unused,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
