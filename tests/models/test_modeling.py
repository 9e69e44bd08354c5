import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoModelForSemanticSegmentation,
    ConvNextConfig,
    SwinConfig,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.models.modeling_rest import RestInteractionLayer

STAGES = ["stage1", "stage2", "stage3", "stage4"]
BACKBONES = ["tiny-swin", "tiny-convnext"]


def tiny_model(preset: str, **overrides) -> RestForSemanticSegmentation:
    torch.manual_seed(0)
    model = RestForSemanticSegmentation(RestConfig.from_preset(preset, num_labels=3, **overrides)).eval()
    # Random (not zero-initialised) weights everywhere, so comparisons see every parameter.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model


@pytest.mark.parametrize("preset", BACKBONES)
@pytest.mark.parametrize("bands", [1, 3, 4, 32])
def test_logits_have_the_input_resolution_for_any_band_count(preset, bands):
    model = tiny_model(preset, num_channels=bands)
    with torch.no_grad():
        logits = model(torch.randn(2, bands, 64, 96)).logits
    assert logits.shape == (2, 3, 64, 96)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("preset", BACKBONES)
@pytest.mark.parametrize("size", [(37, 53), (65, 33), (101, 99)])
def test_odd_scene_sizes_behave_as_the_backbone_does(preset, size):
    model = tiny_model(preset)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, *size)).logits
    assert logits.shape == (1, 3, *size)


@pytest.mark.parametrize("preset", BACKBONES)
def test_loss_is_mean_cross_entropy_over_valid_pixels_plus_weighted_auxiliary(preset):
    model = tiny_model(preset)
    pixels = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 3, (2, 64, 64))
    labels[0, :10] = 255
    out = model(pixels, labels=labels)

    encode = model._encode_swin if preset == "tiny-swin" else model._encode_convnext
    features = encode(pixels, output_hidden_states=False, output_attentions=False).features
    aux_logits = F.interpolate(
        model.auxiliary_head(features), size=(64, 64), mode="bilinear", align_corners=False
    )
    expected = F.cross_entropy(out.logits, labels, ignore_index=255) + 0.4 * F.cross_entropy(
        aux_logits, labels, ignore_index=255
    )
    torch.testing.assert_close(out.loss, expected)


def test_loss_without_auxiliary_head_and_all_pixels_ignored_is_zero():
    model = tiny_model("tiny-swin", use_auxiliary_head=False)
    assert model.auxiliary_head is None
    labels = torch.full((1, 32, 32), 255)
    assert model(torch.randn(1, 3, 32, 32), labels=labels).loss.item() == 0.0


@pytest.mark.parametrize("preset", BACKBONES)
def test_save_pretrained_round_trip_through_safetensors_and_auto_classes(preset, tmp_path):
    model = tiny_model(preset)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, RestForSemanticSegmentation)
    # Bit-equal logits need aligned weights: oneDNN picks other kernels for misaligned memory.
    assert all(tensor.data_ptr() % 64 == 0 for tensor in [*loaded.parameters(), *loaded.buffers()])
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(pixels).logits, loaded(pixels).logits)


def test_from_pretrained_with_loading_info_still_aligns_the_weights(tmp_path):
    tiny_model("tiny-swin").save_pretrained(tmp_path)
    loaded, info = RestForSemanticSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    assert all(tensor.data_ptr() % 64 == 0 for tensor in loaded.parameters())


def _upernet_and_rest(backbone_config):
    upernet_config = UperNetConfig(
        backbone_config=backbone_config, hidden_size=16, auxiliary_channels=8, num_labels=4
    )
    torch.manual_seed(0)
    upernet = UperNetForSemanticSegmentation(upernet_config).eval()
    with torch.no_grad():
        for parameter in upernet.parameters():
            parameter.normal_(0.0, 0.2)
    rest = RestForSemanticSegmentation(
        RestConfig(
            backbone_config=backbone_config.to_dict(),
            hidden_size=16,
            auxiliary_channels=8,
            num_labels=4,
            interaction_stages=[],
        )
    ).eval()
    return upernet, rest


@pytest.mark.parametrize(
    "backbone_config",
    [
        SwinConfig(
            embed_dim=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=3, out_features=STAGES
        ),
        ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 2, 1], out_features=STAGES),
    ],
    ids=["swin", "convnext"],
)
def test_upernet_state_dict_loads_strictly_and_gives_the_same_logits(backbone_config):
    upernet, rest = _upernet_and_rest(backbone_config)
    rest.load_state_dict(upernet.state_dict(), strict=True)
    pixels = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        expected, actual = upernet(pixels).logits, rest(pixels).logits
    assert (expected - actual).abs().max().item() <= 1e-5


