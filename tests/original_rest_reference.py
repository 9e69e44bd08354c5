"""An independent re-implementation of the ORIGINAL REST / mmseg networks, for converter tests.

It works straight on an mmseg-layout state dict (`backbone.stages.*`, `backbone.spattns.*`,
`decode_head.*`, `auxiliary_head.*`), following `shared/reference/rest_checkpoint_layout.md`, and shares no
code with `rest_hf.models` or transformers: fused Swin `qkv`, the stored `relative_position_index`, shifted
windows with the mmseg slice mask, padding at the bottom/right, PatchMerging through `F.unfold` (channel-major
order), interaction layers with a fused `in_proj` and the extra outer residual, and mmseg's UPerHead or the
GLH-Water checkpoint's UPerHead_lwc, all in eval mode (BatchNorm with running statistics, no dropout).

`make_original_state_dict` writes a random checkpoint with that layout at any size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-5


def _ln(x, sd, key):
    return F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"], sd[f"{key}.bias"], EPS)


def _linear(x, sd, key):
    return F.linear(x, sd[f"{key}.weight"], sd.get(f"{key}.bias"))


# ----------------------------------------------------------------------------------------------- backbone


def mmseg_relative_position_index(window: int) -> torch.Tensor:
    """The index mmseg's WindowMSA registers (its own construction: two strided sequences, flipped)."""
    seq = (
        torch.arange(0, (2 * window - 1) * window, 2 * window - 1)[:, None] + torch.arange(window)
    ).reshape(1, -1)
    return (seq + seq.T).flip(1).contiguous()


