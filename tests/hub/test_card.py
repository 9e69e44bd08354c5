"""Model cards: YAML metadata and body, field by field; the Python usage snippet runs without rest_hf."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from rest_hf import RestConfig, RestImageProcessor
from rest_hf.cli import COMMAND_MODULES, main
from rest_hf.hub.card import REST_CITATION, dataset_names, render_model_card, segmentation_eval_results
from rest_hf.hub.models import prepare_for_hub

from .helpers import run_without_rest_hf

WATER = dict(
    num_labels=2,
    id2label={0: "background", 1: "water"},
    label2id={"background": 0, "water": 1},
    palette=[[0, 0, 0], [0, 0, 255]],
)


def _section(text: str, heading: str) -> str:
    """The body of a `## heading` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


@pytest.fixture
def water_card() -> ModelCard:
    config = RestConfig.from_preset("swin-large", decoder_variant="lwc", **WATER)
    results = segmentation_eval_results(
        "GLH-Water",
        91.234,
        {"background": 97.5, "water": 85.0},
        dataset_type="org/glh-water",
        source_name="evaluation log",
        source_url="https://example.org/log",
    )
    card = render_model_card(
        config,
        model_id="org/rest-water",
        base_model="org/rest-base",
        datasets=["org/glh-water"],
        eval_results=results,
        notes="Fine-tuned for tests.",
        license="mit",
        training_dataset="glh-water",
    )
    return ModelCard(str(card))  # what the Hub would parse back


def test_card_metadata_is_what_the_hub_reads(water_card):
    data = water_card.data
    assert data.license == "mit"
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-segmentation"
    assert {"remote-sensing", "semantic-segmentation", "whole-scene", "rest", "swin"} <= set(data.tags)
    assert data.datasets == ["org/glh-water"]
    assert data.base_model == "org/rest-base"
    assert data.metrics == ["mean_iou"]
    results = {(r.metric_type, r.metric_config): r for r in data.eval_results}
    assert results["mean_iou", None].metric_value == 91.23
    assert results["iou", "water"].metric_value == 85.0 and results["iou", "background"].metric_value == 97.5
    first = results["mean_iou", None]
    assert (first.task_type, first.dataset_type, first.dataset_name, first.dataset_split) == (
        "image-segmentation",
        "org/glh-water",
        "GLH-Water",
        "test",
    )
    assert first.source_url == "https://example.org/log"


def test_card_body_describes_classes_input_tiles_usage_and_citation(water_card):
    text = water_card.text
    assert text.startswith("\n# rest-water\n")
    assert "Fine-tuned for tests." in text
    details = _section(text, "Model details")
    assert "stages 0, 1, 2, 3 (0-based), heads 6, 12, 24, 48, placement `side`" in details
    assert "GLH-Water `lwc` head" in details and "| Fine-tuned from | [org/rest-base]" in details

    classes = _section(text, "Classes")
    assert "| id | class | colour | IoU (%) |" in classes
    assert "| 0 | background | `#000000` (RGB 0, 0, 0) | 97.5 |" in classes
    assert "| 1 | water | `#0000ff` (RGB 0, 0, 255) | 85.0 |" in classes

    inputs = _section(text, "Input")
    assert "**Bands**: 3 (RGB)" in inputs and "`(x - mean[c]) / std[c]`" in inputs
    assert "| 0 | 123.675 | 58.395 |" in inputs and "| 2 | 103.53 | 57.375 |" in inputs

    tiles = _section(text, "Whole-scene inference: tiles and grids")
    assert "**Tile alignment: 224 px**" in tiles and "attention window" in tiles
    assert "| `2x2` | 4 | 448 x 448 px |" in tiles and "| `4x4` | 16 | 896 x 896 px |" in tiles

    assert "[GLH-Water](https://jack-bo1220.github.io/project/GLH-water.html)" in _section(
        text, "Training data"
    )
    evaluation = _section(text, "Evaluation")
    assert "| GLH-Water | test | mIoU | 91.23 |" in evaluation and "IoU (water)" not in evaluation
    assert "[evaluation log](https://example.org/log)" in evaluation

    usage = _section(text, "Usage")
    assert 'repo = "org/rest-water"' in usage
    assert "rest-hf predict scene.tif -o labels.tif --model org/rest-water\n" in usage
    assert (
        "torchrun --nproc_per_node 4 -m rest_hf predict scene.tif -o labels.tif --model org/rest-water --grid 2x2"
        in usage
    )

    citation = _section(text, "Citation")
    assert REST_CITATION in citation and "doi={10.1109/TPAMI.2025.3609767}" in citation
    assert "@inproceedings{li2024glhwater" in citation


