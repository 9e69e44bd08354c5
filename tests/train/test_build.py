"""The model of a run: presets with the dataset's classes, REST fine-tuning from a baseline, activation
checkpointing."""

from __future__ import annotations

import pytest
import torch

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.data import dataset_info
from rest_hf.training import build_model, init_from_baseline
from rest_hf.training.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def info(tmp_path_factory):
    root = write_synthetic_dataset(tmp_path_factory.mktemp("data"), "shapes", num_train=2, num_val=1, size=64)
    return dataset_info("folder", root, "train")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    torch.manual_seed(0)
    model = RestForSemanticSegmentation(
        RestConfig.from_preset("tiny-swin", num_labels=3, interaction_stages=[])
    )
    folder = tmp_path_factory.mktemp("baseline")
    model.save_pretrained(folder)
    return folder, model


def test_preset_takes_the_classes_palette_and_bands_of_the_dataset(info):
    model = build_model("tiny-swin", info, interaction_stages=[])
    assert model.config.id2label == {0: "background", 1: "red shape", 2: "blue shape"}
    assert model.config.palette == [[40, 40, 40], [220, 60, 60], [60, 90, 220]]
    assert model.config.interaction_stages == [] and len(model.interaction_layers) == 0


def test_init_from_loads_every_baseline_weight_and_adds_interaction_layers(baseline, info):
    folder, base = baseline
    model = build_model(None, info, init_from=str(folder), interaction_stages=[1, 3])
    assert sorted(model.interaction_layers) == ["1", "3"]
    state = model.state_dict()
    for name, tensor in base.state_dict().items():
        assert torch.equal(state[name], tensor), name
    assert all(t.abs().sum() > 0 for k, t in state.items() if k.endswith("in_proj.weight"))


def test_init_from_refuses_weights_the_new_model_does_not_have(tmp_path):
    torch.manual_seed(0)
    rest = RestForSemanticSegmentation(RestConfig.from_preset("tiny-swin", num_labels=3))
    rest.save_pretrained(tmp_path)
    with pytest.raises(
        ValueError, match=r"only interaction_layers.\* may be new.*unexpected \['interaction_layers.1"
    ):
        init_from_baseline(str(tmp_path), [0])


def test_init_from_without_interaction_stages_is_refused(baseline):
    with pytest.raises(ValueError, match="interaction_stages is empty"):
        init_from_baseline(str(baseline[0]), [])


def test_model_with_other_classes_is_refused(baseline, info):
    folder, _ = baseline
    other = dataset_info("folder", None, id2label=["a", "b"], num_bands=3)
    with pytest.raises(ValueError, match="the model has 3 classes but dataset 'folder' has 2"):
        build_model(str(folder), other)
    with pytest.raises(ValueError, match="use init_from"):
        build_model(str(folder), info, interaction_stages=[0])
