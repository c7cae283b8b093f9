"""The experiment schema: everything one training run needs, as typed dataclasses.

Loaded with `trainer.config.load_config(ExperimentConfig, [yaml files], [a.b=c overrides])`; the
resolved config is saved in the run directory and in every checkpoint. The model part is
modeling.trimo_model.TrimoModelConfig (RetrievalModelConfig + LocalizationConfig + head switches).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from modeling.trimo_model import TrimoModelConfig
from trainer.config import ConfigError, load_config


@dataclass
class RunConfig:
    name: str = "trimo"
    seed: int = 0
    output_dir: str = "runs/trimo"
    max_steps: int = 1000              # optimizer steps of this run (where it stops)


@dataclass
class ShardSetConfig:
    index: str = ""                    # shards.json (or its folder); "" = this task is off
    urls: Optional[str] = None         # None = the shards beside the index
    split: str = "train"               # keep samples whose meta.split is this ("" = all)
    batch_size: int = 32               # per rank
    min_frames: int = 40
    max_frames: int = 200
    shuffle_buffer: int = 1000


@dataclass
class DataConfig:
    retrieval: ShardSetConfig = field(default_factory=ShardSetConfig)
    localization: ShardSetConfig = field(default_factory=lambda: ShardSetConfig(min_frames=20, max_frames=2000))
    # joint: every step runs both tasks and sums their losses; alternate: localization every
    # round(1 / localization_ratio) steps; random: localization with probability localization_ratio
    # (drawn from (seed, step), the same on every rank).
    mixing: str = "joint"
    localization_ratio: float = 0.5
    num_workers: int = 0
    load_video: bool = True
    video_size: int = 224
    # Sentence embeddings for LAVIMO's soft targets: "minilm" (the packaged all-MiniLM-L6-v2,
    # frozen, cached per caption string) or "none" (one-hot targets).
    caption_embedder: str = "minilm"
    # A safetensors file of sentence embeddings shared by runs on the same corpus ("" = in memory
    # only): each caption is embedded once per machine instead of once per run and rank.
    caption_cache: str = ""
    max_negatives_per_sample: int = 1  # CAR: event-shuffled captions per sample (when shuffleable)
    # Retrieval training text: "original" (the caption as written; CAR's "orig -> event") or
    # "events" (its events concatenated in order; CAR's "event -> event", scored by that CAR column).
    train_captions: str = "original"


@dataclass
class OptimConfig:
    lr: float = 1e-4                   # LAVIMO: 1e-4
    weight_decay: float = 0.01         # on weight matrices of linear maps only (trainer/optim.py)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0             # max global grad norm; 0 = off
    grad_accum: int = 1
    # auto: bf16 on a GPU that supports it (or when `accelerate launch --mixed_precision bf16` asks),
    # fp32 elsewhere | no (fp32) | bf16. Under DeepSpeed, bf16 weights with fp32 master weights.
    mixed_precision: str = "auto"
    max_nonfinite_in_a_row: int = 10   # stop the run after this many skipped steps in a row


@dataclass
class ScheduleConfig:
    # linear: lr held for hold_steps, then linearly to final_lr at total_steps (LAVIMO: 1e-4 for
    # 100 epochs, then down to 1e-5);
    # step: lr * gamma every step_size steps (MLP); cosine: warmup then cosine to final_lr;
    # constant: warmup then flat.
    kind: str = "cosine"
    warmup_steps: int = 0
    hold_steps: int = 0
    total_steps: Optional[int] = None  # the curve's horizon; None = run.max_steps
    final_lr: float = 1e-5
    step_size: int = 1000
    gamma: float = 0.5


@dataclass
class CheckpointConfig:
    every: int = 500                   # steps between checkpoints (also one at the end)
    keep_last: int = 3


@dataclass
class LoggingConfig:
    every: int = 1                     # steps between metric records
    wandb: bool = True
    wandb_project: str = "trimo"
    wandb_mode: str = "offline"        # offline | online | disabled
    progress_bar: bool = True


@dataclass
class ValidationConfig:
    every: int = 0                     # steps between validations; 0 = off
    retrieval_index: str = ""          # shard sets holding the validation split ("" = off)
    localization_index: str = ""
    split: str = "val"                 # the split validated on (never the test split)
    batch_size: int = 32
    max_batches: int = 0               # 0 = the whole split
    metric: str = "val/score"          # higher is better; the best checkpoint is chosen on it


@dataclass
class ExperimentConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: TrimoModelConfig = field(default_factory=TrimoModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


MIXING = ("joint", "alternate", "random")
SCHEDULES = ("linear", "step", "cosine", "constant")


def check_experiment(cfg: ExperimentConfig) -> None:
    """Cross-field checks the types cannot express; raises ConfigError naming the key to fix."""
    if cfg.data.mixing not in MIXING:
        raise ConfigError(f"data.mixing={cfg.data.mixing!r} must be one of {MIXING}")
    if cfg.schedule.kind not in SCHEDULES:
        raise ConfigError(f"schedule.kind={cfg.schedule.kind!r} must be one of {SCHEDULES}")
    if not (cfg.model.use_retrieval or cfg.model.use_localization):
        raise ConfigError("model.use_retrieval and model.use_localization are both false: nothing to train")
    if cfg.model.use_retrieval and not cfg.data.retrieval.index:
        raise ConfigError("model.use_retrieval is on but data.retrieval.index is empty; set it to a shards.json")
    if cfg.model.use_localization and not cfg.data.localization.index:
        raise ConfigError("model.use_localization is on but data.localization.index is empty; set it to a shards.json")
    if not 0.0 < cfg.data.localization_ratio <= 1.0:
        raise ConfigError(f"data.localization_ratio={cfg.data.localization_ratio} must be in (0, 1]")
    if cfg.optim.mixed_precision not in ("auto", "no", "bf16"):
        raise ConfigError(f"optim.mixed_precision={cfg.optim.mixed_precision!r} must be 'auto', 'no' or 'bf16'")
    if cfg.optim.grad_accum < 1 or cfg.run.max_steps < 1 or cfg.checkpoint.every < 1:
        raise ConfigError("optim.grad_accum, run.max_steps and checkpoint.every must be >= 1")
    if cfg.data.train_captions not in ("original", "events"):
        raise ConfigError(f"data.train_captions={cfg.data.train_captions!r} must be 'original' or 'events'")
    if cfg.data.caption_embedder not in ("minilm", "none"):
        raise ConfigError(f"data.caption_embedder={cfg.data.caption_embedder!r} must be 'minilm' or 'none'")
    if cfg.validation.split == "test":
        raise ConfigError("validation.split=test: the best checkpoint must be chosen on validation data, never on "
                          "test; use 'val' (test-split numbers come from launch/evaluate.py)")
    d_text = cfg.model.retrieval.text.latent_dim
    if cfg.model.retrieval.motion.latent_dim != d_text:
        raise ConfigError("model.retrieval.motion.latent_dim and model.retrieval.text.latent_dim must be equal")


def load_experiment(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> ExperimentConfig:
    cfg = load_config(ExperimentConfig, files, overrides)
    check_experiment(cfg)
    return cfg
