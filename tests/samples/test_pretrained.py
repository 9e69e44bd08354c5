"""The trained models shipped in the package: present, small, loadable by name, predicting, and better than the
majority class on their real test split (that part when the sample cache is present)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rest_hf import RestForSemanticSegmentation, RestImageProcessor
from rest_hf.cli import main
from rest_hf.loading import load_config, load_image_processor, load_model
from rest_hf.pretrained import SHIPPED_MODELS, list_shipped_models, shipped_model_path
from rest_hf.samples import SAMPLES, majority_baseline

from .real_cache import real_sample

NAMES = sorted(SHIPPED_MODELS)


def test_every_shipped_model_is_installed():
    assert list_shipped_models() == NAMES
    with pytest.raises(ValueError, match="not a shipped rest_hf model; shipped models: bluemarble"):
        shipped_model_path("tiny-swin")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_is_small_and_documented(name):
    folder = shipped_model_path(name)
    assert (folder / "model.safetensors").stat().st_size <= 8 * 2**20
    card = (folder / "README.md").read_text()
    dataset = SHIPPED_MODELS[name]
    assert f"rest-hf samples fetch {dataset}" in card and "python scripts/train.py scripts/configs/" in card
    assert SAMPLES[dataset].info["licence"] in card and "Test metrics" in card
    assert ("CC BY-SA 3.0" in card) == (dataset == "raleigh-landsat")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_loads_by_name_and_predicts(name):
    model = load_model(name).eval()
    processor = load_image_processor(name, model.config)
    direct = RestForSemanticSegmentation.from_pretrained(shipped_model_path(name)).eval()
    config = load_config(name)
    assert config.id2label == direct.config.id2label and config.num_channels == direct.config.num_channels
    assert isinstance(processor, RestImageProcessor)
    assert processor.image_mean == RestImageProcessor.from_pretrained(shipped_model_path(name)).image_mean
    bands = model.config.num_channels
    scene = np.random.default_rng(0).uniform(0, 255, (70, 90, bands)).astype(np.float32)
    pixel_values = processor(scene)["pixel_values"]
    with torch.inference_mode():
        logits = model(pixel_values=pixel_values).logits
        assert torch.equal(logits, direct(pixel_values=pixel_values).logits)
    assert tuple(logits.shape) == (1, model.config.num_labels, 70, 90)
    labels = processor.post_process_semantic_segmentation(type("O", (), {"logits": logits})())[0]
    assert labels.shape == (70, 90) and int(labels.max()) < model.config.num_labels


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_beats_the_majority_class_on_its_real_test_split(name, tmp_path, capsys):
    root = real_sample(SHIPPED_MODELS[name])
    scenes = sorted((root / "test" / "images").glob("*.tif"))
    predictions = [tmp_path / scene.name for scene in scenes]
    for scene, prediction in zip(scenes, predictions, strict=True):
        assert main(["predict", str(scene), "-o", str(prediction), "--model", name, "--no-progress"]) == 0
    report = tmp_path / "metrics.json"
    command = ["evaluate", *map(str, predictions), "--reference", str(root / "test" / "labels")]
    assert main([*command, "--model", name, "--json", str(report)]) == 0
    capsys.readouterr()
    measured = json.loads(report.read_text())
    floor = majority_baseline(json.loads((root / "dataset_info.json").read_text()))
    assert measured["mean_iou"] > floor["mean_iou"] + 0.01, (measured["mean_iou"], floor)
    shipped = json.loads((shipped_model_path(name) / "test_metrics.json").read_text())
    assert measured["mean_iou"] == pytest.approx(shipped["mean_iou"], abs=1e-3)  # the card's figure