def test_interaction_layer_equals_multihead_attention_with_the_outer_residual():
    torch.manual_seed(0)
    layer = RestInteractionLayer(16, num_heads=4, mlp_ratio=4.0, drop_path=0.0, eps=1e-5).double().eval()
    mha = nn.MultiheadAttention(16, 4, batch_first=True).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(0.0, 0.3)
        # The fused projection has nn.MultiheadAttention's layout: the converter is a renaming.
        mha.in_proj_weight.copy_(layer.attention.in_proj.weight)
        mha.in_proj_bias.copy_(layer.attention.in_proj.bias)
        mha.out_proj.weight.copy_(layer.attention.out_proj.weight)
        mha.out_proj.bias.copy_(layer.attention.out_proj.bias)
    feature_map = torch.randn(2, 16, 5, 10, dtype=torch.float64)
    tokens = feature_map.flatten(2).transpose(1, 2)  # the 50 positions are the tokens
    normed = layer.layernorm_before(tokens)
    attended, mha_weights = mha(normed, normed, normed, need_weights=True, average_attn_weights=False)
    attended = tokens + attended
    inner = attended + layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.layernorm_after(attended))))
    output, weights = layer(feature_map, output_attentions=True)
    torch.testing.assert_close(output.flatten(2).transpose(1, 2), tokens + inner)
    torch.testing.assert_close(weights, mha_weights)
    assert layer(feature_map)[1] is None


def test_interaction_attention_spans_every_token_of_the_scene():
    pixels = torch.randn(1, 3, 128, 128)
    changed = pixels.clone()
    changed[..., :8, :8] += 5.0  # touch only the top-left corner
    far_corner = []
    for stages in ([0], []):
        model = tiny_model("tiny-swin", interaction_stages=stages)
        with torch.no_grad():
            # hidden_states[0] is the embedding output, [1] the first stage's output.
            before = model(pixels, output_hidden_states=True).hidden_states[1]
            after = model(changed, output_hidden_states=True).hidden_states[1]
        far_corner.append((before - after)[..., -4:, -4:].abs().max().item())
    # Stage 1 of Swin sees only its shifted windows: the far corner is out of reach without global attention.
    assert far_corner[1] == 0.0
    assert far_corner[0] > 1e-6


@pytest.mark.parametrize("preset", BACKBONES)
def test_side_and_stream_placements_differ_only_in_what_deeper_stages_see(preset):
    side = tiny_model(preset, interaction_placement="side")
    stream = tiny_model(preset, interaction_placement="stream")
    stream.load_state_dict(side.state_dict())
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        side_out = side(pixels, output_hidden_states=True).hidden_states
        stream_out = stream(pixels, output_hidden_states=True).hidden_states
    torch.testing.assert_close(side_out[1], stream_out[1])
    assert not torch.allclose(side_out[2], stream_out[2])


def test_lwc_decoder_variant_adds_the_object_head_and_runs():
    model = tiny_model("tiny-swin", decoder_variant="lwc")
    assert "decode_head.object_head.conv.weight" in model.state_dict()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 3, 64, 64)


def test_tuple_output_when_return_dict_is_false():
    model = tiny_model("tiny-swin")
    loss, logits = model(
        torch.randn(2, 3, 32, 32), labels=torch.zeros(2, 32, 32, dtype=torch.long), return_dict=False
    )
    assert loss.ndim == 0 and logits.shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("pixels", "labels", "message"),
    [
        (torch.randn(1, 4, 32, 32), None, "has 4 bands but the model expects 3"),
        (torch.randn(3, 32, 32), None, "must be a 4-D tensor"),
        (torch.randn(1, 3, 32, 32), torch.zeros(1, 16, 32, dtype=torch.long), r"labels must have shape"),
        (torch.randn(1, 3, 32, 32), torch.zeros(1, 32, 32), "integer tensor"),
    ],
)
def test_bad_input_gives_a_value_error_naming_the_problem(pixels, labels, message):
    model = tiny_model("tiny-swin")
    with pytest.raises(ValueError, match=message):
        model(pixels, labels=labels)


def test_convnext_refuses_scenes_below_its_total_stride():
    with pytest.raises(ValueError, match="smaller than the model's minimum 32x32 px"):
        tiny_model("tiny-convnext")(torch.randn(1, 3, 20, 64))
