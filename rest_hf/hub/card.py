"""Model cards for rest_hf models, rendered from `model_cards/rest_model_card.md` through `huggingface_hub.ModelCard`.

The YAML metadata says `library_name: transformers`, not `rest_hf`: pushed models carry their own model code
(`auto_map` + the three `*_rest.py` files), so `transformers` alone loads them with `trust_remote_code=True`,
the Hub's "Use this model" button then shows a snippet that works, and downloads are counted through
`config.json`. rest_hf is not a library the Hub knows, so naming it would give neither; it is a tag instead.

Everything the card says comes from the config (architecture, classes, palette, alignment), the image processor
(bands, normalisation) and what the caller knows (datasets, evaluation results, notes). Facts about the four
datasets of the REST paper live in `model_cards/datasets/<name>.yaml`, shared with the dataset cards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..models import RestConfig, RestImageProcessor

MODEL_CARDS_DIR = Path(__file__).resolve().parents[2] / "model_cards"
DATASET_INFO_DIR = MODEL_CARDS_DIR / "datasets"

REST_CITATION = """@article{chen2025rest,
  title={REST: Holistic Learning for End-to-End Semantic Segmentation of Whole-Scene Remote Sensing Imagery},
  author={Chen, Wei and Bruzzone, Lorenzo and Dang, Bo and Gao, Yuan and Deng, Youming and Yu, Jin-Gang and Yuan, Liangqi and Li, Yansheng},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year={2025},
  doi={10.1109/TPAMI.2025.3609767}
}"""

CARD_TAGS = ("remote-sensing", "semantic-segmentation", "whole-scene", "rest", "rest_hf", "upernet")
# The model id in the usage snippets of a card rendered without one; `push_model` puts the repository id there.
PLACEHOLDER_MODEL_ID = "path/to/model"
# Grids shown on the card: (rows, cols).
EXAMPLE_GRIDS = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4))
# `EvalResult.metric_type` values the card understands: mIoU and per-class IoU (metric_config = class name).
MEAN_IOU, CLASS_IOU = "mean_iou", "iou"
_BACKBONE_NAMES = {"swin": "Swin Transformer", "convnext": "ConvNeXt", "convnextv2": "ConvNeXt V2"}


def space_link(space_id: str) -> str:
    """The card's paragraph that links to a Space serving the model (for cards written before the Space)."""
    return (
        f"**Try it in the browser:** the [{space_id} Space](https://huggingface.co/spaces/{space_id}) segments an\n"
        "uploaded scene with this model and returns the georeferenced label GeoTIFF."
    )


def template_path(name: str) -> Path:
    """Path of a template in `model_cards/`, with an error that says how to get it when it is missing."""
    path = MODEL_CARDS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"card template {path} is missing; rest_hf reads its templates from the model_cards/ folder of "
            "its source tree: install it from a checkout (pip install -e .)"
        )
    return path


def dataset_names() -> list[str]:
    """Names of the datasets with a card snippet in `model_cards/datasets/` (glh-water, fbp, whu-ohs, uavid)."""
    return sorted(path.stem for path in DATASET_INFO_DIR.glob("*.yaml"))


