"""One scene of `rest-hf predict`: its outputs checked, the scene opened and predicted, its outputs written and
committed together (or none of them), and its summary record. Collective over the scene's spatial group."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .predict_plans import ScenePlan

__all__ = ["predict_scene", "remove_stale_temporaries"]


def predict_scene(plan: ScenePlan, predictor, ctx, args, bands, progress) -> dict[str, Any]:
    """Predict and write one scene (collective over the spatial group); returns its summary record."""
    from ..distributed import agreed, one_line
    from ..inference import SceneError, open_source
    from ..io import check_output_path

    config = predictor.config
    record: dict[str, Any] = {"input": str(plan.input), "labels": str(plan.labels), "notes": []}
    root = ctx.rank == 0
    started = time.perf_counter()
    outputs = None
    try:
        planned = [p for p in (plan.labels, plan.probabilities, plan.preview) if p is not None]
        agreed(lambda: [check_output_path(p, args.overwrite) for p in planned], ctx, root, error=SceneError)
        source = open_source(plan.input, bands, ctx)
        try:
            source = _drop_alpha(source, bands, config.num_channels, record, ctx)
            outputs = agreed(lambda: _writer(plan, source, config, args), ctx, root, error=SceneError)
            result = predictor.predict(
                source, outputs, probabilities=plan.probabilities is not None, progress=progress
            )
        finally:
            source.close()
        if root:
            try:
                outputs.commit()
            except Exception as error:
                raise SceneError(one_line(error)) from None
    except SceneError as error:
        if outputs is not None:
            outputs.abort()
        record.update(error=str(error), seconds=time.perf_counter() - started)
        return record
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    record.update(
        height=result.height,
        width=result.width,
        seconds=time.perf_counter() - started,
        predict_seconds=result.seconds,
        windows=result.windows,
        predicted_size=list(result.predicted_size) if result.predicted_size else None,
        valid_pixels=result.valid_pixels,
        nodata_pixels=result.height * result.width - result.valid_pixels,
        histogram=[int(v) for v in result.histogram] if result.histogram is not None else None,
        probabilities=str(plan.probabilities) if plan.probabilities else None,
        preview=str(plan.preview) if plan.preview else None,
    )
    record["notes"].extend(result.notes)
    return record


def remove_stale_temporaries(plans: list[ScenePlan]) -> None:
    from ..io.writer.temporary import remove_stale_temporaries as remove

    folders = [p.parent for plan in plans for p in (plan.labels, plan.probabilities, plan.preview) if p]
    removed = remove(folders)
    if removed:
        print(
            f"rest-hf predict: removed {len(removed)} temporary file{'s' if len(removed) != 1 else ''} left by a "
            f"killed run ({removed[0]}{', ...' if len(removed) > 1 else ''})",
            file=sys.stderr,
            flush=True,
        )


def _writer(plan: ScenePlan, source: Any, config: Any, args: argparse.Namespace) -> Any:
    from ..inference.outputs import SceneWriter

    return SceneWriter(
        source,
        config,
        plan.labels,
        plan.probabilities,
        plan.preview,
        overwrite=args.overwrite,
        cog=args.cog,
        probabilities_dtype=args.probabilities_dtype,
        preview_size=args.preview_size,
    )


def _drop_alpha(source, bands, num_channels: int, record: dict[str, Any], ctx) -> Any:
    """Without --bands, an RGBA input for an RGB model is read as RGB (alpha still masks pixels)."""
    from ..inference import open_source

    if bands is not None or source.count == num_channels or source.alpha_band is None:
        return source
    others = [b for b in source.bands if b != source.alpha_band]
    if len(others) != num_channels:
        return source
    path = source.path
    source.close()
    record["notes"].append(f"alpha band {source.alpha_band} used as a mask, bands {others} as input")
    return open_source(path, others, ctx)
