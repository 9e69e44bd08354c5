"""`TrainConfig` from YAML plus `--name value` overrides, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rest_hf.training import TrainConfig, parse_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "scripts" / "configs").glob("*.yaml"))


def write(tmp_path: Path, **values) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_yaml_values_are_read_and_overrides_win(tmp_path):
    path = write(
        tmp_path, model="tiny-swin", dataset="data/x", crop_size=256, interaction_stages=[], max_steps=50
    )
    config = parse_train_config([path, "--max_steps", "3", "--grid", "1x2", "--learning_rate", "0.001"])
    assert config.model == "tiny-swin" and config.dataset == "data/x"
    assert config.max_steps == 3 and config.grid_shape == (1, 2) and config.learning_rate == 0.001
    assert config.interaction_stages == [] and config.crop_shape == (256, 256)


def test_list_bool_and_none_overrides(tmp_path):
    path = write(tmp_path, model="tiny-swin", dataset="d")
    config = parse_train_config(
        [path, "--interaction_stages", "1", "3", "--activation_checkpointing", "--crop_size", "none"]
    )
    assert config.interaction_stages == [1, 3]
    assert config.activation_checkpointing is True
    assert config.crop_shape is None
    assert parse_train_config([path, "--crop_size", "64x128"]).crop_shape == (64, 128)
    assert (
        parse_train_config([path, "--interaction-stages", "[]", "--max_steps", "2"]).interaction_stages == []
    )


def test_config_without_yaml_file():
    config = parse_train_config(["--model", "tiny-swin", "--dataset", "d", "--val_split", "none"])
    assert config.val_split is None and config.crop_shape == (512, 512)


def test_unknown_yaml_field_is_refused_with_the_known_fields(tmp_path):
    path = write(tmp_path, model="tiny-swin", dataset="d", learning_rte=0.1)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['learning_rte'\]; known fields: model, "):
        parse_train_config([path])


def test_missing_config_file_is_named():
    with pytest.raises(ValueError, match="config file nowhere.yaml does not exist"):
        parse_train_config(["nowhere.yaml"])


def test_unknown_option_is_refused_with_the_fields(tmp_path):
    path = write(tmp_path, model="tiny-swin", dataset="d")
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) \['--max-stepz', '3'\]; options are --FIELD VALUE"
    ):
        parse_train_config([path, "--max-stepz", "3"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"dataset": "d"}, "give exactly one of model"),
        ({"model": "tiny-swin", "init_from": "runs/a/final", "dataset": "d"}, "give exactly one of model"),
        ({"model": "tiny-swin"}, "dataset is required"),
        ({"model": "tiny-swin", "dataset": "d", "grid": "2by2"}, "not ROWSxCOLS"),
        ({"model": "tiny-swin", "dataset": "d", "crop_size": "big"}, "crop_size must be"),
        ({"model": "tiny-swin", "dataset": "d", "batch_size": 0}, "batch_size must be at least 1"),
        ({"model": "tiny-swin", "dataset": "d", "freeze_stages": -2}, "freeze_stages must be -1"),
        ({"model": "tiny-swin", "dataset": "d", "min_learning_rate": 1.0}, "min_learning_rate"),
    ],
)
def test_invalid_values_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_parses(path):
    config = parse_train_config([str(path)])
    assert config.max_steps >= 1
    if config.init_from:
        assert config.interaction_stages, f"{path.name}: REST fine-tuning needs interaction stages"