def test_card_without_results_or_dataset_leaves_those_parts_out():
    config = RestConfig.from_preset("tiny-convnext", num_labels=4, num_channels=32, interaction_stages=[])
    card = ModelCard(str(render_model_card(config)))
    assert card.data.eval_results is None and card.data.license == "apache-2.0"
    assert "model-index" not in card.content and "datasets:" not in card.content
    text = card.text
    assert "## Evaluation" not in text and "## Training data" not in text and "and the dataset:" not in text
    assert "none (plain UperNet baseline)" in text and "global interaction layers" not in text
    assert "| 0 | LABEL_0 | - |" in _section(text, "Classes")
    assert f"**Tile alignment: {config.spatial_alignment} px**" in text and "strided step" in text
    inputs = _section(text, "Input")
    assert "**Bands**: 32," in inputs and "| 31 | 0.0 | 1.0 |" in inputs  # identity statistics for 32 bands
    assert f"smallest side the model accepts is {config.min_input_size} px" in inputs
    assert 'repo = "path/to/model"' in text


def test_card_shows_the_image_processor_normalisation():
    config = RestConfig.from_preset("tiny-swin", num_labels=2)
    processor = RestImageProcessor(do_rescale=True, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.2, 0.25])
    text = render_model_card(config, image_processor=processor).text
    assert f"`(x * {1 / 255} - mean[c]) / std[c]`" in text
    assert "| 2 | 0.3 | 0.25 |" in text


def test_every_dataset_snippet_renders(tmp_path):
    assert dataset_names() == ["fbp", "glh-water", "uavid", "whu-ohs"]
    for name in dataset_names():
        text = render_model_card(RestConfig.from_preset("tiny-swin"), training_dataset=name).text
        assert "## Training data" in text and "and the dataset:" in text
    with pytest.raises(
        ValueError, match="no dataset card snippet for 'potsdam'; known datasets: fbp, glh-water"
    ):
        render_model_card(RestConfig.from_preset("tiny-swin"), training_dataset="potsdam")


def _snippets(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _write_scene(path, bands: int = 3, height: int = 40, width: int = 36) -> None:
    import rasterio
    from affine import Affine

    data = np.random.default_rng(0).integers(0, 255, size=(bands, height, width), dtype=np.uint8)
    profile = dict(driver="GTiff", height=height, width=width, count=bands, dtype="uint8")
    with rasterio.open(
        path, "w", crs="EPSG:32618", transform=Affine(10, 0, 300000, 0, -10, 4400000), **profile
    ) as dst:
        dst.write(data)


def test_python_usage_snippet_runs_without_rest_hf(saved_model, tmp_path):
    hub = prepare_for_hub(saved_model.folder, tmp_path / "hub")
    config = RestConfig.from_pretrained(saved_model.folder)
    card = render_model_card(config, model_id=str(hub))
    (snippet,) = _snippets(card.text, "python")
    _write_scene(tmp_path / "scene.tif")
    result = run_without_rest_hf(snippet, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([40, 36])" in result.stdout


needs_predict = pytest.mark.skipif(
    "predict" not in COMMAND_MODULES, reason="the predict command is not part of this build yet"
)


@needs_predict
def test_command_line_usage_snippets_run_and_agree(saved_model, tmp_path, monkeypatch):
    """`rest-hf predict` in one process, then the card's torchrun line on a 2 x 2 grid: the same labels."""
    import rasterio

    config = RestConfig.from_pretrained(saved_model.folder)
    card = render_model_card(config, model_id=str(saved_model.folder))
    one_process, four_processes = _snippets(card.text, "bash")
    assert one_process.startswith("rest-hf predict") and four_processes.startswith("torchrun")
    _write_scene(
        tmp_path / "scene.tif", height=2 * config.spatial_alignment, width=2 * config.spatial_alignment + 8
    )
    monkeypatch.chdir(tmp_path)
    assert main(one_process.split()[1:]) == 0
    (tmp_path / "labels.tif").rename(tmp_path / "one.tif")

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), *four_processes.split()[1:], "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with rasterio.open(tmp_path / "one.tif") as one, rasterio.open(tmp_path / "labels.tif") as four:
        np.testing.assert_array_equal(one.read(), four.read())
        assert one.crs == four.crs and one.transform == four.transform
