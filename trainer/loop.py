"""The training loop: Accelerate (+ DeepSpeed ZeRO when launched with it), joint multi-task steps,
checkpoints with exact resume, validation, export, preemption and non-finite handling.

One step = one optimizer update = `optim.grad_accum` accepted micro-batches. A micro-batch whose
loss is not finite on any rank is skipped on every rank (no backward), counted and logged; an
update whose gradient is not finite is skipped on every rank (DeepSpeed checks it in its step,
plain torch by the clipping norm), counted and logged; the run stops with a message after
`optim.max_nonfinite_in_a_row` such events without an update in between. The lr schedule advances
once per step, also when the update was skipped, so the lr is a function of the step alone.

Exact resume: the DeepSpeed/accelerate state (model, optimizer, scheduler, per-rank torch/numpy/
python RNG states) comes from `accelerator.load_state`, the readers continue from their saved
state, and every other random choice is a pure function of (seed, step, rank, micro-batch).

Schedule horizon on resume: the lr curve's `total_steps` is fixed when the run starts (schedule.
total_steps, or run.max_steps) and saved in every checkpoint. Resuming with another run.max_steps
only moves where the run stops; the curve keeps its saved horizon (past it the lr stays at its
final value) and a message says so. A different explicit schedule.total_steps on resume is an
error: start a new run (e.g. from the exported weights) to change the curve.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.augment import augment_retrieval
from trainer.callback import Callback
from trainer.checkpoint import load_trainer_state, mark_best, resolve_checkpoint, save_checkpoint
from configs.loading import ConfigError, save_config
from trainer.data import (CaptionEmbedder, TaskStream, localization_batch, retrieval_batch, step_rng,
                          task_for_step)
from configs.schema import ExperimentConfig
from trainer.run_log import RunLogger
from trainer.optim import build_optimizer
from trainer.schedule import build_scheduler

class NonFiniteLossError(RuntimeError):
    pass


def resolve_precision(setting: str) -> str:
    """optim.mixed_precision -> "bf16" or "no". "auto": bf16 when the launcher asks for it
    (`accelerate launch --mixed_precision bf16`) or on a CUDA GPU that supports it, fp32 elsewhere."""
    if setting != "auto":
        return setting
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if launcher not in ("no", "bf16"):
        raise ConfigError(f"accelerate launch --mixed_precision {launcher}: trimo trains in bf16 or fp32 "
                          "(fp16 would need loss scaling); use --mixed_precision bf16 or optim.mixed_precision=bf16")
    if launcher == "bf16" or (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        return "bf16"
    return "no"


def make_accelerator(cfg: ExperimentConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    # CPU has no NCCL; without an explicit gloo backend every rank believes it is rank 0 of 1.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    on_cpu = world > 1 and not torch.cuda.is_available()
    handlers = [InitProcessGroupKwargs(backend="gloo")] if on_cpu else []
    # Plain DDP on a machine without GPUs (`accelerate launch --multi_gpu` there): accelerate
    # would leave every process training alone unless told the processes are CPU ones.
    cpu_ddp = on_cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true"
    # Plain DDP (no DeepSpeed): a step may leave parameters without a gradient (the other task's
    # head under alternate/random mixing, the video tower on a batch without video), which DDP's
    # reducer refuses unless it looks for them.
    handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    # No DataLoader goes through `prepare`: the shard reader splits by rank itself. The lr
    # schedule is stepped by the loop once per optimizer step: accelerate's default would step
    # it once per process and step (it assumes batches that grow with the number of processes).
    acc = Accelerator(gradient_accumulation_steps=cfg.optim.grad_accum,
                      mixed_precision=resolve_precision(cfg.optim.mixed_precision),
                      step_scheduler_with_optimizer=False, kwargs_handlers=handlers, cpu=cpu_ddp)
    if acc.num_processes != world:
        raise ConfigError(f"{world} processes were launched, but accelerate set up {acc.num_processes}: "
                          "launch with `accelerate launch --config_file accelerate_config.yaml` (DeepSpeed) or "
                          "`accelerate launch --multi_gpu --num_processes N` (DDP)")
    return acc


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of one rank's training draws (dropout): different on every rank."""
    return int(np.random.default_rng([seed, rank, 0x5EED]).integers(2**62))


