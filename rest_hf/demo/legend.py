"""The legend and run summary as HTML/Markdown for the page (escaped: class names come from model files)."""

from __future__ import annotations

from html import escape

from .run import Prediction

__all__ = ["format_area", "legend_html", "run_summary"]


def format_area(area_m2: float, total_m2: float) -> str:
    """km2 when the scene covers at least 1 km2, else ha (one unit for the whole legend)."""
    if total_m2 >= 1e6:
        return f"{area_m2 / 1e6:,.3f} km²"
    return f"{area_m2 / 1e4:,.2f} ha"


def legend_html(prediction: Prediction) -> str:
    """A table: colour swatch, class name, share of the valid pixels and, when georeferenced, the area."""
    rows = prediction.legend
    has_area = all(row.area_m2 is not None for row in rows)
    total = sum(row.area_m2 or 0.0 for row in rows)
    head = "<tr><th></th><th>class</th><th>share of valid pixels</th>" + ("<th>area</th>" if has_area else "")
    body = []
    for row in rows:
        swatch = (
            f'<span class="swatch" style="display:inline-block;width:1.2em;height:1.2em;'
            f'background:rgb{row.colour};border:1px solid #444"></span>'
        )
        area = f"<td>{format_area(row.area_m2, total)}</td>" if has_area and row.area_m2 is not None else ""
        body.append(
            f'<tr class="legend-row"><td>{swatch}</td><td>{escape(row.name)}</td>'
            f"<td>{row.share:.1f} %</td>{area}</tr>"
        )
    note = "" if has_area else "<p>No area: the scene has no projected CRS in metres.</p>"
    return f'<table class="legend">{head}</tr>{"".join(body)}</table>{note}'


def run_summary(prediction: Prediction, model: str, mode: str, random_weights: bool) -> str:
    """One Markdown paragraph: scene size, valid pixels, time, peak memory, and what the labels mean."""
    lines = [
        f"**{prediction.width} x {prediction.height} px**, {prediction.valid_pixels:,} valid pixels, "
        f"model `{escape(model)}`, {mode}: **{prediction.seconds:.2f} s**, peak memory "
        f"**{prediction.peak_memory_bytes / 2**20:,.0f} MiB** ({prediction.memory_kind})."
    ]
    if random_weights:
        lines.append("This preset has random weights: the labels show the pipeline, not a trained model.")
    lines.extend(prediction.notes)
    return "  \n".join(escape(line, quote=False) if i else line for i, line in enumerate(lines))
