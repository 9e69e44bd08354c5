"""The output contract of a transformers segmentation model: hidden states, attentions, keywords, tuples."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file
from transformers import UperNetConfig, UperNetForSemanticSegmentation

from rest_hf import RestForSemanticSegmentation
from rest_hf.models.modeling_rest import RestGlobalAttention, RestSemanticSegmenterOutput
from tests.models.tiny import BACKBONES, NUM_LABELS, VARIANT_IDS, VARIANTS, backbone_config, tiny_rest

# Not a multiple of the total stride: Swin pads, ConvNeXt floors, at every stage.
PIXELS = torch.randn(2, 3, 72, 100, generator=torch.Generator().manual_seed(0))


def upernet_twin(name: str, attn_implementation: str | None = None):
    """A random UperNet and the REST model without interaction layers that holds its weights."""
    config = UperNetConfig(
        backbone_config=backbone_config(name), hidden_size=16, auxiliary_channels=8, num_labels=NUM_LABELS
    )
    torch.manual_seed(0)
    upernet = UperNetForSemanticSegmentation(config)
    with torch.no_grad():
        for parameter in upernet.parameters():
            parameter.normal_(0.0, 0.2)
    rest = tiny_rest(name, [])
    rest.load_state_dict(upernet.state_dict(), strict=True)
    if attn_implementation:
        upernet.set_attn_implementation(attn_implementation)
        rest.set_attn_implementation(attn_implementation)
    return upernet.eval(), rest.eval()


@pytest.mark.parametrize("name", BACKBONES)
def test_hidden_states_and_attentions_equal_upernets_index_by_index(name):
    upernet, rest = upernet_twin(name, attn_implementation="eager")
    with torch.no_grad():
        expected = upernet(PIXELS, output_hidden_states=True, output_attentions=True)
        actual = rest(PIXELS, output_hidden_states=True, output_attentions=True)
    # The embedding output, then one per stage.
    assert len(actual.hidden_states) == len(expected.hidden_states) == 5
    for index, (ours, theirs) in enumerate(zip(actual.hidden_states, expected.hidden_states, strict=True)):
        assert ours.shape == theirs.shape, f"hidden_states[{index}]"
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=f"hidden_states[{index}]")
    if name == "swin":
        # The last block of each stage, as UperNet's Swin returns them.
        assert len(actual.attentions) == len(expected.attentions) == 4
        for index, (ours, theirs) in enumerate(zip(actual.attentions, expected.attentions, strict=True)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=f"attentions[{index}]")
    else:
        assert actual.attentions is None and expected.attentions is None
    assert actual.interaction_attentions is None  # no interaction layers
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES)
def test_tuple_output_has_upernets_layout(name):
    upernet, rest = upernet_twin(name)
    labels = torch.randint(0, NUM_LABELS, (2, *PIXELS.shape[2:]))
    with torch.no_grad():
        expected = upernet(PIXELS, labels=labels, output_hidden_states=True, return_dict=False)
        actual = rest(PIXELS, labels=labels, output_hidden_states=True, return_dict=False)
    assert isinstance(actual, tuple) and len(actual) == len(expected) == 3  # loss, logits, hidden states
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-5, atol=1e-6)
    assert len(actual[2]) == len(expected[2])


@pytest.mark.parametrize(("name", "stages"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("selection", [[0, -1], [2], 3, [1, 7]])
def test_hidden_states_selected_by_index_are_none_elsewhere(name, stages, selection):
    model = tiny_rest(name, stages).eval()
    with torch.no_grad():
        everything = model(PIXELS, output_hidden_states=True).hidden_states
        selected = model(PIXELS, output_hidden_states=selection).hidden_states
    # Negative indices count from the end; out of range ones (7) select nothing.
    wanted = {i % 5 for i in (selection if isinstance(selection, list) else [selection]) if -5 <= i < 5}
    assert len(selected) == 5
    for index, state in enumerate(selected):
        if index in wanted:
            assert torch.equal(state, everything[index]), f"hidden_states[{index}]"
        else:
            assert state is None, f"hidden_states[{index}] was not asked for"


@pytest.mark.parametrize(("name", "stages"), VARIANTS, ids=VARIANT_IDS)
def test_no_hidden_states_or_attentions_unless_asked(name, stages):
    model = tiny_rest(name, stages).eval()
    with torch.no_grad():
        for hidden in (None, False, []):
            output = model(PIXELS, output_hidden_states=hidden)
            assert output.hidden_states is None and output.attentions is None
            assert output.interaction_attentions is None
    model.config.output_hidden_states = True
    with torch.no_grad():
        assert len(model(PIXELS).hidden_states) == 5


@pytest.mark.parametrize(("name", "stages"), VARIANTS, ids=VARIANT_IDS)
def test_output_attentions_returns_the_interaction_layers_weights(name, stages):
    model = tiny_rest(name, stages).eval()
    model.set_attn_implementation("eager")  # Swin's window attention returns weights only in eager mode
    with torch.no_grad():
        plain = model(PIXELS)
        output = model(PIXELS, output_attentions=True, output_hidden_states=True)
    assert isinstance(output, RestSemanticSegmenterOutput)
    # Asking for weights changes nothing else.
    assert torch.equal(output.logits, plain.logits)
    if name == "swin":
        assert len(output.attentions) == 4
        window = model.config.backbone_config.window_size
        for stage, weights in enumerate(output.attentions):
            assert weights.shape[1:] == (model.config.backbone_config.num_heads[stage], window**2, window**2)
    else:
        assert output.attentions is None  # ConvNeXt has no attention
    if not stages:
        assert output.interaction_attentions is None
        return
    assert len(output.interaction_attentions) == 4
    for stage, weights in enumerate(output.interaction_attentions):
        if stage not in stages:
            assert weights is None
            continue
        feature_map = output.hidden_states[stage + 1]
        tokens = feature_map.shape[2] * feature_map.shape[3]
        heads = model.config.interaction_num_heads[stage]
        # Every token of the scene attends to every token of the scene.
        assert weights.shape == (2, heads, tokens, tokens)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, heads, tokens))


def test_interaction_weights_are_computed_only_on_request(monkeypatch):
    calls = []
    original = RestGlobalAttention.attention_weights

    def counting(self, query, key):
        calls.append(query.shape)
        return original(self, query, key)

    monkeypatch.setattr(RestGlobalAttention, "attention_weights", counting)
    model = tiny_rest("convnext", [0, 2]).eval()
    with torch.no_grad():
        model(PIXELS)
        assert calls == []
        model(PIXELS, output_attentions=True)
    assert len(calls) == 2


def test_config_output_attentions_is_the_default():
    model = tiny_rest("swin", [1]).eval()
    model.config.output_attentions = True
    with torch.no_grad():
        assert model(PIXELS).interaction_attentions[1] is not None
        assert model(PIXELS, output_attentions=False).interaction_attentions is None


@pytest.mark.parametrize("name", BACKBONES)
def test_forward_takes_transformers_keyword_arguments(name):
    model = tiny_rest(name, [1]).eval()
    with torch.no_grad():
        plain = model(PIXELS).logits
        # Keywords transformers passes to every model (here ignored by the computation).
        same = model(
            pixel_values=PIXELS, output_attentions=False, output_hidden_states=False, return_dict=True
        ).logits
        assert torch.equal(same, plain)
        assert torch.equal(model(PIXELS, return_dict=False)[0], plain)


def test_base_model_is_the_backbone_and_a_backbone_checkpoint_loads_into_it(tmp_path):
    model = tiny_rest("swin", [0])
    assert model.base_model is model.backbone
    model.save_pretrained(tmp_path)
    # Replace the weights by the backbone's alone, named as the backbone names them (no "backbone." prefix).
    backbone_only = {k: v.contiguous() for k, v in model.backbone.state_dict().items()}
    save_file(backbone_only, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded, info = RestForSemanticSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["unexpected_keys"] and not any(k.startswith("backbone.") for k in info["missing_keys"])
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[name], tensor), name
