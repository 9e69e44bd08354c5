"""rest_hf: whole-scene remote-sensing segmentation (REST) as a Hugging Face model package.

The public API:

    from rest_hf import RestConfig, RestForSemanticSegmentation, RestImageProcessor
    from rest_hf.spatial import SpatialContext, parallelize_spatial
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

from .models import (
    PRESETS,
    RestConfig,
    RestForSemanticSegmentation,
    RestImageProcessor,
    RestImageSegmentationPipeline,
    RestPreTrainedModel,
)

__version__ = "0.1.0"

AutoConfig.register("rest", RestConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(RestConfig, RestForSemanticSegmentation, exist_ok=True)
AutoImageProcessor.register(RestConfig, slow_image_processor_class=RestImageProcessor, exist_ok=True)
# The image-segmentation pipeline checks the model against the names of transformers' own segmentation models
# (not against the registrations above) and logs an error for any other: list REST there too. Only names whose
# model type transformers' configs know are ever loaded from that table, so this adds nothing else.
MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES.setdefault("rest", "RestForSemanticSegmentation")

__all__ = [
    "PRESETS",
    "RestConfig",
    "RestForSemanticSegmentation",
    "RestImageProcessor",
    "RestImageSegmentationPipeline",
    "RestPreTrainedModel",
    "__version__",
]
