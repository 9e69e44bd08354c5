"""UAVid (Lyu et al., ISPRS J. 2020): 4K oblique UAV video frames, 8 classes.

Official release: `uavid_{train,val,test}/seqN/Images/*.png` + `.../seqN/Labels/*.png` (colour-coded RGB masks;
the test split has no labels); UAVidToolKit renames the splits `train/valid/test`. Colours are the toolkit's
(`UAVidColorTransformer`); class ids follow REST's `UAVIDDataset` order (background clutter, building, road, tree,
low vegetation, moving car, static car, human), not the toolkit's id order. REST's copies (`{split}/img` +
`{split}/mask`, e.g. `trainval`) may hold colour masks or ids 0..7: both are accepted. Unknown colours are
reported by the validation (and would be ignored).
"""

from __future__ import annotations

from ...models.configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255
from ..info import ColourMap, ColourOrValueMap, DatasetInfo, ValueMap
from .base import IGNORE, FolderPattern, Layout

UAVID_CLASSES = (
    "background clutter", "building", "road", "tree", "low vegetation", "moving car", "static car", "human",
)  # fmt: skip
UAVID_PALETTE = (
    (0, 0, 0), (128, 0, 0), (128, 64, 128), (0, 128, 0), (128, 128, 0), (64, 0, 128), (192, 0, 192), (64, 64, 0),
)  # fmt: skip

UAVID = DatasetInfo(
    name="uavid",
    id2label=dict(enumerate(UAVID_CLASSES)),
    palette=UAVID_PALETTE,
    ignore_index=IGNORE,
    num_bands=3,
    bands=(1, 2, 3),
    label_mapping=ColourOrValueMap(ColourMap(UAVID_PALETTE, IGNORE), ValueMap.identity(8, IGNORE)),
    image_mean=IMAGENET_MEAN_255,
    image_std=IMAGENET_STD_255,
    title="UAVid (oblique UAV video frames, 4K)",
    url="https://uavid.nl/",
)

UAVID_LAYOUT = Layout(
    "uavid",
    [
        FolderPattern("official", "uavid_{split}/{seq}/Images", "uavid_{split}/{seq}/Labels", UAVID),
        FolderPattern("toolkit", "{split}/{seq}/Images", "{split}/{seq}/Labels", UAVID),
        FolderPattern("rest", "{split}/img", "{split}/mask", UAVID),
    ],
)
