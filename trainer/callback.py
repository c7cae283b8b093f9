"""Points in the training loop where a caller may act. Every method does nothing by default.

The loop calls them in this order for a step: `on_loss` for every micro-batch (it may return a
different loss), `on_gradients` once the step's gradients are complete (before clipping and the
update), `on_checkpoint_staged` while a checkpoint is written but not yet published as `latest`
(main process), `on_checkpoint` after it is published, `on_step_end`; and `on_fit_end` after the
final checkpoint. The tests inject faults and capture state through it (tests/distributed/faults.py).
"""
from __future__ import annotations

import torch


class Callback:
    def on_loss(self, trainer, step: int, micro: int, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def on_gradients(self, trainer, step: int) -> None:
        pass

    def on_checkpoint_staged(self, step: int) -> None:
        pass

    def on_checkpoint(self, trainer, step: int) -> None:
        pass

    def on_step_end(self, trainer, step: int) -> None:
        pass

    def on_fit_end(self, trainer) -> None:
        pass