def _window_attention(windows, sd, key, heads, mask):
    batch_windows, tokens, channels = windows.shape
    qkv = _linear(windows, sd, f"{key}.qkv").reshape(batch_windows, tokens, 3, heads, channels // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * (channels // heads) ** -0.5) @ k.transpose(-2, -1)
    table, index = sd[f"{key}.relative_position_bias_table"], sd[f"{key}.relative_position_index"]
    attn = attn + table[index.view(-1)].view(tokens, tokens, -1).permute(2, 0, 1)[None]
    if mask is not None:
        nw = mask.shape[0]
        attn = (attn.view(-1, nw, heads, tokens, tokens) + mask[None, :, None]).view(
            -1, heads, tokens, tokens
        )
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(batch_windows, tokens, channels)
    return _linear(out, sd, f"{key}.proj")


def _partition(x, w):
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _shifted_window_msa(x, hw, sd, key, heads, window, shift):
    (h, w), (b, _, c) = hw, x.shape
    x = F.pad(
        x.view(b, h, w, c), (0, 0, 0, (window - w % window) % window, 0, (window - h % window) % window)
    )
    hp, wp = x.shape[1:3]
    mask = None
    if shift:
        x = torch.roll(x, (-shift, -shift), (1, 2))
        img = torch.zeros(1, hp, wp, 1, dtype=x.dtype)
        slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        for n, (hs, ws) in enumerate((hs, ws) for hs in slices for ws in slices):
            img[:, hs, ws] = n
        m = _partition(img, window)[..., 0]
        mask = (m[:, None] - m[:, :, None]).ne(0).to(x.dtype) * -100.0
    out = _window_attention(_partition(x, window), sd, key, heads, mask)
    out = (
        out.view(b, hp // window, wp // window, window, window, c)
        .permute(0, 1, 3, 2, 4, 5)
        .reshape(b, hp, wp, c)
    )
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out[:, :h, :w].reshape(b, h * w, c)


def _patch_merging(x, hw, sd, key):
    (h, w), (b, _, c) = hw, x.shape
    x = F.pad(x.transpose(1, 2).reshape(b, c, h, w), (0, w % 2, 0, h % 2))
    x = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)  # merged channel 4*c + (2*dy + dx)
    return _linear(_ln(x, sd, f"{key}.norm"), sd, f"{key}.reduction"), ((h + 1) // 2, (w + 1) // 2)


def interaction_layer(x, sd, key, heads):
    """MYTransformerEncoderLayer (pre-norm, global attention, no positional terms); returns X2, not x + X2."""
    b, n, c = x.shape
    q, k, v = F.linear(
        _ln(x, sd, f"{key}.ln1"), sd[f"{key}.attn.attn.in_proj_weight"], sd[f"{key}.attn.attn.in_proj_bias"]
    ).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, heads, c // heads).transpose(1, 2) for t in (q, k, v))
    attn = ((q @ k.transpose(-2, -1)) / math.sqrt(c // heads)).softmax(-1) @ v
    x1 = x + _linear(attn.transpose(1, 2).reshape(b, n, c), sd, f"{key}.attn.attn.out_proj")
    hidden = F.gelu(_linear(_ln(x1, sd, f"{key}.ln2"), sd, f"{key}.ffn.layers.0.0"))
    return x1 + _linear(hidden, sd, f"{key}.ffn.layers.1")


def swin_backbone(img, sd, num_heads, window, interaction_heads=None):
    """SwinTransformer (or SwinTransformer_sp_layer when `backbone.spattns.*` exist) -> 4 NCHW maps."""
    weight = sd["backbone.patch_embed.projection.weight"]
    patch = weight.shape[-1]
    h, w = img.shape[-2:]
    img = F.pad(img, (0, (patch - w % patch) % patch, 0, (patch - h % patch) % patch))
    x = F.conv2d(img, weight, sd["backbone.patch_embed.projection.bias"], stride=patch)
    hw = tuple(x.shape[-2:])
    x = _ln(x.flatten(2).transpose(1, 2), sd, "backbone.patch_embed.norm")
    outs = []
    for s, heads in enumerate(num_heads):
        block = 0
        while f"backbone.stages.{s}.blocks.{block}.norm1.weight" in sd:
            key = f"backbone.stages.{s}.blocks.{block}"
            shift = window // 2 if block % 2 else 0
            x = x + _shifted_window_msa(
                _ln(x, sd, f"{key}.norm1"), hw, sd, f"{key}.attn.w_msa", heads, window, shift
            )
            x = x + _linear(
                F.gelu(_linear(_ln(x, sd, f"{key}.norm2"), sd, f"{key}.ffn.layers.0.0")),
                sd,
                f"{key}.ffn.layers.1",
            )
            block += 1
        out = x
        if f"backbone.spattns.{s}.ln1.weight" in sd:
            out = out + interaction_layer(out, sd, f"backbone.spattns.{s}", interaction_heads)
        outs.append(_ln(out, sd, f"backbone.norm{s}").transpose(1, 2).reshape(x.shape[0], -1, *hw))
        if f"backbone.stages.{s}.downsample.reduction.weight" in sd:
            x, hw = _patch_merging(x, hw, sd, f"backbone.stages.{s}.downsample")  # the pre-interaction tokens
    return outs


# ----------------------------------------------------------------------------------------------- heads


def _resize(x, size):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _conv_bn_relu(x, sd, conv_key, bn_key):
    weight = sd[conv_key]
    x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    x = F.batch_norm(
        x,
        sd[f"{bn_key}.running_mean"],
        sd[f"{bn_key}.running_var"],
        sd[f"{bn_key}.weight"],
        sd[f"{bn_key}.bias"],
        training=False,
        eps=EPS,
    )
    return F.relu(x)


def _cm(x, sd, key):  # mmcv ConvModule: conv (no bias) -> bn -> relu
    return _conv_bn_relu(x, sd, f"{key}.conv.weight", f"{key}.bn")


def uper_head(feats, sd, pool_scales, key="decode_head"):
    """mmseg UPerHead in eval mode (Dropout2d before conv_seg is the identity)."""
    top = feats[-1]
    psp = [
        _resize(_cm(F.adaptive_avg_pool2d(top, s), sd, f"{key}.psp_modules.{j}.1"), top.shape[2:])
        for j, s in enumerate(pool_scales)
    ]
    laterals = [_cm(f, sd, f"{key}.lateral_convs.{i}") for i, f in enumerate(feats[:-1])]
    laterals.append(_cm(torch.cat([top, *psp], 1), sd, f"{key}.bottleneck"))
    for i in range(len(laterals) - 1, 0, -1):
        laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
    outs = [_cm(laterals[i], sd, f"{key}.fpn_convs.{i}") for i in range(len(laterals) - 1)] + [laterals[-1]]
    outs = [outs[0]] + [_resize(o, outs[0].shape[2:]) for o in outs[1:]]
    return F.conv2d(
        _cm(torch.cat(outs, 1), sd, f"{key}.fpn_bottleneck"),
        sd[f"{key}.conv_seg.weight"],
        sd[f"{key}.conv_seg.bias"],
    )


def uper_head_lwc(feats, sd, pool_scales, key="decode_head"):
    """UPerHead_lwc.forward: upsample-then-conv PPM, object_head, logits resized to the last stage's size."""
    conv5 = feats[-1]
    ppm = [conv5] + [
        _conv_bn_relu(
            _resize(F.adaptive_avg_pool2d(conv5, s), conv5.shape[2:]),
            sd,
            f"{key}.ppm_conv.{j}.0.weight",
            f"{key}.ppm_conv.{j}.1",
        )
        for j, s in enumerate(pool_scales)
    ]
    f = _conv_bn_relu(torch.cat(ppm, 1), sd, f"{key}.ppm_last_conv.0.weight", f"{key}.ppm_last_conv.1")
    fpn = [f]
    for i in reversed(range(len(feats) - 1)):
        lateral = _conv_bn_relu(feats[i], sd, f"{key}.fpn_in.{i}.0.weight", f"{key}.fpn_in.{i}.1")
        f = lateral + _resize(f, lateral.shape[2:])
        fpn.append(_conv_bn_relu(f, sd, f"{key}.fpn_out.{i}.0.0.weight", f"{key}.fpn_out.{i}.0.1"))
    fpn.reverse()
    fused = torch.cat([fpn[0]] + [_resize(p, fpn[0].shape[2:]) for p in fpn[1:]], 1)
    x = _conv_bn_relu(fused, sd, f"{key}.conv_fusion.0.weight", f"{key}.conv_fusion.1")
    x = _conv_bn_relu(x, sd, f"{key}.object_head.0.0.weight", f"{key}.object_head.0.1")
    out = F.conv2d(x, sd[f"{key}.object_head.1.weight"], sd[f"{key}.object_head.1.bias"])
    return _resize(out, conv5.shape[2:])


def fcn_head(feats, sd, in_index=2, key="auxiliary_head"):
    x = _cm(feats[in_index], sd, f"{key}.convs.0")
    return F.conv2d(x, sd[f"{key}.conv_seg.weight"], sd[f"{key}.conv_seg.bias"])


def original_logits(img, sd, num_heads, window, interaction_heads=None, pool_scales=(1, 2, 3, 6)):
    """Whole-image eval logits of the original segmentor, resized to the input size like mmseg's predict."""
    feats = swin_backbone(img, sd, num_heads, window, interaction_heads)
    head = uper_head_lwc if "decode_head.ppm_conv.0.0.weight" in sd else uper_head
    return _resize(head(feats, sd, pool_scales), img.shape[2:])


def original_auxiliary_logits(img, sd, num_heads, window, interaction_heads=None):
    return _resize(fcn_head(swin_backbone(img, sd, num_heads, window, interaction_heads), sd), img.shape[2:])


# ----------------------------------------------------------------------------------------------- checkpoints


def make_original_state_dict(
    *,
    rest: bool,
    num_classes: int,
    embed_dim: int = 8,
    depths=(2, 1, 2, 1),
    num_heads=(1, 2, 2, 4),
    window: int = 3,
    patch: int = 4,
    in_channels: int = 3,
    channels: int = 16,
    aux_channels: int = 8,
    pool_scales=(1, 2, 3, 6),
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A random checkpoint in the layout of `REST_water_swin_large.pth` (rest=True: spattns + UPerHead_lwc)
    or `baseline_fbp_swin_large.pth` (rest=False: UPerHead), FCNHead on stage 2 in both."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def rand(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    def norm(key, c):
        sd[f"{key}.weight"], sd[f"{key}.bias"] = 1 + rand(c, scale=0.1), rand(c, scale=0.1)

    def linear(key, cout, cin, bias=True):
        sd[f"{key}.weight"] = rand(cout, cin, scale=cin**-0.5)
        if bias:
            sd[f"{key}.bias"] = rand(cout, scale=0.1)

    def bn(key, c):
        norm(key, c)
        sd[f"{key}.running_mean"] = rand(c, scale=0.1)
        sd[f"{key}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{key}.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)

    def conv(key, cout, cin, k):
        sd[key] = rand(cout, cin, k, k, scale=(cin * k * k) ** -0.5)

    widths = [embed_dim * 2**s for s in range(len(depths))]
    conv("backbone.patch_embed.projection.weight", embed_dim, in_channels, patch)
    sd["backbone.patch_embed.projection.bias"] = rand(embed_dim, scale=0.1)
    norm("backbone.patch_embed.norm", embed_dim)
    for s, (depth, heads, c) in enumerate(zip(depths, num_heads, widths, strict=True)):
        for b in range(depth):
            key = f"backbone.stages.{s}.blocks.{b}"
            norm(f"{key}.norm1", c)
            sd[f"{key}.attn.w_msa.relative_position_bias_table"] = rand(
                (2 * window - 1) ** 2, heads, scale=0.5
            )
            sd[f"{key}.attn.w_msa.relative_position_index"] = mmseg_relative_position_index(window)
            linear(f"{key}.attn.w_msa.qkv", 3 * c, c)
            linear(f"{key}.attn.w_msa.proj", c, c)
            norm(f"{key}.norm2", c)
            linear(f"{key}.ffn.layers.0.0", 4 * c, c)
            linear(f"{key}.ffn.layers.1", c, 4 * c)
        if s < len(depths) - 1:
            norm(f"backbone.stages.{s}.downsample.norm", 4 * c)
            linear(f"backbone.stages.{s}.downsample.reduction", 2 * c, 4 * c, bias=False)
    for s, c in enumerate(widths):
        norm(f"backbone.norm{s}", c)
        if rest:
            key = f"backbone.spattns.{s}"
            norm(f"{key}.ln1", c)
            # nn.MultiheadAttention's parameter names: in_proj_weight / in_proj_bias, rows [q; k; v].
            sd[f"{key}.attn.attn.in_proj_weight"] = rand(3 * c, c, scale=c**-0.5)
            sd[f"{key}.attn.attn.in_proj_bias"] = rand(3 * c, scale=0.1)
            linear(f"{key}.attn.attn.out_proj", c, c)
            norm(f"{key}.ln2", c)
            linear(f"{key}.ffn.layers.0.0", 4 * c, c)
            linear(f"{key}.ffn.layers.1", c, 4 * c)

    top, k = widths[-1], num_classes
    if rest:  # UPerHead_lwc: plain nn.Sequential indices
        for j in range(len(pool_scales)):
            conv(f"decode_head.ppm_conv.{j}.0.weight", channels, top, 1)
            bn(f"decode_head.ppm_conv.{j}.1", channels)
        conv("decode_head.ppm_last_conv.0.weight", channels, top + len(pool_scales) * channels, 3)
        bn("decode_head.ppm_last_conv.1", channels)
        for i, c in enumerate(widths[:-1]):
            conv(f"decode_head.fpn_in.{i}.0.weight", channels, c, 1)
            bn(f"decode_head.fpn_in.{i}.1", channels)
            conv(f"decode_head.fpn_out.{i}.0.0.weight", channels, channels, 3)
            bn(f"decode_head.fpn_out.{i}.0.1", channels)
        conv("decode_head.conv_fusion.0.weight", channels, len(widths) * channels, 3)
        bn("decode_head.conv_fusion.1", channels)
        conv("decode_head.object_head.0.0.weight", channels, channels, 3)
        bn("decode_head.object_head.0.1", channels)
        linear("decode_head.object_head.1", k, channels)
        sd["decode_head.object_head.1.weight"] = sd["decode_head.object_head.1.weight"][..., None, None]
    else:  # mmseg UPerHead: mmcv ConvModules (conv + bn)
        for j in range(len(pool_scales)):
            conv(f"decode_head.psp_modules.{j}.1.conv.weight", channels, top, 1)
            bn(f"decode_head.psp_modules.{j}.1.bn", channels)
        conv("decode_head.bottleneck.conv.weight", channels, top + len(pool_scales) * channels, 3)
        bn("decode_head.bottleneck.bn", channels)
        for i, c in enumerate(widths[:-1]):
            conv(f"decode_head.lateral_convs.{i}.conv.weight", channels, c, 1)
            bn(f"decode_head.lateral_convs.{i}.bn", channels)
            conv(f"decode_head.fpn_convs.{i}.conv.weight", channels, channels, 3)
            bn(f"decode_head.fpn_convs.{i}.bn", channels)
        conv("decode_head.fpn_bottleneck.conv.weight", channels, len(widths) * channels, 3)
        bn("decode_head.fpn_bottleneck.bn", channels)
    # BaseDecodeHead.conv_seg: used by UPerHead, present but unused in UPerHead_lwc.
    linear("decode_head.conv_seg", k, channels)
    sd["decode_head.conv_seg.weight"] = sd["decode_head.conv_seg.weight"][..., None, None]
    conv("auxiliary_head.convs.0.conv.weight", aux_channels, widths[2], 3)
    bn("auxiliary_head.convs.0.bn", aux_channels)
    linear("auxiliary_head.conv_seg", k, aux_channels)
    sd["auxiliary_head.conv_seg.weight"] = sd["auxiliary_head.conv_seg.weight"][..., None, None]
    return sd
