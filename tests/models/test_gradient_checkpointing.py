"""`gradient_checkpointing_enable()`: same loss and gradients, and the blocks really are recomputed in backward.

Also on a split scene (2 gloo processes): recomputed blocks repeat their halo exchanges, distributed rolls and
all-to-alls in the same order on every process, so the step stays exact.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import pytest
import torch
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.swin.modeling_swin import SwinStage

from rest_hf.spatial import SpatialContext, parallelize_spatial, reduce_spatial_gradients
from tests.models.tiny import NUM_LABELS, VARIANT_IDS, VARIANTS, tiny_rest
from tests.multiprocess import run_in_processes


def enable_checkpointing(model, enable: bool = True) -> None:
    with warnings.catch_warnings():
        # transformers 5.24 calls these deprecated aliases of activation_checkpointing_{enable,disable}.
        warnings.simplefilter("ignore", FutureWarning)
        if enable:
            model.gradient_checkpointing_enable()
        else:
            model.gradient_checkpointing_disable()


def stochastic_model(name: str, stages: list[int]):
    """Stochastic depth on in the backbone and the interaction layers: recomputation must redraw the same masks."""
    return tiny_rest(
        name, stages, backbone_overrides={"drop_path_rate": 0.2}, interaction_drop_path_rate=0.2
    ).train()


def first_submodule_calls(model) -> Counter:
    """Counts the calls of the first sub-layer of every backbone block and interaction layer.

    Recomputation calls a checkpointed layer's `forward` directly (its own hooks stay outside the checkpoint), so
    the hooks sit one level down, where every call shows, the recomputed ones included.
    """
    counts: Counter = Counter()
    for name, module in model.named_modules():
        # transformers' SwinStage is checkpointable too, but REST runs the Swin blocks itself.
        if isinstance(module, GradientCheckpointingLayer) and not isinstance(module, SwinStage):
            first = module.attention if hasattr(module, "attention") else module.dwconv
            first.register_forward_hook(lambda *_, key=name: counts.update([key]))
    return counts


def step(model, pixels: torch.Tensor, labels: torch.Tensor):
    torch.manual_seed(7)  # the stochastic depth draws
    output = model(pixels, labels=labels)
    output.loss.backward()
    return output.loss.detach(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize(("name", "stages"), VARIANTS, ids=VARIANT_IDS)
def test_checkpointing_gives_the_same_loss_and_gradients_and_recomputes_every_block(name, stages):
    model = stochastic_model(name, stages)
    checkpointed = copy.deepcopy(model)
    enable_checkpointing(checkpointed)
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, 64, 96, generator=generator)
    labels = torch.randint(0, NUM_LABELS, (2, 64, 96), generator=generator)

    plain_calls, checkpointed_calls = first_submodule_calls(model), first_submodule_calls(checkpointed)
    loss, grads = step(model, pixels, labels)
    checkpointed_loss, checkpointed_grads = step(checkpointed, pixels, labels)

    torch.testing.assert_close(checkpointed_loss, loss, rtol=0, atol=1e-7)
    # Every parameter but Swin's final layernorm, which UperNet's features do not use either.
    unused = {n for n, _ in model.named_parameters()} - grads.keys()
    assert grads.keys() == checkpointed_grads.keys() and all(".swin.layernorm." in n for n in unused)
    for key, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[key], grad, rtol=1e-6, atol=1e-7, msg=key)

    # Every backbone block and interaction layer ran once without checkpointing, twice with it.
    blocks = {"swin": 5, "convnext": 4, "convnextv2": 4}[name]
    interaction = {f"interaction_layers.{s}" for s in stages}
    assert len(plain_calls) == blocks + len(stages) and interaction <= plain_calls.keys()
    assert set(plain_calls.values()) == {1}
    assert checkpointed_calls.keys() == plain_calls.keys()
    assert set(checkpointed_calls.values()) == {2}, checkpointed_calls


def test_checkpointing_recomputes_nothing_at_inference_and_can_be_disabled():
    model = tiny_rest("convnextv2", [0, 2]).train()
    enable_checkpointing(model)
    calls = first_submodule_calls(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert set(calls.values()) == {1}
    enable_checkpointing(model, enable=False)
    calls.clear()
    model(torch.randn(2, 3, 64, 64), labels=torch.zeros(2, 64, 64, dtype=torch.long)).loss.backward()
    assert set(calls.values()) == {1}


def test_every_n_layers_counts_backbone_blocks_and_interaction_layers():
    model = tiny_rest("convnext", [0, 1, 2, 3])
    model.activation_checkpointing_enable(every_n_layers=2)
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert len(layers) == 8 and [m.gradient_checkpointing for m in layers] == [True, False] * 4


# (name, scene height, scene width) on a 1x2 grid; the widths leave an uneven last tile.
SPLIT_CASES = [("swin", 32, 160), ("convnext", 64, 230), ("convnextv2", 64, 230)]


def _checkpointed_split_step_matches_whole_scene(rank: int, world_size: int) -> None:
    ctx = SpatialContext.init(grid=(1, 2))
    for name, height, width in SPLIT_CASES:
        reference = stochastic_model(name, [0, 1, 2, 3])
        model = copy.deepcopy(reference)
        generator = torch.Generator().manual_seed(2)
        pixels = torch.randn(2, 3, height, width, generator=generator)
        labels = torch.randint(0, NUM_LABELS, (2, height, width), generator=generator)
        expected_loss, expected_grads = step(reference, pixels, labels)

        parallelize_spatial(model, ctx)
        enable_checkpointing(model)
        calls = first_submodule_calls(model)
        part = ctx.partition(height, width, model.config)
        loss, _ = step(model, part.local(pixels), part.local(labels))
        reduce_spatial_gradients(model, ctx)
        where = f"{name} on grid 1x2, rank {rank}"
        assert set(calls.values()) == {2}, f"{where}: not recomputed: {calls}"
        torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6, msg=where)
        parameters = dict(model.named_parameters())
        assert all(p.grad is None for k, p in parameters.items() if k not in expected_grads)
        for key, grad in expected_grads.items():
            torch.testing.assert_close(
                parameters[key].grad, grad, rtol=1e-3, atol=1e-5, msg=f"{where}: grad of {key}"
            )


def test_checkpointing_on_a_split_scene_gives_the_whole_scene_gradients():
    run_in_processes(_checkpointed_split_step_matches_whole_scene, 2)


def _split_scene_refuses_interaction_weights(rank: int, world_size: int) -> None:
    ctx = SpatialContext.init(grid=(1, 2))
    model = parallelize_spatial(tiny_rest("convnextv2", [1]).eval(), ctx)
    part = ctx.partition(64, 230, model.config)
    pixels = part.local(torch.randn(1, 3, 64, 230, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert model(pixels).logits.shape[2:] == pixels.shape[2:]
        with pytest.raises(ValueError, match="not supported on a split scene"):
            model(pixels, output_attentions=True)


def test_split_scene_refuses_interaction_attention_weights_on_every_rank():
    run_in_processes(_split_scene_refuses_interaction_weights, 2)
