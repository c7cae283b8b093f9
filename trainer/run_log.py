"""Run logging: a JSONL metrics file (always), wandb (offline by default), a tqdm bar on the main process.

The JSONL file (`metrics.jsonl` in the run directory) is the record tests and tools read: one
object per logged step with the same keys every time (a value that does not exist at a step,
e.g. the other task's loss under alternation, is null). wandb gets the same records, with the
resolved config; its mode comes from `logging.wandb_mode` unless WANDB_MODE is set.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm.auto import tqdm


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class RunLogger:
    def __init__(self, cfg: Any, run_dir: Path, is_main: bool, start_step: int):
        self.is_main = is_main
        self.path = run_dir / "metrics.jsonl"
        self.keys: list[str] = []
        self.wandb_run = None
        self.bar = None
        if not is_main:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.logging.wandb and (os.environ.get("WANDB_MODE") or cfg.logging.wandb_mode) != "disabled":
            import wandb

            self.wandb_run = wandb.init(project=cfg.logging.wandb_project, name=cfg.run.name,
                                        dir=os.environ.get("WANDB_DIR", str(run_dir)),
                                        mode=os.environ.get("WANDB_MODE", cfg.logging.wandb_mode),
                                        config=OmegaConf.to_container(cfg, resolve=True))
        if cfg.logging.progress_bar:
            self.bar = tqdm(total=cfg.run.max_steps, initial=start_step, desc=cfg.run.name, dynamic_ncols=True)

    def log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        for key in record:
            if key not in self.keys:
                self.keys.append(key)
        full = {k: _plain(record.get(k)) for k in self.keys}
        with open(self.path, "a") as f:
            f.write(json.dumps(full) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=record["step"])

    def progress(self, step: int, loss: float | None, samples_per_s: float) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(loss=f"{loss:.4f}" if loss is not None else "nan", samples_s=f"{samples_per_s:.1f}")

    def message(self, text: str) -> None:
        if self.is_main:
            (tqdm.write if self.bar is not None else print)(f"[trimo] {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
