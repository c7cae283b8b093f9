"""AdamW with two parameter groups: weight decay on weights, none on norms, biases and the temperature.

Only trainable parameters go to the optimizer (frozen backbones and LoRA's frozen base weights
stay out, which DeepSpeed ZeRO needs).
"""
from __future__ import annotations

import torch
from torch import nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.RMSNorm)
TEMPERATURE_NAMES = ("log_scale", "logit_scale", "temperature")


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the trainable parameters that get no weight decay."""
    names = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, NORM_TYPES) or "norm" in type(module).__name__.lower()
            if is_norm or name.startswith("bias") or name in TEMPERATURE_NAMES:   # GRUs: bias_ih_l0, ...
                names.add(full)
    return names


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float) -> torch.optim.AdamW:
    skip = no_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas), eps=eps)