def dataset_facts(name: str) -> dict[str, Any]:
    """Facts about one dataset of the REST paper: pretty_name, homepage, license, bands, description, citation."""
    path = DATASET_INFO_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"no dataset card snippet for {name!r}; known datasets: {', '.join(dataset_names())}"
        )
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def segmentation_eval_results(
    dataset_name: str,
    mean_iou: float,
    per_class_iou: dict[str, float] | None = None,
    *,
    dataset_type: str | None = None,
    split: str = "test",
    source_name: str | None = None,
    source_url: str | None = None,
) -> list[EvalResult]:
    """`EvalResult` entries for a card: the mIoU and, when known, the IoU of each class, in percent (0-100).

    Args:
        dataset_name: Human-readable dataset name, e.g. "Five-Billion-Pixels (FBP)".
        mean_iou: Mean IoU over the classes, in percent.
        per_class_iou: Class name -> IoU in percent (names as in `config.id2label`).
        dataset_type: Hub dataset id or short name; defaults to `dataset_name`.
        split: Evaluated split.
        source_name, source_url: Where the numbers come from (a paper, a README, an evaluation log).
    """
    common = dict(
        task_type="image-segmentation",
        task_name="Semantic Segmentation",
        dataset_type=dataset_type or dataset_name,
        dataset_name=dataset_name,
        dataset_split=split,
        source_name=source_name,
        source_url=source_url,
    )
    results = [
        EvalResult(metric_type=MEAN_IOU, metric_name="mIoU", metric_value=round(float(mean_iou), 2), **common)
    ]
    for name, value in (per_class_iou or {}).items():
        results.append(
            EvalResult(
                metric_type=CLASS_IOU,
                metric_name=f"IoU ({name})",
                metric_config=name,
                metric_value=round(float(value), 2),
                **common,
            )
        )
    return results


def default_image_processor(config: RestConfig) -> RestImageProcessor:
    """ImageNet statistics (0-255 scale) for RGB models; identity statistics for other band counts."""
    if config.num_channels == 3:
        return RestImageProcessor()
    return RestImageProcessor(image_mean=[0.0] * config.num_channels, image_std=[1.0] * config.num_channels)


