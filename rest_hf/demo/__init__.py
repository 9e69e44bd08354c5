"""A web demo of rest_hf models (`rest-hf demo`, and the app of rest_hf Spaces); needs `pip install 'rest_hf[demo]'`.

The page only calls rest_hf's public code: `loading` for models, `inference.ScenePredictor` and
`inference.SceneWriter` for the prediction and the georeferenced GeoTIFFs, `io` for palettes and reads.

    >>> from rest_hf.demo import ModelCatalog, serve
    >>> serve(ModelCatalog(["path/to/model"]), port=7860)   # http://127.0.0.1:7860

Gradio is imported only by `rest_hf.demo.app` (and `serve`), so the rest of this package works without it.
"""

from .models import ModelCatalog, default_model_names
from .scenes import UploadLimits
from .server import serve, serve_space

__all__ = ["ModelCatalog", "UploadLimits", "default_model_names", "serve", "serve_space"]