@contextmanager
def whole_weights():
    """Load HF models whole, even under ZeRO-3 (accelerate registers a DeepSpeed config with
    transformers, whose from_pretrained would partition them at load). The trained model is
    partitioned by deepspeed.initialize in `prepare`; frozen helpers (MiniLM) must stay whole."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref
    registered = ref() if ref is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if registered is not None:
            hf_deepspeed.set_hf_deepspeed_config(registered)


def _fill_deepspeed_config(accelerator, cfg: ExperimentConfig, micro_batch: int) -> None:
    """Values our config owns, written where the DeepSpeed JSON says "auto" (we prepare no DataLoader)."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = micro_batch
    ds["gradient_accumulation_steps"] = cfg.optim.grad_accum
    ds["train_batch_size"] = micro_batch * cfg.optim.grad_accum * accelerator.num_processes
    ds["gradient_clipping"] = float(cfg.optim.grad_clip)


class Trainer:
    def __init__(self, cfg: ExperimentConfig, resume: str | None = None, callback: Callback | None = None):
        """Build everything on this rank; `resume`: latest | best | a checkpoint directory."""
        from trainer.build import agree_on_motion_features, build_datasets, build_model
        from trainer.export import initialize_from

        self.cfg = cfg
        self.callback = callback or Callback()
        self.run_dir = Path(cfg.run.output_dir)
        self.accelerator = acc = make_accelerator(cfg)
        self.rank, self.world = acc.process_index, acc.num_processes
        resume_dir = resolve_checkpoint(self.run_dir, resume) if resume else None
        self.state: dict[str, Any] = {"step": 0, "nonfinite_total": 0, "nonfinite_in_a_row": 0,
                                      "schedule_total_steps": cfg.schedule.total_steps or cfg.run.max_steps,
                                      "best_metric": None, "best_step": None, "samples": 0, "reader": {}}
        saved = load_trainer_state(resume_dir, self.rank) if resume_dir else None
        if saved:
            self._check_horizon(saved)
            self.state.update({k: v for k, v in saved.items() if k != "reader"})

        torch.manual_seed(cfg.run.seed)  # same initial weights on every rank
        with whole_weights():
            self.model, self.tokenizer = build_model(cfg)
        self.tasks = tuple(t for t, on in (("retrieval", cfg.model.use_retrieval),
                                           ("localization", cfg.model.use_localization)) if on)
        datasets = build_datasets(cfg, self.rank, self.world)
        agree_on_motion_features(cfg, datasets)   # recorded in the model's config, so in every export
        self.streams = {t: TaskStream(datasets[t], getattr(cfg.data, t).batch_size, cfg.data.num_workers,
                                      cfg.run.seed) for t in self.tasks}
        # the retrieval set's statistics (the localization set's in a localization-only run)
        stats = datasets[self.tasks[0]].index.stats()
        self.feature_std = None if stats is None else torch.as_tensor(stats.std)   # feature noise's scale
        if stats is not None:
            self.model.set_feature_stats(torch.as_tensor(stats.mean), torch.as_tensor(stats.std))
        elif acc.is_main_process:
            print(f"[trimo] warning: {datasets[self.tasks[0]].index.location} has no feature statistics; motion "
                  "is not normalized (write them with tools/shard_stats.py)", flush=True)
        # after the data's statistics: copied encoders bring the ones they learned with; a resumed
        # run restores its own weights, so the source is not read again
        if cfg.run.init_from and resume_dir is None:
            copied, fresh = initialize_from(self.model, cfg.run.init_from)
            if acc.is_main_process:
                print(f"[trimo] {copied} tensors from {cfg.run.init_from}; {len(fresh)} start fresh"
                      + (f" ({', '.join(sorted({k.split('.')[0] for k in fresh}))})" if fresh else ""), flush=True)
        self.embedder = None
        if cfg.data.caption_embedder == "minilm" and "retrieval" in self.tasks:
            with whole_weights():   # the frozen MiniLM stays whole on every rank
                self.embedder = CaptionEmbedder(cache_file=cfg.data.caption_cache or None)

        o = cfg.optim
        optimizer = build_optimizer(self.model, o.lr, o.weight_decay, tuple(o.betas), o.eps)
        s = cfg.schedule
        scheduler = build_scheduler(optimizer, s.kind, o.lr, s.final_lr, self.state["schedule_total_steps"],
                                    s.warmup_steps, s.step_size, s.gamma, s.hold_steps)
        _fill_deepspeed_config(acc, cfg, max(getattr(cfg.data, t).batch_size for t in self.tasks))
        self.model, self.optimizer, self.scheduler = acc.prepare(self.model, optimizer, scheduler)
        self.uses_deepspeed = acc.state.deepspeed_plugin is not None
        torch.manual_seed(rank_seed(cfg.run.seed, self.rank))   # dropout masks differ between ranks
        if resume_dir:
            acc.load_state(str(resume_dir))   # after prepare (DeepSpeed engine, RNG states)
            for t in self.tasks:
                self.streams[t].load_state_dict(saved["reader"][t])
        self.stop_signal: int | None = None
        self.resumed_from = resume_dir

    # --- setup helpers --------------------------------------------------------------------
    def _check_horizon(self, saved: dict) -> None:
        horizon = saved["schedule_total_steps"]
        asked = self.cfg.schedule.total_steps
        if asked is not None and asked != horizon:
            raise ConfigError(f"schedule.total_steps={asked} but the checkpoint's lr curve has a horizon of {horizon} "
                              f"steps; resuming cannot change the curve. Drop the override, or start a new run")
        if self.cfg.run.max_steps != horizon and self.accelerator.is_main_process:
            print(f"[trimo] run.max_steps={self.cfg.run.max_steps} differs from the lr schedule's horizon "
                  f"({horizon} steps, saved in the checkpoint): the lr curve is kept as it was"
                  + (f"; after step {horizon} the lr stays at its final value" if self.cfg.run.max_steps > horizon else ""),
                  flush=True)

    @contextmanager
    def _stop_on_signals(self):
        """SIGTERM/SIGINT ask for a stop at the next step end (with a checkpoint); the process's
        own handlers come back afterwards, so that a trainer run inside another program (a test, a
        notebook) leaves no handler behind for the processes it forks later."""
        def handler(signum, frame):
            if self.stop_signal is not None:   # a second signal: stop now, without a checkpoint
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            self.stop_signal = signum

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # --- one step -----------------------------------------------------------------------------
    def _micro_batch(self, task: str, step: int, micro: int) -> dict:
        cfg = self.cfg
        rng, generator = step_rng(cfg.run.seed, step, self.rank, micro)
        progress = step / max(1, self.state["schedule_total_steps"])
        device = self.accelerator.device
        rcfg = cfg.model.retrieval

        def build(name: str) -> dict:
            raw = self.streams[name].next()
            if name == "retrieval":
                raw = augment_retrieval(raw, cfg.data.augment, rng, self.feature_std)
                video = (rcfg.video.n_frames, cfg.data.video_size) if rcfg.use_video else None
                b = retrieval_batch(raw, self.tokenizer, rcfg.text.max_tokens, rng, embedder=self.embedder,
                                    negatives_per_sample=cfg.data.max_negatives_per_sample,
                                    use_negatives=rcfg.use_chronological_negatives, video=video,
                                    captions=cfg.data.train_captions)
            else:
                b = localization_batch(raw, self.tokenizer, rcfg.text.max_tokens, rng, progress, generator)
            return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}

        if task == "joint":
            return {t: build(t) for t in self.tasks}
        return build(task)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=loss.device)
        return self.accelerator.reduce(bad, "sum").item() == 0

    def _stop_requested(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_signal is not None else 0.0], device=self.accelerator.device)
        return self.accelerator.reduce(flag, "sum").item() > 0

    def train_step(self, step: int) -> dict[str, Any]:
        """Run micro-batches until `grad_accum` of them were finite, then one optimizer update
        (skipped on every rank when the gradient is not finite); returns the step's metrics."""
        acc, cfg = self.accelerator, self.cfg
        task = task_for_step(step, cfg.data.mixing, cfg.data.localization_ratio, cfg.run.seed, self.tasks)
        lr = self.scheduler.get_last_lr()[0]   # the lr of this step
        values: dict[str, list[float]] = {}
        accepted = tries = skipped = 0
        samples = 0
        while accepted < cfg.optim.grad_accum:
            batch = self._micro_batch(task, step, tries)
            tries += 1
            last = accepted == cfg.optim.grad_accum - 1
            # DDP all-reduces in the backward of the last micro-batch only; forward and backward of
            # the others run without it. (A no-op under DeepSpeed, which accumulates on its own.)
            with nullcontext() if last else acc.no_sync(self.model):
                out = self.model(batch, task)
                loss = out["loss"]
                loss = self.callback.on_loss(self, step, tries - 1, loss)
                if not self._all_finite(loss):
                    skipped += 1
                    self._count_nonfinite(step, "micro-batch(es) with a non-finite loss")
                    continue
                accepted += 1
                if self.uses_deepspeed:
                    self.model.set_gradient_accumulation_boundary(last)
                    self.model.backward(loss)
                else:
                    acc.backward(loss)
            for k, v in out.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    values.setdefault(k, []).append(float(v.detach()))
            samples += sum(len(b["text_input_ids"]) for b in (batch.values() if task == "joint" else [batch]))
        self.callback.on_gradients(self, step)
        if self.uses_deepspeed:
            self.model.step()   # clips, and skips the update when the gradient is not finite
            applied = self.model.was_step_applied()
            grad_norm = self.model.get_global_grad_norm()   # None when DeepSpeed does not clip
            grad_norm = None if grad_norm is None else float(grad_norm)
        else:
            grad_norm = float(acc.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip or float("inf")))
            applied = math.isfinite(grad_norm)
            if applied:
                self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()   # a skipped update still uses up its step of the schedule
        if applied:
            self.state["nonfinite_in_a_row"] = 0
        else:
            self._count_nonfinite(step, "update skipped: the gradient is not finite")
        # A metric may be undefined in a micro-batch (CAR accuracy without shuffleable captions):
        # NaN there, left out of the step's mean; every rank reports the same keys.
        means = {k: _finite_mean(v) for k, v in values.items()}
        reduced = acc.reduce(torch.tensor(list(means.values()), dtype=torch.float64, device=acc.device), "mean")
        metrics = dict(zip(means, reduced.tolist()))
        metrics.update(task=task, lr=lr, grad_norm=grad_norm, nonfinite_skipped=skipped, update_skipped=not applied,
                       samples=samples * self.world)
        return metrics

    def _count_nonfinite(self, step: int, what: str) -> None:
        self.state["nonfinite_total"] += 1
        self.state["nonfinite_in_a_row"] += 1
        if self.state["nonfinite_in_a_row"] >= self.cfg.optim.max_nonfinite_in_a_row:
            raise NonFiniteLossError(
                f"{self.state['nonfinite_in_a_row']} non-finite events in a row at step {step + 1} (last: {what}): "
                "stopping. Lower optim.lr, check the data (tools/validate_shards.py), or resume from an earlier checkpoint")

    def describe(self) -> str:
        """What this run got: processes, engine, precision, batch (the run's first message)."""
        acc = self.accelerator
        engine = f"DeepSpeed ZeRO-{self.model.zero_optimization_stage()}" if self.uses_deepspeed else \
            {"NO": "no DeepSpeed"}.get(acc.distributed_type.value, f"DDP ({acc.distributed_type.value})")
        batch = " + ".join(f"{getattr(self.cfg.data, t).batch_size * self.world} {t}" for t in self.tasks)
        return (f"{self.world} process{'es' if self.world > 1 else ''}, {engine}, "
                f"{'fp32' if acc.mixed_precision == 'no' else acc.mixed_precision}; global batch {batch} samples "
                f"per micro-batch, {self.cfg.optim.grad_accum} micro-batch(es) per step")

    # --- state ----------------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return dict(self.state, reader={t: s.state_dict() for t, s in self.streams.items()})

    def save(self, step: int) -> None:
        if self.embedder is not None:
            self.embedder.save()
        save_checkpoint(self.accelerator, self.run_dir, step, self.trainer_state(), self.cfg,
                        self.cfg.checkpoint.keep_last, on_staged=self.callback.on_checkpoint_staged)

    # --- the run ---------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            save_config(cfg, self.run_dir)
            if self.resumed_from is not None:
                _truncate_metrics(self.run_dir / "metrics.jsonl", self.state["step"])
        acc.wait_for_everyone()
        logger = RunLogger(cfg, self.run_dir, acc.is_main_process, self.state["step"])
        if self.resumed_from is not None:
            logger.message(f"resumed from {self.resumed_from} at step {self.state['step']}")
        with self._stop_on_signals():
            return self._fit(logger)

    def _fit(self, logger: RunLogger) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        logger.message(self.describe())
        self.model.train()
        status = "finished"
        last_saved = self.state["step"] if self.resumed_from else -1
        try:
            while self.state["step"] < cfg.run.max_steps:
                step = self.state["step"]
                t0 = time.perf_counter()
                metrics = self.train_step(step)
                self.state["step"] = step = step + 1
                samples = metrics.pop("samples")
                self.state["samples"] += samples
                record = {"step": step, **metrics,
                          "samples_per_s": samples / (time.perf_counter() - t0),
                          "nonfinite_total": self.state["nonfinite_total"],
                          "epoch": {t: s.epoch for t, s in self.streams.items()},
                          "reader_skips": {t: s.skipped for t, s in self.streams.items()}}
                if step % cfg.logging.every == 0 or step == cfg.run.max_steps:
                    logger.log(record)
                logger.progress(step, metrics.get("loss"), record["samples_per_s"])
                if metrics["nonfinite_skipped"]:
                    logger.message(f"step {step}: skipped {metrics['nonfinite_skipped']} micro-batch(es) with a "
                                   f"non-finite loss ({self.state['nonfinite_total']} non-finite events so far)")
                if metrics["update_skipped"]:
                    logger.message(f"step {step}: the gradient was not finite, no update "
                                   f"({self.state['nonfinite_total']} non-finite events so far)")
                improved = bool(cfg.validation.every) and step % cfg.validation.every == 0 and self.validate(logger, step)
                if step % cfg.checkpoint.every == 0 or improved:
                    self.save(step)
                    last_saved = step
                    if improved and acc.is_main_process:
                        mark_best(self.run_dir, step)
                    self.callback.on_checkpoint(self, step)
                self.callback.on_step_end(self, step)
                if self._stop_requested():   # a signal on any rank stops every rank at the same step
                    status = f"stopped by signal at step {step}"
                    break
        finally:
            logger.close()
            for stream in self.streams.values():
                stream.close()
        if last_saved != self.state["step"]:
            self.save(self.state["step"])
        self.callback.on_fit_end(self)
        logger.message(f"{status}; checkpoint {self.run_dir / 'checkpoints' / 'latest'} -> step {self.state['step']}")
        return {"status": status, "step": self.state["step"]}

    def validate(self, logger: RunLogger, step: int) -> bool:
        """Validation metrics (validation split only); True when the configured metric improved."""
        from trainer.validate import validate

        scores = validate(self, step)
        if self.accelerator.is_main_process:
            with open(self.run_dir / "validation.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **scores}) + "\n")
            logger.message("validation at step %d: %s" % (step, ", ".join(f"{k}={v:.4f}" for k, v in scores.items())))
            if logger.wandb_run is not None:
                logger.wandb_run.log(scores, step=step)
        metric = scores.get(self.cfg.validation.metric)
        best = self.state["best_metric"]
        improved = metric is not None and (best is None or metric > best)
        if improved:
            self.state.update(best_metric=metric, best_step=step)
        return improved


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records past the resumed step (a killed run may have logged steps it never saved)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
