"""Convert a transformers UperNetForSemanticSegmentation (Swin or ConvNeXt backbone) into a rest_hf folder.

    python scripts/convert_upernet.py openmmlab/upernet-swin-tiny upernet-swin-tiny-rest
    python scripts/convert_upernet.py ./my-upernet-folder ./my-rest-folder --overwrite

The result has no interaction layers: UperNet's weights load strictly and give UperNet's logits. The image
processor statistics and id2label are copied.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rest_hf.conversion import ConversionError, convert_upernet


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a save_pretrained folder or a Hub id of an UperNet model")
    parser.add_argument("output_dir", help="folder to write")
    parser.add_argument("--revision", help="Hub revision of the source")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    parser.add_argument(
        "--allow-unused", action="store_true", help="drop source tensors the model has no place for"
    )
    args = parser.parse_args(argv)
    try:
        report = convert_upernet(
            args.source,
            args.output_dir,
            overwrite=args.overwrite,
            allow_unused=args.allow_unused,
            revision=args.revision,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
