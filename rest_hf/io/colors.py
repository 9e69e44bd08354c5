"""Class colour palettes and GeoTIFF colour tables."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["default_palette", "resolve_palette", "palette_to_colormap"]

# Kelly's colours of maximum contrast (without white and black), then the PASCAL VOC bit-interleaved map.
_BASE = (
    (243, 195, 0),  # vivid yellow
    (135, 86, 146),  # strong purple
    (243, 132, 0),  # vivid orange
    (161, 202, 241),  # very light blue
    (190, 0, 50),  # vivid red
    (194, 178, 128),  # grayish yellow
    (132, 132, 130),  # medium gray
    (0, 136, 86),  # vivid green
    (230, 143, 172),  # strong purplish pink
    (0, 103, 165),  # strong blue
    (249, 147, 121),  # strong yellowish pink
    (96, 78, 151),  # strong violet
    (246, 166, 0),  # vivid orange yellow
    (179, 68, 108),  # strong purplish red
    (220, 211, 0),  # vivid greenish yellow
    (136, 45, 23),  # strong reddish brown
    (141, 182, 0),  # vivid yellowish green
    (101, 69, 34),  # deep yellowish brown
    (226, 88, 34),  # vivid reddish orange
    (43, 61, 38),  # dark olive green
)


def _voc_colour(index: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour map: a bijection of 0..2^24-1 onto RGB (bits of the index spread over channels)."""
    r = g = b = 0
    shift = 7
    while index and shift >= 0:
        r |= (index & 1) << shift
        g |= ((index >> 1) & 1) << shift
        b |= ((index >> 2) & 1) << shift
        index >>= 3
        shift -= 1
    return (r, g, b)


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """`num_classes` distinct RGB colours, always the same for the same count (and a prefix of longer ones).

    The first 20 are Kelly's high-contrast colours; further classes take PASCAL VOC colours not used yet.
    Black and white are never used (they read as nodata/background in previews).
    """
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    palette = list(_BASE[:num_classes])
    used = set(palette) | {(0, 0, 0), (255, 255, 255)}
    index = 1
    while len(palette) < num_classes:
        colour = _voc_colour(index)
        index += 1
        if colour not in used:
            used.add(colour)
            palette.append(colour)
    return palette


def resolve_palette(palette: Sequence[Sequence[int]] | None, num_classes: int) -> list[tuple[int, int, int]]:
    """Check a configured palette (one RGB triple 0..255 per class) or make the default one."""
    if palette is None:
        return default_palette(num_classes)
    colours = [tuple(int(v) for v in colour) for colour in palette]
    if len(colours) < num_classes:
        raise ValueError(f"palette has {len(colours)} colours but there are {num_classes} classes")
    for i, colour in enumerate(colours[:num_classes]):
        if len(colour) not in (3, 4) or any(v < 0 or v > 255 for v in colour):
            raise ValueError(f"palette entry {i} must be an RGB triple of 0..255 values, got {list(colour)}")
    return [(c[0], c[1], c[2]) for c in colours[:num_classes]]


def palette_to_colormap(
    palette: Sequence[Sequence[int]], nodata: int | None = None
) -> dict[int, tuple[int, int, int, int]]:
    """A rasterio colormap `{value: (r, g, b, a)}`: classes opaque, the nodata value transparent black."""
    colormap = {i: (int(c[0]), int(c[1]), int(c[2]), 255) for i, c in enumerate(palette)}
    if nodata is not None:
        colormap[int(nodata)] = (0, 0, 0, 0)
    return colormap
