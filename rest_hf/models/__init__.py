"""Single-device REST model code (Hub-portable: relative imports only, no torch.distributed)."""

from .configuration_rest import PRESETS, RestConfig
from .image_processing_rest import RestImageProcessor
from .modeling_rest import RestForSemanticSegmentation, RestPreTrainedModel
from .pipeline_rest import RestImageSegmentationPipeline

__all__ = [
    "PRESETS",
    "RestConfig",
    "RestForSemanticSegmentation",
    "RestImageProcessor",
    "RestImageSegmentationPipeline",
    "RestPreTrainedModel",
]
