"""The tests' training callback: faults injected at chosen steps and state captured for checks.

In a test process, pass `FaultInjection(...)` to `launch.train.main(..., callback=...)`. Launched
runs (`accelerate launch ... -m faults --config ...` with tests/distributed on PYTHONPATH, the
arguments of `-m launch.train`) read it from these environment variables:
  TRIMO_TEST_NONFINITE_STEPS       comma list of step indices whose loss becomes NaN ("3" = the
                                   first micro-batch of step index 3, "3*" = all of them)
  TRIMO_TEST_NONFINITE_GRAD_STEPS  step indices whose loss stays finite but whose gradient is NaN
  TRIMO_TEST_FIRST_GRADIENTS_OUT   save the full first-step gradient (before clipping) here
  TRIMO_TEST_PROBE_OUT             after training, save the outputs on trainer.probe's batch here
  TRIMO_TEST_KILL_AFTER_STEP       SIGKILL this process right after the checkpoint of this step
  TRIMO_TEST_SIGTERM_AT_STEP       send this process SIGTERM after this step (preemption)
  TRIMO_TEST_CHECKPOINT_SLEEP      "SECONDS@STEP": sleep inside that step's checkpoint write
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field

from trainer.callback import Callback


def _steps(spec: str, everything: bool | None = None) -> set[int]:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    return {int(s.rstrip("*")) for s in items if everything is None or s.endswith("*") == everything}


@dataclass
class FaultInjection(Callback):
    nonfinite_loss: str = ""
    nonfinite_grad: str = ""
    gradients_out: str = ""
    probe_out: str = ""
    kill_after_step: int = 0
    sigterm_at_step: int = 0
    checkpoint_sleep: str = ""
    _first: set[int] = field(init=False, default_factory=set)
    _all: set[int] = field(init=False, default_factory=set)
    _grad: set[int] = field(init=False, default_factory=set)

    def __post_init__(self):
        self._first, self._all = _steps(self.nonfinite_loss, False), _steps(self.nonfinite_loss, True)
        self._grad = _steps(self.nonfinite_grad)

    @classmethod
    def from_env(cls) -> "FaultInjection":
        env = os.environ.get
        return cls(nonfinite_loss=env("TRIMO_TEST_NONFINITE_STEPS", ""),
                   nonfinite_grad=env("TRIMO_TEST_NONFINITE_GRAD_STEPS", ""),
                   gradients_out=env("TRIMO_TEST_FIRST_GRADIENTS_OUT", ""), probe_out=env("TRIMO_TEST_PROBE_OUT", ""),
                   kill_after_step=int(env("TRIMO_TEST_KILL_AFTER_STEP", "0")),
                   sigterm_at_step=int(env("TRIMO_TEST_SIGTERM_AT_STEP", "0")),
                   checkpoint_sleep=env("TRIMO_TEST_CHECKPOINT_SLEEP", ""))

    def on_loss(self, trainer, step, micro, loss):
        if step in self._all or (step in self._first and micro == 0):
            return loss * float("nan")
        if step in self._grad:
            loss.register_hook(lambda grad: grad * float("nan"))
        return loss

    def on_gradients(self, trainer, step):
        if step == 0 and self.gradients_out:
            save_gradients(trainer, self.gradients_out)

    def on_checkpoint_staged(self, step):
        seconds, _, at = self.checkpoint_sleep.partition("@")
        if seconds and (not at or int(at) == step):
            print(f"[trimo-test] sleeping inside the checkpoint write of step {step}", flush=True)
            time.sleep(float(seconds))

    def on_checkpoint(self, trainer, step):
        if step == self.kill_after_step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_step_end(self, trainer, step):
        if step == self.sigterm_at_step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_fit_end(self, trainer):
        if self.probe_out:
            save_probe(trainer, self.probe_out)


def save_gradients(trainer, path: str) -> None:
    """The full (all-reduced, gathered) gradient of every trainable parameter, in float32; call
    on every rank (a collective under ZeRO), the main process writes."""
    from safetensors.torch import save_file

    grads = {}
    for name, param in trainer.accelerator.unwrap_model(trainer.model).named_parameters():
        if param.requires_grad:
            if trainer.uses_deepspeed:
                from deepspeed.utils import safe_get_full_grad

                grad = safe_get_full_grad(param)
            else:
                grad = param.grad
            if grad is not None:
                grads[name] = grad.detach().float().cpu().contiguous()
    if trainer.accelerator.is_main_process:
        save_file(grads, path)


def save_probe(trainer, path: str) -> None:
    """The model's outputs on the probe batch (tests/distributed/probe.py); every rank computes
    them (ZeRO-3 gathers), the main process writes."""
    from safetensors.torch import save_file

    from probe import probe_batch, probe_outputs

    rcfg = trainer.cfg.model.retrieval
    batch = probe_batch(trainer.tokenizer, rcfg.motion.n_feats, max_tokens=rcfg.text.max_tokens)
    out = probe_outputs(trainer.model, batch, trainer.accelerator.device)
    if trainer.accelerator.is_main_process:
        save_file({k: v.float() for k, v in out.items()}, path)


if __name__ == "__main__":
    from launch.train import main

    sys.exit(main(sys.argv[1:], callback=FaultInjection.from_env()))
