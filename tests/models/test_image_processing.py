import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor
from transformers.modeling_outputs import SemanticSegmenterOutput

import rest_hf  # noqa: F401  (registers the Auto classes)
from rest_hf import RestConfig, RestImageProcessor


def test_default_statistics_are_imagenet_on_the_0_255_scale():
    processor = RestImageProcessor()
    pixel = np.full((1, 1, 3), [123.675, 116.28, 103.53], dtype=np.float32)
    assert torch.allclose(processor(pixel)["pixel_values"], torch.zeros(1, 3, 1, 1), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("bands", [1, 4, 32])
def test_any_band_count_and_dtype_hwc_or_chw(dtype, bands):
    rng = np.random.default_rng(0)
    mean, std = rng.uniform(0, 50, bands).tolist(), rng.uniform(1, 5, bands).tolist()
    processor = RestImageProcessor(image_mean=mean, image_std=std)
    chw = rng.integers(0, 200, (bands, 5, 7)).astype(dtype)
    expected = (chw.astype(np.float32) - np.array(mean, np.float32)[:, None, None]) / np.array(
        std, np.float32
    )[:, None, None]
    from_chw = processor(chw)["pixel_values"]
    from_hwc = processor(np.moveaxis(chw, 0, -1))["pixel_values"]
    assert from_chw.shape == (1, bands, 5, 7)
    np.testing.assert_allclose(from_chw[0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(from_hwc[0].numpy(), expected, rtol=1e-6)


def test_rescale_and_no_resize():
    processor = RestImageProcessor(
        do_rescale=True, rescale_factor=1 / 10000, image_mean=[0.5] * 4, image_std=[0.25] * 4
    )
    scene = np.full((4, 37, 53), 10000, dtype=np.uint16)
    out = processor(scene)["pixel_values"]
    assert out.shape == (1, 4, 37, 53)
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_band_mismatch_is_refused():
    with pytest.raises(ValueError, match="image has 3 bands .* 4 values"):
        RestImageProcessor(image_mean=[0] * 4, image_std=[1] * 4)(np.zeros((3, 5, 6)))
    with pytest.raises(ValueError, match="image_mean has 2 values but image_std has 3"):
        RestImageProcessor(image_mean=[0, 0], image_std=[1, 1, 1])


def test_save_and_load_through_auto_image_processor(tmp_path):
    processor = RestImageProcessor(
        image_mean=[1.0, 2.0, 3.0, 4.0], image_std=[1.0, 2.0, 3.0, 4.0], do_rescale=True
    )
    processor.save_pretrained(tmp_path)
    RestConfig.from_preset("tiny-swin", num_channels=4).save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, RestImageProcessor)
    assert loaded.image_mean == processor.image_mean and loaded.do_rescale


def test_post_process_semantic_segmentation_with_and_without_target_sizes():
    logits = torch.zeros(2, 3, 4, 4)
    logits[0, 2] = 1.0
    logits[1, 1, :, :2] = 1.0
    outputs = SemanticSegmenterOutput(logits=logits)
    maps = RestImageProcessor().post_process_semantic_segmentation(outputs)
    assert [m.shape for m in maps] == [(4, 4), (4, 4)]
    assert (maps[0] == 2).all() and (maps[1][:, :2] == 1).all() and (maps[1][:, 2:] == 0).all()
    resized = RestImageProcessor().post_process_semantic_segmentation(outputs, target_sizes=[(8, 8), (2, 6)])
    assert resized[0].shape == (8, 8) and resized[1].shape == (2, 6)
    assert (resized[0] == 2).all()
