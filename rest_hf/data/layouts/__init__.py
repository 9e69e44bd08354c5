"""Dataset layouts: how the four datasets of the REST paper (and a generic one) are arranged on disk.

One module per dataset holds its classes, palette, label conventions and folder patterns, with the facts and
assumptions behind them in its docstring (sources: the dataset papers and official releases, the REST code's
dataset classes and configs (weichenrs/REST_code), `../shared/reference/rest_checkpoint_layout.md` section 9):
`glh_water`, `fbp`, `whu_ohs`, `uavid`, and `folder` (the generic layout: `images/` + `labels/`, or a CSV/Parquet
index, classes from `dataset_info.json`). `base` matches folder patterns and pairs images with labels;
`registry` names the layouts (`LAYOUTS`) and scans them (`scan_layout`, `dataset_info`).
"""

from ...models.configuration_rest import IMAGENET_MEAN_255, IMAGENET_STD_255
from .base import IGNORE, FolderPattern, Layout
from .fbp import FBP, FBP_CLASSES, FBP_OFFICIAL_NIRRGB, FBP_OFFICIAL_RGB, FBP_PALETTE
from .folder import INDEX_NAMES, INFO_NAMES, FolderLayout
from .glh_water import GLH_WATER, GLH_WATER_CLASSES, GLH_WATER_PALETTE
from .registry import LAYOUTS, dataset_info, get_layout, scan_layout
from .uavid import UAVID, UAVID_CLASSES, UAVID_PALETTE
from .whu_ohs import WHU_OHS, WHU_OHS_CLASSES, WHU_OHS_PALETTE, WHU_OHS_REST

__all__ = [
    "FBP",
    "FBP_CLASSES",
    "FBP_OFFICIAL_NIRRGB",
    "FBP_OFFICIAL_RGB",
    "FBP_PALETTE",
    "GLH_WATER",
    "GLH_WATER_CLASSES",
    "GLH_WATER_PALETTE",
    "IGNORE",
    "IMAGENET_MEAN_255",
    "IMAGENET_STD_255",
    "INDEX_NAMES",
    "INFO_NAMES",
    "LAYOUTS",
    "UAVID",
    "UAVID_CLASSES",
    "UAVID_PALETTE",
    "WHU_OHS",
    "WHU_OHS_CLASSES",
    "WHU_OHS_PALETTE",
    "WHU_OHS_REST",
    "FolderLayout",
    "FolderPattern",
    "Layout",
    "dataset_info",
    "get_layout",
    "scan_layout",
]
