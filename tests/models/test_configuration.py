import pytest
from transformers import AutoConfig, ConvNextConfig, ConvNextV2Config, SwinConfig

from rest_hf import PRESETS, RestConfig


def test_default_config_is_swin_with_four_interaction_stages():
    config = RestConfig()
    assert config.backbone_config.model_type == "swin"
    assert config.interaction_stages == [0, 1, 2, 3]
    assert config.interaction_placement == "side"
    assert config.backbone_config.out_features == ["stage1", "stage2", "stage3", "stage4"]
    # UperNet's defaults keep transformers' names and values.
    assert (config.hidden_size, config.pool_scales, config.auxiliary_loss_weight) == (512, [1, 2, 3, 6], 0.4)
    assert config.loss_ignore_index == 255


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips_through_json(name, tmp_path):
    config = RestConfig.from_preset(name, num_labels=24)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, RestConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.num_labels == 24


def test_spatial_alignment_follows_the_backbone_geometry():
    assert RestConfig.from_preset("swin-large").spatial_alignment == 4 * 7 * 8 == 224
    assert RestConfig.from_preset("convnext-large").spatial_alignment == 32
    assert RestConfig.from_preset("tiny-swin").spatial_alignment == 4 * 2 * 8
    swin12 = SwinConfig(window_size=12, patch_size=4)
    assert RestConfig(backbone_config=swin12).spatial_alignment == 384


def test_num_channels_is_passed_to_the_backbone():
    config = RestConfig.from_preset("tiny-convnext", num_channels=32)
    assert config.backbone_config.num_channels == 32


def test_convnext_defaults_to_stream_placement_and_v2_is_accepted():
    assert RestConfig(backbone_config=ConvNextConfig()).interaction_placement == "stream"
    config = RestConfig(backbone_config=ConvNextV2Config(hidden_sizes=[32, 64, 128, 256]))
    assert config.interaction_num_heads == [1, 2, 4, 8]


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'swin-huge'.*swin-large"):
        RestConfig.from_preset("swin-huge")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interaction_stages": [4]}, "interaction_stages"),
        ({"interaction_num_heads": [3, 2, 4, 4]}, r"interaction_num_heads\[0\]=3 must divide the 8 channels"),
        ({"interaction_num_heads": [1, 2]}, "one entry per backbone stage"),
        ({"interaction_placement": "top"}, "interaction_placement"),
        ({"decoder_variant": "fpn"}, "decoder_variant"),
        ({"palette": [[0, 0, 0]]}, "one RGB triple per class"),
    ],
)
def test_invalid_fields_are_refused_with_the_rule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RestConfig.from_preset("tiny-swin", **kwargs)


def test_absolute_position_embeddings_are_refused():
    with pytest.raises(ValueError, match="use_absolute_embeddings"):
        RestConfig(backbone_config=SwinConfig(use_absolute_embeddings=True))
