"""Whole-scene datasets: scene records, dataset layouts, up-front validation, tile-wise reading, sampling.

```python
from rest_hf.data import (AugmentConfig, SceneSampler, WholeSceneDataset, collate_samples, dataset_info,
                          resolve_dataset_root, scan_layout, validate_records)

root = resolve_dataset_root("path/or/org-name")            # a folder, or a Hub dataset id
records = scan_layout(root, "glh-water", "train")           # list[SceneRecord]
info = dataset_info("glh-water", root)                      # classes, palette, ignore index, bands, label mapping
validate_records(records, info)                             # ValueError naming every bad file, before training
dataset = WholeSceneDataset(records, info, processor, ctx, crop_size=2048, augment=AugmentConfig(),
                            tile_rule=model.config)             # tiles the model accepts
sampler = SceneSampler(dataset, ctx, seed=0)                # same scenes in a spatial group, different across dp
loader = DataLoader(dataset, batch_size=1, sampler=sampler, collate_fn=collate_samples)
```
"""

from .dataset import WholeSceneDataset, collate_samples
from .geometry import AugmentConfig, SampleGeometry
from .hub import resolve_dataset_root
from .info import ColourMap, ColourOrValueMap, DatasetInfo, LabelMapping, ValueMap
from .layouts import (
    FBP,
    GLH_WATER,
    LAYOUTS,
    UAVID,
    WHU_OHS,
    FolderLayout,
    Layout,
    dataset_info,
    get_layout,
    scan_layout,
)
from .records import SceneRecord
from .sampler import SampleKey, SceneSampler
from .stats import compute_band_statistics
from .validate import validate_records

__all__ = [
    "FBP",
    "GLH_WATER",
    "LAYOUTS",
    "UAVID",
    "WHU_OHS",
    "AugmentConfig",
    "ColourMap",
    "ColourOrValueMap",
    "DatasetInfo",
    "FolderLayout",
    "LabelMapping",
    "Layout",
    "SampleGeometry",
    "SampleKey",
    "SceneRecord",
    "SceneSampler",
    "ValueMap",
    "WholeSceneDataset",
    "collate_samples",
    "compute_band_statistics",
    "dataset_info",
    "get_layout",
    "resolve_dataset_root",
    "scan_layout",
    "validate_records",
]
