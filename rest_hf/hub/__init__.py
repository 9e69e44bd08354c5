"""The Hugging Face Hub: model cards, push and pull of models, scene datasets."""

from .card import render_model_card, segmentation_eval_results

__all__ = ["render_model_card", "segmentation_eval_results"]
