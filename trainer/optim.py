"""AdamW with two parameter groups: weight decay on the weight matrices of linear maps only.

Decayed: the `weight` (GRU: `weight_ih_*`, `weight_hh_*`) of linear, convolutional, recurrent and
attention layers, i.e. matrices (2 or more dimensions) that multiply an input. Not decayed:
biases, norm weights, embedding tables (token, position and label embeddings), learned tokens
(CLS, CLIP's class embedding), the temperature and other vectors (the CQA trilinear weight).
Only trainable parameters go to the optimizer (frozen backbones and LoRA's frozen base weights
stay out, which DeepSpeed ZeRO needs).
"""
from __future__ import annotations

import torch
from torch import nn

NO_DECAY_MODULES = (nn.Embedding, nn.EmbeddingBag, nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm,
                    nn.RMSNorm)


def _decays(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    table_or_norm = isinstance(module, NO_DECAY_MODULES) or "norm" in type(module).__name__.lower()
    is_weight = name.startswith("weight") or name.endswith("_weight")
    return is_weight and param.ndim >= 2 and not table_or_norm


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the trainable parameters that get no weight decay."""
    names = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and not _decays(module, name, p):
                names.add(f"{module_name}.{name}" if module_name else name)
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
