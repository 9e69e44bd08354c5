"""normalize / normalize_with_processor: per-band statistics, invalid pixels zeroed, processor parity."""

from __future__ import annotations

import numpy as np
import pytest

from rest_hf.io import normalize, normalize_with_processor


def test_per_band_formula(rng):
    array = rng.integers(0, 256, (3, 5, 6)).astype(np.uint8)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    out = normalize(array, mean, std, 1 / 255)
    assert out.dtype == np.float32 and out.shape == (3, 5, 6)
    expected = (array.astype(np.float64) / 255 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # no rescale
    out = normalize(array, [100.0] * 3, [50.0] * 3)
    np.testing.assert_allclose(out, (array.astype(np.float64) - 100) / 50, rtol=1e-6)
    # the input is not modified, and a 2-D array is one band
    assert normalize(array[0], [0.0], [1.0]).shape == (1, 5, 6)


def test_nan_nodata_and_mask_become_zero():
    array = np.array([[[1.0, np.nan, 3.0], [-9999.0, 5.0, np.inf]]], np.float32)
    out = normalize(array, [2.0], [2.0], nodata=-9999.0)
    np.testing.assert_array_equal(out, [[[-0.5, 0.0, 0.5], [0.0, 1.5, 0.0]]])
    assert np.isfinite(out).all()
    # without nodata, -9999 is a value like any other
    assert normalize(array, [2.0], [2.0])[0, 1, 0] == pytest.approx(-5000.5)
    # valid_mask zeroes every band of the pixel
    two = np.stack([array[0], array[0] + 1])
    valid = np.array([[True, True, False], [True, True, True]])
    out = normalize(two, [0.0, 0.0], [1.0, 1.0], valid_mask=valid)
    assert (out[:, 0, 2] == 0).all() and out[1, 0, 0] == 2.0
    # per-band nodata; a pixel invalid in one band is zeroed in all bands
    ints = np.array([[[0, 1]], [[1, 0]]], np.uint16)
    out = normalize(ints, [0.5, 0.5], [1.0, 1.0], nodata=[0, None])
    np.testing.assert_array_equal(out, [[[0.0, 0.5]], [[0.0, -0.5]]])
    nan_in_one_band = np.array([[[np.nan, 1.0]], [[1.0, 1.0]]], np.float32)
    np.testing.assert_array_equal(normalize(nan_in_one_band, [0.0, 0.0], [1.0, 1.0]), [[[0, 1]], [[0, 1]]])


def test_bad_statistics():
    array = np.zeros((4, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="4 bands but mean has 3"):
        normalize(array, [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="positive"):
        normalize(array, [0] * 4, [1, 0, 1, 1])
    with pytest.raises(ValueError, match="valid_mask"):
        normalize(array, [0] * 4, [1] * 4, valid_mask=np.ones((3, 3), bool))


@pytest.mark.parametrize(
    "do_rescale,do_normalize", [(True, True), (False, True), (True, False), (False, False)]
)
def test_matches_rest_image_processor(rng, do_rescale, do_normalize):
    from rest_hf import RestImageProcessor

    processor = RestImageProcessor(
        do_rescale=do_rescale,
        rescale_factor=1 / 10000,
        do_normalize=do_normalize,
        image_mean=[0.1, 0.2, 0.3, 0.4],
        image_std=[0.05, 0.1, 0.15, 0.2],
    )
    array = rng.integers(0, 10000, (4, 9, 11)).astype(np.uint16)
    ours = normalize_with_processor(array, processor)
    theirs = processor.normalize_array(array)
    np.testing.assert_array_equal(ours, theirs)  # same float32 arithmetic: bit-identical
    via_preprocess = processor(array, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(ours, via_preprocess, rtol=1e-6, atol=1e-6)


def test_processor_like_object():
    class Stats:
        do_rescale = True
        rescale_factor = 0.5
        do_normalize = True
        image_mean = [1.0]
        image_std = [2.0]

    out = normalize_with_processor(np.array([[[2.0, 6.0, np.nan]]]), Stats())
    np.testing.assert_array_equal(out, [[[0.0, 1.0, 0.0]]])
