"""Checkpoint converters: original REST (mmseg layout) and transformers UperNet folders -> rest_hf folders.

The original checkpoints are not available offline, so the tests write SYNTHETIC checkpoints with the documented
layout at tiny sizes and compare the converted model with an independent re-implementation of the original
networks (`original_rest_reference.py`), in float64.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import ConvNextConfig, SwinConfig, UperNetConfig, UperNetForSemanticSegmentation
from transformers.models.swin.modeling_swin import SwinPatchMerging, SwinRelativePositionBias

import rest_hf  # noqa: F401  (registers the Auto classes)
from rest_hf import RestConfig, RestForSemanticSegmentation, RestImageProcessor
from rest_hf.conversion import (
    DATASETS,
    ConversionError,
    convert_original_checkpoint,
    convert_upernet,
    expected_original_key_count,
    interaction_parameter_count,
    unfold_to_hf_merge_order,
)

from .original_rest_reference import (
    _patch_merging,
    make_original_state_dict,
    mmseg_relative_position_index,
    original_auxiliary_logits,
    original_logits,
)

HEADS = (1, 2, 2, 4)
WINDOW = 3
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _double(state_dict):
    return {k: v.double() if v.is_floating_point() else v for k, v in state_dict.items()}


def _save(tmp_path, state_dict, name="ckpt.pth", wrap=True):
    path = tmp_path / name
    torch.save({"meta": {"iter": 80000}, "state_dict": state_dict} if wrap else state_dict, path)
    return path


@pytest.fixture(scope="module")
def water_state_dict():
    return make_original_state_dict(rest=True, num_classes=2, seed=1)


@pytest.fixture(scope="module")
def fbp_state_dict():
    return make_original_state_dict(rest=False, num_classes=24, seed=2)


# ------------------------------------------------------------------------------------------ tensor transforms


def test_unfold_permutation_matches_hf_patch_merging():
    """mmseg's Unfold-order PatchMerging and HF's SwinPatchMerging agree once the weights are permuted."""
    torch.manual_seed(0)
    channels, (height, width) = 5, (7, 9)  # odd sizes: both pad at the bottom/right
    sd = {
        "m.norm.weight": 1 + 0.1 * torch.randn(4 * channels, dtype=torch.float64),
        "m.norm.bias": 0.1 * torch.randn(4 * channels, dtype=torch.float64),
        "m.reduction.weight": torch.randn(2 * channels, 4 * channels, dtype=torch.float64),
    }
    tokens = torch.randn(2, height * width, channels, dtype=torch.float64)
    expected, hw = _patch_merging(tokens, (height, width), sd, "m")

    merging = SwinPatchMerging(channels).double()
    with torch.no_grad():
        merging.norm.weight.copy_(unfold_to_hf_merge_order(sd["m.norm.weight"]))
        merging.norm.bias.copy_(unfold_to_hf_merge_order(sd["m.norm.bias"]))
        merging.reduction.weight.copy_(unfold_to_hf_merge_order(sd["m.reduction.weight"]))
        torch.testing.assert_close(merging(tokens, (height, width)), expected, rtol=0, atol=1e-12)
        assert hw == (4, 5)
        # Without the permutation the two differ: the test can see a wrong channel order.
        merging.reduction.weight.copy_(sd["m.reduction.weight"])
        assert (merging(tokens, (height, width)) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("window", [3, 7])
def test_mmseg_relative_position_index_is_the_standard_one(window):
    standard = SwinRelativePositionBias(1, (window, window)).relative_position_index
    assert torch.equal(mmseg_relative_position_index(window).flatten(), standard.flatten())


def test_key_and_parameter_counts_of_the_released_checkpoints():
    water = RestConfig.from_preset("swin-large", decoder_variant="lwc", num_labels=2)
    baseline = RestConfig.from_preset("swin-large", interaction_stages=[], num_labels=24)
    assert expected_original_key_count(water) == 495
    assert expected_original_key_count(baseline) == 439
    assert interaction_parameter_count(192) == 12 * 192**2 + 13 * 192
    assert sum(interaction_parameter_count(c) for c in water.stage_channels) == 37_638_720


# ------------------------------------------------------------------------------------------ original checkpoints


def _check_folder_against_original(folder, state_dict, interaction_heads):
    model = RestForSemanticSegmentation.from_pretrained(folder).eval().double()
    reference = _double(state_dict)
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 97, 83, dtype=torch.float64)  # odd sizes: padding at every stage
    labels = torch.randint(0, model.config.num_labels, (2, 97, 83))
    labels[:, :5] = 255
    with torch.no_grad():
        output = model(pixel_values=pixels, labels=labels)
        expected = original_logits(pixels, reference, HEADS, WINDOW, interaction_heads)
        auxiliary = original_auxiliary_logits(pixels, reference, HEADS, WINDOW, interaction_heads)
    torch.testing.assert_close(output.logits, expected, rtol=0, atol=1e-10)
    ce = torch.nn.functional.cross_entropy
    expected_loss = ce(expected, labels, ignore_index=255) + 0.4 * ce(auxiliary, labels, ignore_index=255)
    torch.testing.assert_close(output.loss, expected_loss, rtol=0, atol=1e-10)
    return model, pixels, expected


def test_rest_water_checkpoint_matches_the_original(tmp_path, water_state_dict):
    checkpoint = _save(tmp_path, water_state_dict, "REST_water_synthetic.pth")
    out = tmp_path / "out"
    report = convert_original_checkpoint(checkpoint, out, dataset="glh-water", interaction_heads=2)
    model, pixels, expected = _check_folder_against_original(out, water_state_dict, 2)

    config = model.config
    assert config.interaction_stages == [0, 1, 2, 3] and config.interaction_num_heads == [2, 2, 2, 2]
    assert config.decoder_variant == "lwc" and config.loss_ignore_index == 255
    assert config.backbone_config.window_size == WINDOW
    assert tuple(config.backbone_config.num_heads) == HEADS
    assert config.id2label == {0: "background", 1: "water"} and config.palette == [[0, 0, 0], [255, 255, 255]]
    # The head count is honoured: the original with one head gives other logits.
    with torch.no_grad():
        one_head = original_logits(pixels, _double(water_state_dict), HEADS, WINDOW, 1)
    assert (one_head - expected).abs().max() > 1e-4

    processor = RestImageProcessor.from_pretrained(out)
    assert processor.image_mean == [123.675, 116.28, 103.53]
    assert processor.image_std == [58.395, 57.12, 57.375] and not processor.do_rescale
    card = (out / "README.md").read_text()
    assert "REST_water_synthetic.pth" in card and "Interaction heads: 2" in card and "does not record" in card
    assert "Dataset: GLH-Water" in card and "| 1 | water |" in card
    lines = "\n".join(report.lines())
    assert "interaction heads: 2" in lines and "does not record" in lines
    assert "backbone.swin.layernorm.weight" in lines and "decode_head.conv_seg.weight" in lines
    assert report.source_tensors == expected_original_key_count(config) == 243


def test_baseline_fbp_checkpoint_matches_the_original(tmp_path, fbp_state_dict):
    checkpoint = _save(tmp_path, fbp_state_dict, "baseline_fbp_synthetic.pth")
    convert_original_checkpoint(checkpoint, tmp_path / "out", dataset="fbp")
    model, _, _ = _check_folder_against_original(tmp_path / "out", fbp_state_dict, None)
    assert model.config.interaction_stages == [] and model.config.decoder_variant == "upernet"
    assert model.config.id2label == DATASETS["fbp"].id2label
    assert model.config.id2label[23] == "airport" and len(model.config.palette) == 24


def test_bare_half_precision_dict_with_module_prefix_is_accepted(tmp_path, fbp_state_dict):
    half = {k: v.half() if v.is_floating_point() else v for k, v in fbp_state_dict.items()}
    checkpoint = _save(tmp_path, {f"module.{k}": v for k, v in half.items()}, wrap=False)
    report = convert_original_checkpoint(checkpoint, tmp_path / "out", dataset="fbp")
    assert "source tensors in torch.float16 were stored as float32" in report.notes
    _check_folder_against_original(tmp_path / "out", half, None)


def test_cli_requires_and_validates_interaction_heads(tmp_path, water_state_dict, fbp_state_dict, capsys):
    main = _script("convert_rest_original").main
    water, fbp = _save(tmp_path, water_state_dict, "w.pth"), _save(tmp_path, fbp_state_dict, "f.pth")
    assert main([str(water), str(tmp_path / "a"), "--dataset", "glh-water"]) == 2
    assert "--interaction-heads" in capsys.readouterr().err
    assert main([str(water), str(tmp_path / "a"), "--dataset", "glh-water", "--interaction-heads", "3"]) == 2
    assert "does not divide the stage widths [8, 16, 32, 64]" in capsys.readouterr().err
    assert main([str(fbp), str(tmp_path / "a"), "--dataset", "fbp", "--interaction-heads", "2"]) == 2
    assert "no interaction layers" in capsys.readouterr().err
    assert main([str(water), str(tmp_path / "a"), "--dataset", "fbp", "--interaction-heads", "2"]) == 2
    assert "has 2 classes but Five-Billion-Pixels" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main([str(water), str(tmp_path / "a"), "--dataset", "glh-water", "--interaction-heads", "4"]) == 0
    out = capsys.readouterr().out
    assert "interaction heads: 4 per layer" in out and f"written: {tmp_path / 'a'}" in out


def _convert_water(tmp_path, state_dict, **kwargs):
    return convert_original_checkpoint(
        _save(tmp_path, state_dict), tmp_path / "out", dataset="glh-water", interaction_heads=2, **kwargs
    )


def test_missing_key_is_refused_with_its_name(tmp_path, water_state_dict):
    broken = dict(water_state_dict)
    del broken["backbone.stages.2.blocks.1.norm2.weight"]
    with pytest.raises(
        ConversionError, match=r"lacks 1 tensors: backbone\.stages\.2\.blocks\.1\.norm2\.weight"
    ):
        _convert_water(tmp_path, broken)
    assert not (tmp_path / "out").exists()


def test_wrong_shape_is_refused_with_the_shapes(tmp_path, water_state_dict):
    broken = dict(water_state_dict)
    broken["backbone.spattns.1.ffn.layers.1.weight"] = torch.zeros(16, 32)
    with pytest.raises(ConversionError) as error:
        _convert_water(tmp_path, broken)
    assert (
        "backbone.spattns.1.ffn.layers.1.weight (16, 32) -> interaction_layers.1.mlp.fc2.weight needs (16, 64)"
        in (str(error.value))
    )
    broken = dict(water_state_dict)
    broken["backbone.stages.0.blocks.0.attn.w_msa.qkv.weight"] = torch.zeros(25, 8)
    with pytest.raises(
        ConversionError, match=r"qkv\.weight \(25, 8\) -> .*q_proj\.weight needs \(8, 8\), got \(9, 8\)"
    ):
        _convert_water(tmp_path, broken)


def test_a_non_standard_relative_position_index_is_refused(tmp_path, water_state_dict):
    broken = dict(water_state_dict)
    broken["backbone.stages.0.blocks.1.attn.w_msa.relative_position_index"] = torch.zeros(
        9, 9, dtype=torch.long
    )
    with pytest.raises(
        ConversionError, match=r"blocks\.1\.attn\.w_msa\.relative_position_index .* not the standard"
    ):
        _convert_water(tmp_path, broken)


def test_unused_source_keys_are_refused_unless_allowed(tmp_path, water_state_dict, capsys):
    extra = dict(water_state_dict)
    extra["backbone.spattns.0.attn.attn.bias_k"] = torch.zeros(1, 1, 8)
    with pytest.raises(
        ConversionError, match=r"1 source tensors would be lost: backbone\.spattns\.0\.attn\.attn\.bias_k"
    ):
        _convert_water(tmp_path, extra)
    assert not (tmp_path / "out").exists()
    main = _script("convert_rest_original").main
    argv = [
        str(_save(tmp_path, extra)),
        str(tmp_path / "out"),
        "--dataset",
        "glh-water",
        "--interaction-heads",
        "2",
    ]
    assert main([*argv, "--allow-unused"]) == 0
    assert "UNUSED source tensors, dropped with --allow-unused: backbone.spattns.0.attn.attn.bias_k" in (
        capsys.readouterr().out
    )


def test_output_is_written_atomically_and_replaced_only_with_overwrite(tmp_path, fbp_state_dict, monkeypatch):
    checkpoint = _save(tmp_path, fbp_state_dict)
    out = tmp_path / "out"
    convert_original_checkpoint(checkpoint, out, dataset="fbp")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json",
    ]  # fmt: skip
    with pytest.raises(ConversionError, match="exists; pass --overwrite"):
        convert_original_checkpoint(checkpoint, out, dataset="fbp")
    before = (out / "model.safetensors").read_bytes()

    # A failure while writing leaves the previous folder as it was and no temporary folder behind.
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(RestImageProcessor, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_original_checkpoint(checkpoint, out, dataset="fbp", overwrite=True)
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "out"]
    with pytest.raises(OSError, match="disk full"):
        convert_original_checkpoint(checkpoint, tmp_path / "new", dataset="fbp")
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()

    convert_original_checkpoint(checkpoint, out, dataset="fbp", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "out"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ConversionError, match="not a model folder"):
        convert_original_checkpoint(checkpoint, tmp_path / "notes", dataset="fbp", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_unreadable_or_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(ConversionError, match="does not exist"):
        convert_original_checkpoint(tmp_path / "nope.pth", tmp_path / "out", dataset="fbp")
    convnext = {"backbone.downsample_layers.0.0.weight": torch.zeros(8, 3, 4, 4)}
    with pytest.raises(ConversionError, match="ConvNeXt checkpoint"):
        convert_original_checkpoint(_save(tmp_path, convnext), tmp_path / "out", dataset="fbp")


# ------------------------------------------------------------------------------------------ UperNet folders


def _tiny_upernet(backbone: str) -> UperNetForSemanticSegmentation:
    stages = ["stage1", "stage2", "stage3", "stage4"]
    if backbone == "swin":
        backbone_config = SwinConfig(
            embed_dim=8, depths=[2, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=3, out_features=stages
        )
    else:
        backbone_config = ConvNextConfig(
            hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 2, 1], out_features=stages
        )
    config = UperNetConfig(
        backbone_config=backbone_config,
        hidden_size=16,
        auxiliary_channels=8,
        num_labels=3,
        id2label={0: "road", 1: "roof", 2: "tree"},
        label2id={"road": 0, "roof": 1, "tree": 2},
    )
    torch.manual_seed(0)
    model = UperNetForSemanticSegmentation(config).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that eval mode matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.normal_(1, 0.1)
                module.bias.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("backbone", ["swin", "convnext"])
def test_upernet_folder_converts_with_equal_logits(tmp_path, backbone):
    upernet = _tiny_upernet(backbone)
    upernet.save_pretrained(tmp_path / "upernet")
    statistics = {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3], "do_rescale": True}
    (tmp_path / "upernet" / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "SegformerImageProcessor", "do_resize": True, **statistics})
    )
    main = _script("convert_upernet").main
    assert main([str(tmp_path / "upernet"), str(tmp_path / "out")]) == 0

    model = RestForSemanticSegmentation.from_pretrained(tmp_path / "out").eval()
    assert model.config.interaction_stages == [] and model.config.id2label == upernet.config.id2label
    upernet_keys = set(upernet.state_dict())
    assert set(model.state_dict()) == upernet_keys
    pixels = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixels).logits, upernet(pixel_values=pixels).logits)
    processor = RestImageProcessor.from_pretrained(tmp_path / "out")
    assert processor.image_mean == statistics["image_mean"] and processor.image_std == statistics["image_std"]
    assert processor.do_rescale and processor.rescale_factor == pytest.approx(1 / 255)
    assert "UperNet" in (tmp_path / "out" / "README.md").read_text()


def test_upernet_without_processor_gets_imagenet_statistics(tmp_path):
    _tiny_upernet("convnext").save_pretrained(tmp_path / "upernet")
    report = convert_upernet(tmp_path / "upernet", tmp_path / "out")
    assert any("no preprocessor_config.json" in note for note in report.notes)
    processor = RestImageProcessor.from_pretrained(tmp_path / "out")
    assert processor.image_mean == [123.675, 116.28, 103.53] and not processor.do_rescale


def _edit_weights(folder: Path, edit) -> None:
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def test_upernet_key_and_shape_mismatches_are_refused(tmp_path):
    upernet = _tiny_upernet("swin")
    for name in ("missing", "shape", "extra"):
        upernet.save_pretrained(tmp_path / name)
    _edit_weights(tmp_path / "missing", lambda w: w.pop("decode_head.classifier.weight"))
    _edit_weights(tmp_path / "shape", lambda w: w.__setitem__("decode_head.classifier.bias", torch.zeros(5)))
    _edit_weights(tmp_path / "extra", lambda w: w.__setitem__("decode_head.extra.weight", torch.zeros(2)))
    with pytest.raises(ConversionError, match=r"lacks 1 tensors: decode_head\.classifier\.weight"):
        convert_upernet(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConversionError, match=r"decode_head\.classifier\.bias \(5,\) -> needs \(3,\)"):
        convert_upernet(tmp_path / "shape", tmp_path / "out")
    with pytest.raises(ConversionError, match=r"would be lost: decode_head\.extra\.weight"):
        convert_upernet(tmp_path / "extra", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    report = convert_upernet(tmp_path / "extra", tmp_path / "out", allow_unused=True)
    assert report.unused == ["decode_head.extra.weight"]
