"""`spatial/windows.py` on one process: layers computed on a region equal that region of the whole map's layer,
whatever the window's memory layout, and the cached geometry constants are safe to share. The CUDA cases run
where a GPU is (`scripts/gpu_check.sh`): the indices and weights computed on the host must reach the device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rest_hf.spatial import SpatialContext
from rest_hf.spatial.comm_halo import memory_format_of, start_halo
from rest_hf.spatial.windows import Region, Window, conv_at, interpolation_matrix, resize_at

DT = torch.float64
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (scripts/gpu_check.sh)"),
    ),
]


def _map(*shape: int, channels_last: bool = False, device: str = "cpu") -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=DT).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _window(whole: torch.Tensor, region: Region) -> Window:
    (r0, r1), (c0, c1) = region.rows, region.cols
    return Window(whole[..., r0:r1, c0:c1], region, tuple(whole.shape[2:]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(24, 40), (18, 33)])  # whole factors (2x), and a ratio F.interpolate's own
def test_resize_at_is_the_whole_maps_resize_on_the_region(size, channels_last, device):
    whole = _map(2, 3, 12, 20, channels_last=channels_last, device=device)
    reference = F.interpolate(whole.cpu(), size=size, mode="bilinear", align_corners=False)
    # A window inside the map (a view of it, as the head's are), and regions at and away from the scene's edge.
    window = _window(whole, Region((0, 9), (4, 20)))
    for region in (Region((2, 9), (12, size[1])), Region((0, 4), (10, 20))):
        resized = resize_at(window, size, region)
        assert resized.region == region and resized.tensor.device == whole.device
        (r0, r1), (c0, c1) = region.rows, region.cols
        torch.testing.assert_close(resized.tensor.cpu(), reference[..., r0:r1, c0:c1], rtol=1e-12, atol=1e-12)
    # The copy before F.interpolate keeps the layout that CPUs resize fastest.
    if channels_last and size == (24, 40) and device == "cpu":
        assert memory_format_of(resized.tensor) == torch.channels_last


@pytest.mark.parametrize("device", DEVICES)
def test_conv_at_is_the_whole_maps_convolution_on_the_region(device):
    conv = nn.Conv2d(3, 4, 3, padding=1, dtype=DT)
    whole = _map(1, 3, 10, 12, channels_last=True)
    reference = conv(whole)
    window = _window(whole.to(device), Region((0, 7), (3, 12)))
    region = Region((0, 6), (4, 12))  # the scene's top and right edges: zero padding there only
    computed = conv_at(conv.to(device), window, region, then=torch.relu)
    expected = reference.relu()[..., 0:6, 4:12]
    torch.testing.assert_close(computed.tensor.cpu(), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="stride-1 'same'"):
        conv_at(nn.Conv2d(3, 4, 3, padding=0, dtype=DT), window, region)


def test_memory_format_of_follows_the_channels_stride():
    assert memory_format_of(_map(1, 3, 4, 5, channels_last=True)) == torch.channels_last
    assert memory_format_of(_map(1, 3, 6, 7, channels_last=True)[..., 1:5, 2:6]) == torch.channels_last
    assert memory_format_of(_map(1, 3, 4, 5)) == torch.contiguous_format
    assert memory_format_of(_map(3, 4, 5)) == torch.contiguous_format


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_a_frames_window_keeps_the_tiles_memory_format(channels_last, device):
    x = _map(2, 3, 5, 6, channels_last=channels_last, device=device)
    frame = start_halo(x, SpatialContext.trivial(), 1, 2, 3, 0).wait()
    window = frame.window((0, 8), (0, 9))
    assert torch.equal(window, F.pad(x, (3, 0, 1, 2)))
    assert memory_format_of(window) == memory_format_of(x)
    assert frame.window((1, 6), (3, 9)).data_ptr() == x.data_ptr()  # inside the tile: a view, no copy


@pytest.mark.parametrize("device", DEVICES)
def test_cached_interpolation_weights_are_shared_and_can_be_saved_for_backward(device):
    with torch.inference_mode():
        weights = interpolation_matrix((0, 8), 3, 16, DT, torch.device(device))
    assert interpolation_matrix((0, 8), 3, 16, DT, torch.device(device)) is weights
    assert not weights.is_inference() and weights.device.type == device
    source = torch.randn(3, 2, dtype=DT, device=device, requires_grad=True)
    (weights @ source).sum().backward()  # an inference tensor could not be saved for this backward
    torch.testing.assert_close(source.grad, weights.sum(0)[:, None].expand(3, 2))
    torch.testing.assert_close(weights.sum(1), torch.ones(8, dtype=DT, device=device))
