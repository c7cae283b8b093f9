"""Learning-rate schedules as multipliers of the base lr, for torch's LambdaLR.

- linear (LAVIMO): lr stays at `lr` until `hold_steps` (LAVIMO: the first 100 epochs), then decays
  linearly to `final_lr` at `total_steps`.
- step (MLP): lr * gamma ** (step // step_size).
- cosine: linear warmup from 0, then half a cosine from `lr` to `final_lr` at `total_steps`
  (starting after `hold_steps` if that is later than the warmup).
- constant: linear warmup, then `lr`.
Past `total_steps` the multiplier stays at its final value. The horizon `total_steps` is fixed
when a run starts and stored in every checkpoint; a resumed run keeps it (see trainer.loop), so
asking for more or fewer steps never bends the curve already followed.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def lr_multiplier(kind: str, lr: float, final_lr: float, total_steps: int, warmup_steps: int = 0,
                  step_size: int = 1000, gamma: float = 0.5, hold_steps: int = 0) -> Callable[[int], float]:
    """step -> multiplier of the base lr (the lr used for optimizer step `step + 1`)."""
    floor = final_lr / lr if lr > 0 else 0.0
    total = max(1, total_steps)
    warm = max(0, warmup_steps)

    def multiplier(step: int) -> float:
        if kind == "step":
            return gamma ** (step // max(1, step_size))
        if step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        flat_until = max(warm, hold_steps)
        t = min(1.0, max(0, step - flat_until) / max(1, total - flat_until))
        if kind == "linear":
            return 1.0 + (floor - 1.0) * t
        if kind == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        raise ValueError(f"schedule kind {kind!r} is not one of linear, step, cosine, constant")

    return multiplier


def build_scheduler(optimizer: Optimizer, kind: str, lr: float, final_lr: float, total_steps: int,
                    warmup_steps: int = 0, step_size: int = 1000, gamma: float = 0.5, hold_steps: int = 0) -> LambdaLR:
    return LambdaLR(optimizer, lr_multiplier(kind, lr, final_lr, total_steps, warmup_steps, step_size, gamma,
                                             hold_steps))
