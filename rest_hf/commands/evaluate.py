"""`rest-hf evaluate`: IoU per class, mIoU, accuracy and F1 of predicted label rasters against references.

    rest-hf evaluate pred/a.tif pred/b.tif --reference ref/a.tif ref/b.tif --json metrics.json

The rasters are read in bands of rows (never whole) into one streaming confusion matrix; pixels that are
nodata in either raster, or equal `--ignore-index` in the reference, are not counted. The JSON has the keys
of the `mean_iou` metric of the evaluate library (`mean_iou`, `mean_accuracy`, `overall_accuracy`,
`per_category_iou`, `per_category_accuracy`) plus F1, class names, the confusion matrix and one entry per
scene.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="IoU, mIoU, accuracy and F1 of predicted label rasters against reference rasters",
        description=(
            "Compare predicted label rasters with reference label rasters of the same size, pixel by pixel, in "
            "bands of rows (any scene size). Prints a table per class and writes JSON with the keys of the "
            "evaluate library's mean_iou metric."
        ),
    )
    parser.add_argument("predictions", nargs="+", metavar="PRED", help="predicted label rasters")
    parser.add_argument(
        "--reference",
        nargs="+",
        required=True,
        metavar="REF",
        help="reference label rasters, in the order of the predictions, or one folder holding files of the "
        "same names",
    )
    parser.add_argument(
        "--num-classes", type=int, help="number of classes (default: from --model or the predictions)"
    )
    parser.add_argument("--model", help="take the number of classes and their names from this model's config")
    parser.add_argument(
        "--ignore-index",
        type=int,
        default=255,
        help="reference value that is not counted, -1: none (default: 255)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the metrics as JSON")
    parser.add_argument("--block", type=int, default=1024, help="rows read at a time (default: 1024)")
    parser.set_defaults(func=run)


def _pairs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    from ..cli import CommandError

    predictions = [Path(p) for p in args.predictions]
    references = [Path(p) for p in args.reference]
    if len(references) == 1 and references[0].is_dir():
        folder = references[0]
        references = [folder / p.name for p in predictions]
    if len(references) != len(predictions):
        raise CommandError(
            f"{len(predictions)} predictions but {len(references)} references; give one reference per prediction, "
            "in the same order, or a folder holding references with the predictions' file names"
        )
    return list(zip(predictions, references, strict=True))


def _classes(args: argparse.Namespace, first_prediction: Path) -> tuple[int, dict[int, str] | None]:
    """Number of classes and their names: --num-classes, --model, or the tags rest-hf predict writes."""
    from ..cli import CommandError

    names: dict[int, str] | None = None
    if args.model:
        from ..loading import load_config

        try:
            config = load_config(args.model)
        except ValueError as error:
            raise CommandError(str(error)) from None
        names = {int(k): str(v) for k, v in config.id2label.items()}
        count = args.num_classes or config.num_labels
        if args.num_classes and args.num_classes != config.num_labels:
            raise CommandError(
                f"--num-classes {args.num_classes} differs from the {config.num_labels} classes of {args.model}"
            )
        return count, names
    from ..io import RasterSource
    from ..io.classes import class_names_from_tags

    try:
        with RasterSource(first_prediction, [1]) as source:
            tags = source.tags
    except Exception:
        tags = {}  # reported with the file's own error below
    if "class_names" in tags:
        names = class_names_from_tags(tags)
    count = args.num_classes or (int(tags["NUM_CLASSES"]) if tags.get("NUM_CLASSES", "").isdigit() else None)
    if count is None:
        raise CommandError(
            f"{first_prediction} does not say how many classes there are; pass --num-classes K or --model"
        )
    if count < 1:
        raise CommandError(f"--num-classes must be >= 1, got {count}")
    return count, names


def _check_aligned(pred: Any, ref: Any) -> None:
    from ..cli import CommandError

    if (pred.height, pred.width) != (ref.height, ref.width):
        raise CommandError(
            f"{pred.path} is {pred.height} x {pred.width} px but its reference {ref.path} is "
            f"{ref.height} x {ref.width} px; they must cover the same pixels"
        )
    if (
        pred.crs is not None
        and ref.crs is not None
        and (pred.crs != ref.crs or pred.transform != ref.transform)
    ):
        raise CommandError(
            f"{pred.path} and its reference {ref.path} have the same size but different georeferencing "
            f"(CRS {pred.crs} vs {ref.crs}); resample one onto the other's grid first"
        )


def run(args: argparse.Namespace) -> int:
    from ..cli import CommandError
    from ..io import RasterSource
    from ..metrics import ConfusionMatrix, format_table, metrics_to_json
    from .json_reports import check_report_path, write_report

    if args.block < 1:
        raise CommandError(f"--block must be a positive number of rows, got {args.block}")
    pairs = _pairs(args)
    check_report_path(args.json, "--json")
    num_classes, names = _classes(args, pairs[0][0])
    ignore = None if args.ignore_index < 0 else args.ignore_index
    total = ConfusionMatrix(num_classes, ignore_index=ignore)
    scenes = []
    for pred_path, ref_path in pairs:
        scene = ConfusionMatrix(num_classes, ignore_index=ignore)
        try:
            with RasterSource(pred_path, [1]) as pred, RasterSource(ref_path, [1]) as ref:
                _check_aligned(pred, ref)
                for top in range(0, pred.height, args.block):
                    rows = min(args.block, pred.height - top)
                    predicted, pred_valid = pred.read_masked(top, 0, rows, pred.width)
                    reference, ref_valid = ref.read_masked(top, 0, rows, ref.width)
                    try:
                        scene.update(predicted[0], reference[0], valid_mask=pred_valid & ref_valid)
                    except ValueError as error:
                        raise ValueError(
                            f"{pred_path} / {ref_path} (rows {top}-{top + rows}): {error}"
                        ) from None
        except (OSError, ValueError) as error:
            raise CommandError(" ".join(str(error).split())) from None
        total.merge(scene)
        metrics = scene.compute()
        scenes.append(
            {
                "prediction": str(pred_path),
                "reference": str(ref_path),
                "mean_iou": _finite(metrics["mean_iou"]),
                "overall_accuracy": _finite(metrics["overall_accuracy"]),
                "num_pixels": metrics["num_pixels"],
            }
        )
    if total.num_pixels == 0:
        raise CommandError(
            "no pixel was counted: every pixel is nodata in the prediction or the reference, or equals "
            f"--ignore-index {args.ignore_index} in the reference"
        )
    metrics = total.compute(names)
    for scene in scenes:
        if len(scenes) > 1:
            print(
                f"{Path(scene['prediction']).name}: mIoU {_percent(scene['mean_iou'])}, overall accuracy "
                f"{_percent(scene['overall_accuracy'])} ({scene['num_pixels']:,} pixels)"
            )
    print(format_table(metrics, names))
    if args.json:
        result = metrics_to_json(metrics, names)
        result["ignore_index"] = ignore
        result["scenes"] = scenes
        write_report(args.json, result, "--json")
    return 0


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
