"""rest_hf: whole-scene remote-sensing segmentation (REST) as a Hugging Face model package.

The public API:

    from rest_hf import RestConfig, RestForSemanticSegmentation, RestImageProcessor
    from rest_hf.spatial import SpatialContext, parallelize_spatial
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

from .models import PRESETS, RestConfig, RestForSemanticSegmentation, RestImageProcessor, RestPreTrainedModel

__version__ = "0.1.0"

AutoConfig.register("rest", RestConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(RestConfig, RestForSemanticSegmentation, exist_ok=True)
AutoImageProcessor.register(RestConfig, slow_image_processor_class=RestImageProcessor, exist_ok=True)

__all__ = [
    "PRESETS",
    "RestConfig",
    "RestForSemanticSegmentation",
    "RestImageProcessor",
    "RestPreTrainedModel",
    "__version__",
]
