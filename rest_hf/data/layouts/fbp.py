"""Five-Billion-Pixels (Tong et al., ISPRS J. 2023): 150 Gaofen-2 scenes of 6800 x 7200 px at 4 m, 24 classes
in the order of REST's `FBPDataset_new`. Two conventions:

- the official release: `Image__8bit_NirRGB/X.tiff` (4 bands N, R, G, B; bands 2, 3, 4 are read, giving RGB)
  or an `Image_RGB/` folder (REST's RGB copy), with `Annotation__index/X_24label.png` where **0 = unlabeled**
  and 1..24 are the classes: 0 -> 255 (ignored), k -> k - 1. Optional `{split}` sub-folders under both (as in
  REST's preprocessing, `ori/Image_RGB/train`). *Assumption* (unverified here, checkpoint layout reference
  section 9): the index masks number the classes 1..24 in the documented order.
- REST's `FBP_new` crops: `{split}/img/*.png` + `{split}/annotation/*.png` with ids 0..23 and **255 ignored**
  (`reduce_zero_label=False`).

The 16-bit `Image_16bit_BGRNir` files need other statistics and band order: use `folder` with a
`dataset_info.json` for them.
"""

from __future__ import annotations

from ...models.configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255
from ..info import DatasetInfo, ValueMap
from .base import IGNORE, FolderPattern, Layout, shifted_labels

FBP_CLASSES = (
    "industrial area", "paddy field", "irrigated field", "dry cropland", "garden land", "arbor forest",
    "shrub forest", "park land", "natural meadow", "artificial meadow", "river", "urban residential", "lake",
    "pond", "fish pond", "snow", "bareland", "rural residential", "stadium", "square", "road", "overpass",
    "railway station", "airport",
)  # fmt: skip
FBP_PALETTE = (
    (200, 0, 0), (0, 200, 0), (150, 250, 0), (150, 200, 150), (200, 0, 200), (150, 0, 250), (150, 150, 250),
    (200, 150, 200), (250, 200, 0), (200, 200, 0), (0, 0, 200), (250, 0, 150), (0, 150, 200), (0, 200, 250),
    (150, 200, 250), (250, 250, 250), (200, 200, 200), (200, 150, 150), (250, 200, 150), (150, 150, 0),
    (250, 150, 150), (250, 150, 0), (250, 200, 250), (200, 150, 0),
)  # fmt: skip

FBP = DatasetInfo(
    name="fbp",
    id2label=dict(enumerate(FBP_CLASSES)),
    palette=FBP_PALETTE,
    ignore_index=IGNORE,
    num_bands=3,
    bands=(1, 2, 3),
    label_mapping=ValueMap.identity(24, IGNORE),
    image_mean=IMAGENET_MEAN_255,
    image_std=IMAGENET_STD_255,
    title="Five-Billion-Pixels (Gaofen-2 land cover, 4 m)",
    url="https://x-ytong.github.io/project/Five-Billion-Pixels.html",
)
# 4-band 8-bit TIFFs are tagged R, G, B, alpha by GDAL by default: the 4th band is data here, never a mask.
FBP_OFFICIAL_NIRRGB = FBP.replace(bands=(2, 3, 4), label_mapping=shifted_labels(24), mask_alpha=False)
FBP_OFFICIAL_RGB = FBP.replace(label_mapping=shifted_labels(24))

FBP_LAYOUT = Layout(
    "fbp",
    [
        FolderPattern("rest-fbp-new", "{split}/img|image", "{split}/annotation|ann", FBP),
        FolderPattern(
            "official-nirrgb-split",
            "Image__8bit_NirRGB/{split}",
            "Annotation__index/{split}",
            FBP_OFFICIAL_NIRRGB,
            "_24label",
        ),
        FolderPattern(
            "official-rgb-split",
            "Image_RGB/{split}",
            "Annotation__index/{split}",
            FBP_OFFICIAL_RGB,
            "_24label",
        ),
        FolderPattern(
            "official-nirrgb", "Image__8bit_NirRGB", "Annotation__index", FBP_OFFICIAL_NIRRGB, "_24label"
        ),
        FolderPattern("official-rgb", "Image_RGB", "Annotation__index", FBP_OFFICIAL_RGB, "_24label"),
    ],
)
