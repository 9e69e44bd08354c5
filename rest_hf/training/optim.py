"""AdamW parameter groups, the warm-up + polynomial learning-rate schedule, and frozen stages.

The schedule and the decay rules follow the paper's mmseg recipe (`AdamW`, `PolyLR` with linear warm-up,
`paramwise_cfg` without decay on norms and position tables); biases are not decayed either.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import torch
from torch import nn

# Parameter names that hold positions, not features: decaying them towards 0 erases what they encode.
NO_DECAY_NAMES = ("relative_position_bias_table", "position_embeddings", "absolute_pos_embed")
# Normalisation layers whose affine parameters are never decayed (ConvNeXt-V2's GRN has 4-D gamma/beta).
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get no weight decay: biases, norm and GRN parameters, position tables."""
    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES) or type(module).__name__.endswith("GRN")
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param.ndim <= 1 or param_name == "bias" or any(k in full for k in NO_DECAY_NAMES):
                names.add(full)
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups of the trainable parameters: with `weight_decay`, and without (see `no_decay_names`).

    Each group also carries `names` (the parameter names, in order) for inspection and tests.
    """
    exempt = no_decay_names(model)
    decay, plain = ([], []), ([], [])
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        target = plain if name in exempt else decay
        target[0].append(name)
        target[1].append(param)
    groups = [
        {"params": decay[1], "names": decay[0], "weight_decay": weight_decay},
        {"params": plain[1], "names": plain[0], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module, learning_rate: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with the decay rules of `param_groups`."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters: lower freeze_stages")
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)


def lr_factor(
    step: int, warmup_steps: int, warmup_ratio: float, max_steps: int, power: float, min_ratio: float
) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based).

    Polynomial decay from 1 to `min_ratio` at `max_steps`, times a linear warm-up from `warmup_ratio` to 1
    over the first `warmup_steps` (mmseg's `PolyLR` with `LinearLR` warm-up).
    """
    progress = min(step, max_steps) / max_steps
    factor = (1.0 - min_ratio) * (1.0 - progress) ** power + min_ratio
    if step < warmup_steps:
        factor *= warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
    power: float = 1.0,
    min_learning_rate: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """`LambdaLR` with `lr_factor`. A `functools.partial` (not a callable object) so that loading a checkpoint
    restores the step count but keeps this run's `max_steps` (a run may be resumed with a larger one)."""
    peak = optimizer.param_groups[0]["lr"]
    schedule = functools.partial(
        lr_factor,
        warmup_steps=warmup_steps,
        warmup_ratio=warmup_ratio,
        max_steps=max_steps,
        power=power,
        min_ratio=min_learning_rate / peak,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def frozen_modules(model: nn.Module, freeze_stages: int) -> list[nn.Module]:
    """The patch embedding and the first `freeze_stages` backbone stages (with their output norms), as mmseg's
    `frozen_stages` does; `[]` for -1. Swin stages include their patch merging; ConvNeXt stages their
    downsampling layer."""
    if freeze_stages < 0:
        return []
    backbone = model.backbone
    if hasattr(backbone, "swin"):
        embeddings, stages = backbone.swin.embeddings, list(backbone.swin.encoder.layers)
    else:
        embeddings, stages = backbone.embeddings, list(backbone.encoder.stages)
    if freeze_stages > len(stages):
        raise ValueError(
            f"freeze_stages={freeze_stages} but the backbone has {len(stages)} stages; use -1..{len(stages)}"
        )
    norms = [backbone.hidden_states_norms[f"stage{i + 1}"] for i in range(freeze_stages)]
    return [embeddings, *stages[:freeze_stages], *norms]


def freeze(modules: Iterable[nn.Module]) -> None:
    """Stop gradients to every parameter of `modules` (they are then left out of the optimizer)."""
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(False)


def set_train_mode(model: nn.Module, frozen: Iterable[nn.Module]) -> None:
    """`model.train()`, but frozen modules stay in eval mode (no stochastic depth in them, as in mmseg)."""
    model.train()
    for module in frozen:
        module.eval()


__all__ = [
    "build_optimizer",
    "build_scheduler",
    "freeze",
    "frozen_modules",
    "lr_factor",
    "no_decay_names",
    "param_groups",
    "set_train_mode",
]
