"""Checkpoints: written atomically, `latest` updated last, the last k kept (plus the best one).

Layout of a run directory:
    checkpoints/step-00000500/       accelerate `save_state` (DeepSpeed engine: model, optimizer,
                                     scheduler; per-rank RNG states), trainer_state_rank<r>.json
                                     (step, reader states, counters), config.yaml
    checkpoints/latest               text file naming the newest complete checkpoint
    checkpoints/best                 text file naming the best one on validation (if validated)

Every rank writes into `.tmp-step-...`; after a barrier the main process renames it to its final
name, then replaces `latest` (write + os.replace). A process killed at any point leaves either
the old `latest` or the new one, both complete; stale `.tmp-*` folders are removed on the next
save. Ranks must share the file system (one machine, or a shared volume across nodes).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from configs.loading import save_config

CHECKPOINTS = "checkpoints"
COMPLETE_MARKER = "trainer_state_rank0.json"


class CheckpointError(RuntimeError):
    pass


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def _write_pointer(root: Path, name: str, target: str) -> None:
    tmp = root / f".{name}.tmp"
    tmp.write_text(target + "\n")
    os.replace(tmp, root / name)


def read_pointer(root: Path, name: str) -> str | None:
    path = root / name
    return path.read_text().strip() if path.is_file() else None


def save_checkpoint(accelerator, run_dir: str | Path, step: int, state: dict[str, Any], cfg: Any,
                    keep_last: int, keep: tuple[str, ...] = (), on_staged: Callable[[int], None] | None = None) -> Path:
    """Save everything needed to resume at `step` (call on every rank; `state` is this rank's).

    The checkpoint is written to a temporary folder and published (renamed, `latest` moved) only
    once every rank has written its part; `on_staged(step)` runs on the main process in between."""
    root = Path(run_dir) / CHECKPOINTS
    name = checkpoint_name(step)
    tmp, final = root / f".tmp-{name}", root / name
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    state_path = tmp / f"trainer_state_rank{accelerator.process_index}.json"
    state_path.write_text(json.dumps(state, indent=1))
    if accelerator.is_main_process:
        save_config(cfg, tmp)
        if on_staged is not None:
            on_staged(step)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_pointer(root, "latest", name)
        prune(root, keep_last, keep=(name, *keep))
    accelerator.wait_for_everyone()
    return final


def mark_best(run_dir: str | Path, step: int) -> None:
    _write_pointer(Path(run_dir) / CHECKPOINTS, "best", checkpoint_name(step))


def prune(root: Path, keep_last: int, keep: tuple[str, ...] = ()) -> None:
    """Delete all but the newest `keep_last` checkpoints (never the ones named in `keep` or `best`)."""
    protected = set(keep) | {read_pointer(root, "best"), read_pointer(root, "latest")}
    complete = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in complete[:-keep_last] if keep_last > 0 else []:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(run_dir: str | Path, spec: str) -> Path:
    """`latest`, `best` or a checkpoint directory -> the directory; a clear error if unusable."""
    root = Path(run_dir) / CHECKPOINTS
    if spec in ("latest", "best"):
        name = read_pointer(root, spec)
        if name is None:
            raise CheckpointError(f"no '{spec}' checkpoint in {root}: nothing to resume "
                                  f"(run without --resume to start, or pass a checkpoint directory)")
        path = root / name
    else:
        path = Path(spec)
    if not (path / COMPLETE_MARKER).is_file():
        raise CheckpointError(f"{path} is not a complete trimo checkpoint (no {COMPLETE_MARKER}); "
                              f"pass a folder under {root}")
    return path


def load_trainer_state(path: Path, rank: int) -> dict[str, Any]:
    own = path / f"trainer_state_rank{rank}.json"
    if not own.is_file():
        raise CheckpointError(f"{path} has no state for rank {rank}: it was written with fewer ranks; "
                              "resume with the same number of processes")
    return json.loads(own.read_text())
