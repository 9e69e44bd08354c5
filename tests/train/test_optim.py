"""AdamW groups (no decay on norms, biases, position tables), the warm-up + poly schedule, frozen stages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.training import (
    build_optimizer,
    build_scheduler,
    freeze,
    frozen_modules,
    lr_factor,
    param_groups,
    set_train_mode,
)


def tiny(preset: str = "tiny-swin") -> RestForSemanticSegmentation:
    torch.manual_seed(0)
    return RestForSemanticSegmentation(RestConfig.from_preset(preset, num_labels=3))


@pytest.mark.parametrize("preset", ["tiny-swin", "tiny-convnext"])
def test_no_decay_on_norms_biases_and_position_tables(preset):
    model = tiny(preset)
    decay, plain = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert set(decay["names"]) | set(plain["names"]) == {n for n, _ in model.named_parameters()}
    assert not set(decay["names"]) & set(plain["names"])
    norms = {
        f"{m_name}.{p_name}"
        for m_name, module in model.named_modules()
        if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)) or type(module).__name__.endswith("GRN")
        for p_name, _ in module.named_parameters(recurse=False)
    }
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    tables = {n for n, _ in model.named_parameters() if "relative_position_bias_table" in n}
    assert norms and biases and (tables or preset != "tiny-swin")
    assert norms | biases | tables <= set(plain["names"])
    for name in ("interaction_layers.0.attention.in_proj.weight", "decode_head.classifier.weight"):
        assert name in decay["names"]
    assert all(p.ndim > 1 for p in decay["params"])


def test_schedule_warms_up_linearly_then_decays_polynomially_to_the_minimum():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = build_scheduler(
        optimizer, max_steps=100, warmup_steps=10, warmup_ratio=1e-2, power=1.0, min_learning_rate=1e-5
    )
    lrs = []
    for _ in range(101):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-3 * 1e-2), "warm-up starts at warmup_ratio x the peak"
    assert lr_factor(10, 10, 1e-2, 100, 1.0, 0.0) == pytest.approx(0.9)
    assert all(a < b for a, b in zip(lrs[:11], lrs[1:11], strict=False)), "warm-up must rise"
    assert all(a > b for a, b in zip(lrs[10:100], lrs[11:100], strict=False)), "decay must fall"
    assert lrs[10] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.9)
    assert lrs[100] == pytest.approx(1e-5)
    # Power 1: the decay is a straight line once warm-up is over.
    assert lrs[50] - lrs[51] == pytest.approx(lrs[80] - lrs[81])


def test_schedule_keeps_the_new_max_steps_when_state_is_loaded():
    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1.0)
    short = build_scheduler(optimizer, max_steps=10)
    for _ in range(5):
        optimizer.step()
        short.step()
    longer = build_scheduler(torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1.0), max_steps=20)
    longer.load_state_dict(short.state_dict())
    assert longer.last_epoch == 5
    assert longer.lr_lambdas[0](5) == pytest.approx(0.75)


@pytest.mark.parametrize("preset", ["tiny-swin", "tiny-convnext"])
def test_freeze_stages_freezes_the_patch_embedding_and_the_first_stages(preset):
    model = tiny(preset)
    frozen = frozen_modules(model, 2)
    freeze(frozen)
    names = {n for n, p in model.named_parameters() if not p.requires_grad}
    prefix = "backbone.swin." if preset == "tiny-swin" else "backbone."
    stages = "encoder.layers" if preset == "tiny-swin" else "encoder.stages"
    assert any(n.startswith(prefix + "embeddings.") for n in names)
    assert any(n.startswith(f"{prefix}{stages}.1.") for n in names)
    assert not any(n.startswith(f"{prefix}{stages}.2.") for n in names)
    assert any(n.startswith("backbone.hidden_states_norms.stage2.") for n in names)
    assert not any(n.startswith("backbone.hidden_states_norms.stage3.") for n in names)
    assert not any(n.startswith(("interaction_layers.", "decode_head.")) for n in names)
    optimizer = build_optimizer(model, 1e-3, 0.01)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in model.parameters() if not p.requires_grad)
    set_train_mode(model, frozen)
    assert model.decode_head.training and not any(m.training for m in frozen for m in m.modules())


def test_freeze_stages_beyond_the_backbone_is_refused():
    with pytest.raises(ValueError, match="freeze_stages=5 but the backbone has 4 stages"):
        frozen_modules(tiny(), 5)
    assert frozen_modules(tiny(), -1) == []