def class_rows(
    id2label: Mapping[int, str],
    palette: Sequence[Sequence[int]] | None,
    iou: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """One row per class for the card tables: id, name, RGB colour and its hex code, IoU when known."""
    rows = []
    for index in range(len(id2label)):
        name = id2label[index]
        colour = list(palette[index]) if palette else None
        rows.append(
            dict(
                id=index,
                name=name,
                rgb=colour,
                hex="#{:02x}{:02x}{:02x}".format(*colour) if colour else None,
                iou=(iou or {}).get(name),
            )
        )
    return rows


def _grids(config: RestConfig) -> list[dict[str, Any]]:
    """Scene sizes that surely run on each example grid: one aligned tile per row and column at least."""
    alignment, smallest = config.spatial_alignment, config.min_input_size
    return [
        dict(
            rows=rows,
            cols=cols,
            processes=rows * cols,
            height=max(smallest, alignment * rows if rows > 1 else smallest),
            width=max(smallest, alignment * cols if cols > 1 else smallest),
        )
        for rows, cols in EXAMPLE_GRIDS
    ]


def _evaluation(eval_results: Sequence[EvalResult]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, sources = [], []
    for result in eval_results:
        if result.metric_type == CLASS_IOU:
            continue
        rows.append(
            dict(
                dataset=result.dataset_name,
                split=result.dataset_split or "-",
                metric=result.metric_name or result.metric_type,
                value=result.metric_value,
            )
        )
    for result in eval_results:
        source = dict(name=result.source_name, url=result.source_url)
        if (source["name"] or source["url"]) and source not in sources:
            sources.append(source)
    return rows, sources


def render_model_card(
    config: RestConfig,
    *,
    model_id: str | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    notes: str | None = None,
    image_processor: RestImageProcessor | None = None,
    license: str = "apache-2.0",
    training_dataset: str | None = None,
    space_id: str | None = None,
) -> ModelCard:
    """Render the model card of a rest_hf model.

    Args:
        config: The model's configuration (classes, palette, backbone, alignment).
        model_id: Hub id (`org/name`) used in the title and the usage snippets; `PLACEHOLDER_MODEL_ID` if unknown
            (`push_model` replaces it with the repository id).
        base_model: Hub id of the model this one was fine-tuned from.
        datasets: Hub dataset ids for the YAML `datasets:` field.
        eval_results: `EvalResult` entries (see `segmentation_eval_results`); per-class IoU entries
            (`metric_type="iou"`, `metric_config=<class name>`) fill the class table.
        notes: Markdown paragraph placed after the summary (provenance, caveats).
        image_processor: Gives the bands' normalisation; defaults to `default_image_processor(config)`.
        license: SPDX-style license id of the weights.
        training_dataset: Name of a dataset snippet (`dataset_names()`) whose description and citation the card
            includes.
        space_id: Hub id of a Space serving the model (`rest-hf push --space`); the card links to it.
    """
    eval_results = list(eval_results or [])
    image_processor = image_processor or default_image_processor(config)
    training = dataset_facts(training_dataset) if training_dataset else None
    backbone_type = config.backbone_config.model_type
    title = model_id.split("/")[-1] if model_id else f"REST {_BACKBONE_NAMES[backbone_type]}"
    tags = [*CARD_TAGS, backbone_type]
    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="image-segmentation",
        tags=tags,
        datasets=list(datasets) if datasets else None,
        base_model=base_model,
        metrics=["mean_iou"] if eval_results else None,
        model_name=title if eval_results else None,  # the name of the model-index entry
        eval_results=eval_results or None,
    )
    class_iou = {r.metric_config: r.metric_value for r in eval_results if r.metric_type == CLASS_IOU}
    classes = class_rows(config.id2label, config.palette, class_iou)
    class_preview = ", ".join(c["name"] for c in classes[:6]) + (", ..." if len(classes) > 6 else "")
    summary = (
        f"A REST model for whole-scene semantic segmentation of remote-sensing imagery: "
        f"{_BACKBONE_NAMES[backbone_type]} backbone, {config.num_channels} input bands, "
        f"{config.num_labels} classes ({class_preview})"
        + (f", trained on {training['pretty_name']}." if training else ".")
    )
    training_data = None
    if training:
        training_data = f"[{training['pretty_name']}]({training['homepage']}): {training['description']}" + (
            f" License: {training['license_note']}." if training.get("license_note") else ""
        )
    evaluation, evaluation_sources = _evaluation(eval_results)
    image_mean, image_std = image_processor.image_mean, image_processor.image_std
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("rest_model_card.md")),
        title=title,
        summary=summary,
        notes=notes,
        model_id=model_id or PLACEHOLDER_MODEL_ID,
        backbone_name=_BACKBONE_NAMES[backbone_type],
        decoder_name="UperNet" if config.decoder_variant == "upernet" else "UperNet (GLH-Water `lwc` head)",
        use_auxiliary_head=config.use_auxiliary_head,
        stage_channels=config.stage_channels,
        interaction_stages=config.interaction_stages,
        interaction_heads=[config.interaction_num_heads[s] for s in config.interaction_stages],
        interaction_placement=config.interaction_placement,
        num_labels=config.num_labels,
        num_channels=config.num_channels,
        ignore_index=config.loss_ignore_index,
        classes=classes,
        has_class_iou=any(c["iou"] is not None for c in classes),
        do_rescale=image_processor.do_rescale,
        rescale_factor=image_processor.rescale_factor,
        do_normalize=image_processor.do_normalize,
        bands=[
            dict(index=i, mean=round(m, 4), std=round(s, 4))
            for i, (m, s) in enumerate(zip(image_mean, image_std, strict=True))
        ],
        min_input_size=config.min_input_size,
        alignment=config.spatial_alignment,
        is_swin=backbone_type == "swin",
        grids=_grids(config),
        training_data=training_data,
        evaluation=evaluation,
        evaluation_sources=evaluation_sources,
        citation=REST_CITATION,
        dataset_citation=training["citation"] if training else None,
        space_id=space_id,
    )


__all__ = [
    "CARD_TAGS",
    "PLACEHOLDER_MODEL_ID",
    "REST_CITATION",
    "class_rows",
    "dataset_facts",
    "dataset_names",
    "default_image_processor",
    "render_model_card",
    "segmentation_eval_results",
    "space_link",
    "template_path",
]
