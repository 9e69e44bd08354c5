"""Checkpoint converters: released REST checkpoints (mmseg layout) and transformers UperNet folders -> rest_hf.

Both converters write a `save_pretrained` folder (config.json, model.safetensors, preprocessor_config.json,
README.md) atomically, and refuse rather than guess: every weight of the target model must come from one
source tensor of the right shape, and every source tensor must be used, or the conversion stops with a message
that names the keys and shapes.

Modules: `original_config` (loading an original checkpoint, inferring its `RestConfig`), `original_keys` (its
key mapping and expected counts), `original` (the conversion and its checks), `upernet` (UperNet folders),
`folder` (atomic folder writing, model card), `report` (`ConversionReport`, `ConversionError`).
"""

from ..data.info import DatasetInfo
from .folder import write_model_folder
from .original import convert_original_checkpoint, convert_original_state_dict
from .original_config import DATASETS, load_original_state_dict, original_config, original_kind
from .original_keys import expected_original_key_count, interaction_parameter_count, unfold_to_hf_merge_order
from .report import ConversionError, ConversionReport, describe_architecture
from .upernet import convert_upernet

__all__ = [
    "DATASETS",
    "ConversionError",
    "ConversionReport",
    "DatasetInfo",
    "convert_original_checkpoint",
    "convert_original_state_dict",
    "convert_upernet",
    "describe_architecture",
    "expected_original_key_count",
    "interaction_parameter_count",
    "load_original_state_dict",
    "original_config",
    "original_kind",
    "unfold_to_hf_merge_order",
    "write_model_folder",
]
