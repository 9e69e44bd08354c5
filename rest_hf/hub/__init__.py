"""The Hugging Face Hub: model cards, push and pull of models, scene datasets.

```python
from rest_hf.hub import push_model, pull_model, push_dataset, pull_dataset

push_model("runs/water", "org/rest-water")               # one commit: weights, configs, model code, card
folder = pull_model("org/rest-water", revision="v1")     # through the Hub cache; offline from the cache
push_dataset("data/GLH-Water", "org/glh-water", layout="glh-water")   # resumable; files as they are
root = pull_dataset("org/glh-water", split="val")
```
"""

from .card import render_model_card, segmentation_eval_results
from .datasets import pull_dataset, push_dataset
from .errors import HubError
from .models import prepare_for_hub, pull_model, push_model

__all__ = [
    "HubError",
    "prepare_for_hub",
    "pull_dataset",
    "pull_model",
    "push_dataset",
    "push_model",
    "render_model_card",
    "segmentation_eval_results",
]
