"""WHU-OHS (Li et al., JAG 2022): 32-band Orbita hyperspectral, 512 x 512 px patches from 42 scenes, 24 classes.

Official release: `tr|val|ts/image/*.tif` + `tr|val|ts/label/*.tif`; images are reflectance x 10000 (int16),
labels 0 = unlabeled, 1..24 the classes (0 -> 255 ignored, k -> k - 1), as in the authors' `WHU-OHS-Pytorch`
loader. REST's mosaics: `image/{split}` + `label_0/{split}` holding ids 0..23 (255 ignored; *assumption*). There
are no standard statistics: `image_mean`/`image_std` are `None` and come from `compute_band_statistics` over the
training scenes (or are given).
"""

from __future__ import annotations

from ..info import DatasetInfo, ValueMap
from .base import IGNORE, FolderPattern, Layout, shifted_labels

WHU_OHS_CLASSES = (
    "paddy field", "dry farm", "woodland", "shrubbery", "sparse woodland", "other forest land",
    "high-covered grassland", "medium-covered grassland", "low-covered grassland", "river/canal", "lake",
    "reservoir/pond", "beach land", "shoal", "urban built-up", "rural settlement", "other construction land",
    "sand", "gobi", "saline/alkali soil", "marshland", "bare land", "bare rock", "ocean",
)  # fmt: skip
WHU_OHS_PALETTE = (
    (188, 207, 251), (51, 223, 199), (34, 113, 5), (168, 237, 115), (79, 213, 0), (69, 210, 0), (111, 113, 0),
    (166, 164, 0), (255, 242, 3), (113, 174, 251), (0, 91, 228), (5, 37, 113), (121, 139, 244), (0, 168, 132),
    (114, 0, 3), (252, 126, 125), (251, 188, 189), (254, 186, 229), (248, 0, 197), (226, 5, 168), (167, 0, 131),
    (113, 0, 75), (254, 110, 222), (160, 160, 160),
)  # fmt: skip

WHU_OHS = DatasetInfo(
    name="whu-ohs",
    id2label=dict(enumerate(WHU_OHS_CLASSES)),
    palette=WHU_OHS_PALETTE,
    ignore_index=IGNORE,
    num_bands=32,
    label_mapping=shifted_labels(24),
    value_range=10000.0,
    clip_range=False,
    title="WHU-OHS (Orbita 32-band hyperspectral land cover, 10 m)",
    url="http://irsip.whu.edu.cn/resources/WHU_OHS_show.php",
)
WHU_OHS_REST = WHU_OHS.replace(label_mapping=ValueMap.identity(24, IGNORE))

WHU_OHS_LAYOUT = Layout(
    "whu-ohs",
    [
        FolderPattern("official", "{split}/image", "{split}/label", WHU_OHS),
        FolderPattern("rest", "image/{split}", "label_0/{split}", WHU_OHS_REST),
    ],
)
