"""The end-of-run summary of `rest-hf predict`, as text, from the same dictionary `--summary-json` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["format_bytes", "format_summary"]


def format_bytes(count: int) -> str:
    """1536 -> '1.5 KiB'."""
    if count < 1024:
        return f"{count} B"
    value, units = count / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def format_summary(summary: dict[str, Any]) -> str:
    """Lines for people: the run, one line per scene (size, time, outputs, notes, or why it failed), the class
    shares over every written scene, peak memory.

    Args:
        summary: As written by `--summary-json`: model, backbone, bands, class_names, mode, processes, grid,
            scenes_at_once, device, dtype, random_weights, seconds, peak_memory_bytes, baseline_memory_bytes
            and `scenes` (records with input, labels, height, width, seconds, windows, notes, histogram,
            nodata_pixels, probabilities, preview, peak_rss_bytes: the process's peak RSS after that scene;
            or input and error).
    """
    scenes, names, processes = summary["scenes"], summary["class_names"], summary["processes"]
    rows, cols = summary["grid"]
    at_once = f", {summary['scenes_at_once']} scenes at once" if summary["scenes_at_once"] > 1 else ""
    lines = [
        f"rest-hf predict: {len(scenes)} scene{'s' if len(scenes) != 1 else ''}, model {summary['model']} "
        f"({summary['backbone']}, {summary['bands']} bands, {len(names)} classes), mode {summary['mode']}, "
        f"{processes} process{'es' if processes != 1 else ''} (grid {rows}x{cols}{at_once}), "
        f"{summary['device'].split(':')[0]} {summary['dtype']}"
    ]
    if summary["random_weights"]:
        lines.append(
            f"  note: {summary['model']} is a preset with random weights: for demonstrations and benchmarks"
        )
    histogram = [0] * len(names)
    for scene in scenes:
        name = Path(scene["input"]).name
        if "error" in scene:
            lines.append(f"  {name}: FAILED: {scene['error']}")
            continue
        outputs = [scene["labels"]] + [scene[k] for k in ("probabilities", "preview") if scene.get(k)]
        windows = f", {scene['windows']} windows" if scene["windows"] > 1 else ""
        lines.append(
            f"  {name}: {scene['height']} x {scene['width']} px, {scene['seconds']:.1f} s{windows} -> "
            f"{', '.join(outputs)}"
        )
        lines.extend(f"    note: {note}" for note in scene["notes"])
        for i, count in enumerate(scene["histogram"] or []):
            histogram[i] += count
    valid = sum(histogram)
    if valid:
        shares = ", ".join(f"{names[i]} {100.0 * c / valid:.1f}%" for i, c in enumerate(histogram) if c)
        nodata = sum(s["nodata_pixels"] for s in scenes if "error" not in s)
        lines.append(f"classes ({valid:,} valid pixels, {nodata:,} nodata): {shares}")
    kind = "GPU allocated" if summary["device"].startswith("cuda") else "max RSS"
    largest = f", largest of {processes} processes" if processes > 1 else ""
    lines.append(
        f"peak memory {format_bytes(summary['peak_memory_bytes'])} ({kind}{largest}; "
        f"{format_bytes(summary['baseline_memory_bytes'])} before the first scene: libraries and model); "
        f"total {summary['seconds']:.1f} s"
    )
    failed = sum("error" in s for s in scenes)
    if failed:
        lines.append(f"{failed} of {len(scenes)} scenes failed")
    return "\n".join(lines)
