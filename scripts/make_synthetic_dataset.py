"""Write a small synthetic segmentation dataset (GeoTIFFs, `folder` layout) for CPU demos and tests.

    python scripts/make_synthetic_dataset.py data/synthetic-shapes
    python scripts/make_synthetic_dataset.py data/synthetic-context --task context --size 256

`shapes`: coloured rectangles whose class is their colour (learnable from small crops, see
`scripts/configs/tiny-cpu.yaml`). `context`: a large region whose class is set by a marker in a corner of the
scene (needs whole-scene context, see `scripts/bench_context.py`). Details in `rest_hf/training/synthetic.py`.
"""

from __future__ import annotations

import argparse

from rest_hf.training.synthetic import TASKS, write_synthetic_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="output folder (created)")
    parser.add_argument("--task", choices=TASKS, default="shapes")
    parser.add_argument("--num-train", type=int, default=16, help="training scenes")
    parser.add_argument("--num-val", type=int, default=4, help="validation scenes")
    parser.add_argument("--size", type=int, default=128, help="scene side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = write_synthetic_dataset(args.root, args.task, args.num_train, args.num_val, args.size, args.seed)
    print(f"wrote {args.num_train} training and {args.num_val} validation {args.task} scenes to {root}")


if __name__ == "__main__":
    main()
