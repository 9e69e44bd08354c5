"""GLH-Water (Li et al., AAAI 2024): 250 RGB scenes of 12800 x 12800 px at 0.3 m, background / water.

Masks hold 0 (background) and 255 (water); 255 is mapped to 1 as REST's `LoadAnnotations_binary` does. Masks
already converted to 0/1 are accepted too. There is no ignore value inside the masks (255 is water, not ignore).
Folders: `{split}/image|img/*.{png,jpg,tif}` + `{split}/label/*.png` (what REST's configs read: crops under
`train|val|test/image`, whole scenes under `train|val|test/img` as .jpg). *Assumption*: the official release uses
the same split/image/label arrangement (not verifiable offline); any other arrangement works with `folder`.
"""

from __future__ import annotations

from ...models.configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255
from ..info import DatasetInfo, ValueMap
from .base import IGNORE, FolderPattern, Layout

GLH_WATER_CLASSES = ("background", "water")
GLH_WATER_PALETTE = ((0, 0, 0), (255, 255, 255))

GLH_WATER = DatasetInfo(
    name="glh-water",
    id2label=dict(enumerate(GLH_WATER_CLASSES)),
    palette=GLH_WATER_PALETTE,
    ignore_index=IGNORE,
    num_bands=3,
    bands=(1, 2, 3),
    label_mapping=ValueMap({0: 0, 1: 1, 255: 1}, IGNORE),
    image_mean=IMAGENET_MEAN_255,
    image_std=IMAGENET_STD_255,
    title="GLH-Water (global surface water, 0.3 m)",
    url="https://jack-bo1220.github.io/project/GLH-water.html",
)

GLH_WATER_LAYOUT = Layout(
    "glh-water",
    [
        FolderPattern("splits", "{split}/image|img|images", "{split}/label|labels", GLH_WATER),
    ],
)
