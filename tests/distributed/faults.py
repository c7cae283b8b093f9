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
            trainer.save_gradients(self.gradients_out)

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
            trainer.save_probe(self.probe_out)


if __name__ == "__main__":
    from launch.train import main

    sys.exit(main(sys.argv[1:], callback=FaultInjection.from_env()))
