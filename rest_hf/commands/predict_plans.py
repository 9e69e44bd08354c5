"""Where the outputs of `rest-hf predict` go, and every refusal of its arguments that needs no model and no
peer (so that it comes before any work, from the first process only)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ScenePlan", "check_arguments", "parse_bands", "plan_outputs"]


@dataclass
class ScenePlan:
    """Where one input's outputs go."""

    input: Path | str  # a local path, or a URL / GDAL virtual path (read by range requests)
    labels: Path
    probabilities: Path | None
    preview: Path | None


def _stem(path: Path | str) -> str:
    """The name of a scene without its extension: `scene` for `a/scene.tif` and `https://h/b/scene.tif?x=1`."""
    from pathlib import PurePosixPath
    from urllib.parse import urlparse

    if isinstance(path, Path):
        return path.stem
    return PurePosixPath(urlparse(path).path if "://" in path else path).stem or "scene"


def parse_bands(text: str | None) -> list[int] | None:
    """`"3,2,1"` or `"1-4"` (1-based) -> [3, 2, 1] / [1, 2, 3, 4]."""
    from ..cli import CommandError

    if text is None:
        return None
    bands: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                first, last = (int(v) for v in part.split("-", 1))
                bands.extend(range(first, last + 1))
            else:
                bands.append(int(part))
    except ValueError:
        raise CommandError(
            f"--bands {text!r} is not a list of 1-based band numbers such as 3,2,1 or 1-4"
        ) from None
    if not bands or min(bands) < 1:
        raise CommandError(f"--bands {text!r}: band numbers start at 1")
    return bands


def plan_outputs(args: argparse.Namespace) -> list[ScenePlan]:
    """Output paths of every input; refuses duplicate names and outputs that would replace an input."""
    from ..cli import CommandError

    if not args.output.strip():
        raise CommandError("-o is empty: give the label raster's file name (or a folder ending in /)")
    from ..io import is_remote

    inputs: list[Path | str] = [p if is_remote(p) else Path(p) for p in args.inputs]
    out = Path(args.output)
    as_folder = len(inputs) > 1 or out.is_dir() or args.output.endswith(("/", os.sep))
    if as_folder and out.exists() and not out.is_dir():
        raise CommandError(f"-o {out} is a file, but {len(inputs)} inputs need an output folder")
    stems = [_stem(p) for p in inputs]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if as_folder and duplicates:
        raise CommandError(
            f"several inputs are named {duplicates[0]!r}; their outputs would collide in {out}: predict them separately"
        )

    def extra(option: str | None, labels: Path, suffix: str, ext: str, stem: str) -> Path | None:
        if option is None:
            return None
        if option == "":
            return labels.with_name(f"{labels.stem}{suffix}{ext}")
        path = Path(option)
        if as_folder or path.is_dir() or option.endswith(("/", os.sep)):
            return path / f"{stem}{ext}"
        return path

    plans = []
    for path, stem in zip(inputs, stems, strict=True):
        labels = out / f"{stem}.tif" if as_folder else out
        plans.append(
            ScenePlan(
                input=path,
                labels=labels,
                probabilities=extra(args.probabilities, labels, "_probs", ".tif", stem),
                preview=extra(args.preview, labels, "_preview", ".png", stem),
            )
        )
    resolved_inputs = {p.resolve() for p in inputs if isinstance(p, Path)}
    for plan in plans:
        for output in (plan.labels, plan.probabilities, plan.preview):
            if output is not None and output.resolve() in resolved_inputs:
                raise CommandError(f"output {output} is one of the inputs; choose another -o")
    return plans


def check_arguments(args: argparse.Namespace) -> tuple[list[int] | None, list[ScenePlan], Any]:
    """Every refusal that needs no model and no peer: (bands, plans, device)."""
    from ..cli import CommandError
    from ..inference.runtime import resolve_device
    from .json_reports import check_report_path

    if args.window is not None and args.window < 1:
        raise CommandError(f"--window must be a positive number of pixels, got {args.window}")
    if args.overlap is not None and not 0 <= args.overlap < 1:
        raise CommandError(f"--overlap must be a fraction in [0, 1), got {args.overlap}")
    if args.mode == "holistic" and (args.window is not None or args.overlap is not None):
        raise CommandError("--window and --overlap apply to --mode windowed or sliding, not holistic")
    if args.timeout <= 0:
        raise CommandError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.preview_size < 0:
        raise CommandError(f"--preview-size must be >= 0, got {args.preview_size}")
    bands = parse_bands(args.bands)
    plans = plan_outputs(args)
    check_report_path(args.summary_json, "--summary-json")  # before any work: a folder, a device, read-only
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise CommandError(str(error)) from None
    return bands, plans, device
