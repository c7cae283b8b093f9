"""The config schema of trimo, in one place: the model, a training experiment and an evaluation.

Every field is a typed dataclass field with its default (the papers' values where a paper gives
one) and a comment saying what it does. A run's config is resolved in three layers, later ones
winning: these defaults, YAML files (configs/*.yaml), then `a.b=c` command-line overrides
(configs.loading). The resolved config is saved in every run directory and checkpoint.

- model: `TrimoModelConfig` (retrieval model = encoders + contrastive loss + fusion decoder;
  localization head; head switches and weights);
- experiment: `ExperimentConfig` (run, data, model, optim, schedule, checkpoint, logging,
  validation), checked by `check_experiment`, loaded by `load_experiment`;
- evaluation: `EvalOptions` (the test protocols' thresholds and sizes; launch/evaluate.py's
  options default to these fields).
Fields use only OmegaConf-supported types, so every value can be overridden from the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from configs.loading import ConfigError, load_config

# The clip lengths HumanML3D's loaders keep, inclusive bounds: at least 40 frames (2 s at 20 fps)
# and fewer than 200 (they skip `len(motion) >= 200`). Converters' defaults and training's
# retrieval length filter.
MIN_FRAMES = 40
MAX_FRAMES = 199


# ================================================================ the model

@dataclass
class MotionEncoderConfig:
    n_feats: int = 263                 # HumanML3D feature size per frame
    latent_dim: int = 512              # LAVIMO: C = 512
    n_layers: int = 6                  # LAVIMO: 6-layer transformer encoder
    n_heads: int = 8                   # attention heads per layer
    ff_dim: int = 1024                 # feed-forward width of each layer
    dropout: float = 0.1               # dropout in the transformer layers
    activation: str = "gelu"           # feed-forward activation (gelu | relu)
    # MLP's S-Enc in front of the transformer: L layers of BN(tanh(A H W + b)) (residual pairs after
    # the first, learned A), mean-pooled over joints (modeling/gcn.py).
    use_gcn: bool = False              # True: the S-Enc GCN reads the 22 joints of every frame (MLP)
    gcn_layers: int = 7                # MLP: L = 7
    gcn_dim: int = 64                  # width of the GCN's joint features
    n_joints: int = 22                 # joints of the skeleton the GCN runs on
    joint_feats: int = 12              # MLP: d_p = 12 (6D rotation + position + velocity)
    gcn_normalize_adjacency: bool = False  # True: D^-1/2 (A+I) D^-1/2 instead of the binary A+I


@dataclass
class TextEncoderConfig:
    # Local directory or hub name for AutoModel; "" = the packaged all-MiniLM-L6-v2.
    backbone: str = ""
    mode: str = "full"                 # frozen | lora | full  (LAVIMO fine-tunes DistilBERT)
    lora_rank: int = 8                 # LoRA rank r (mode=lora)
    lora_alpha: int = 16               # LoRA scaling alpha
    lora_dropout: float = 0.05         # dropout on LoRA's input
    # Modules LoRA wraps; empty = picked from the backbone type (query/value projections).
    lora_target_modules: list[str] = field(default_factory=list)
    latent_dim: int = 512              # joint-space size (must equal motion.latent_dim)
    # LAVIMO: CLS + temporal transformer "following the architecture of the motion encoder".
    n_layers: int = 6                  # temporal transformer on the backbone's token features
    n_heads: int = 8                   # attention heads per layer
    ff_dim: int = 1024                 # feed-forward width of each layer
    dropout: float = 0.1               # dropout in the transformer layers
    activation: str = "gelu"           # feed-forward activation (gelu | relu)
    max_tokens: int = 77               # captions are truncated to this many tokens


@dataclass
class VideoEncoderConfig:
    # Local directory of a CLIP (vision) checkpoint; "" = build an untrained tower from the fields below.
    backbone: str = ""
    mode: str = "full"                 # frozen | full
    # Used only when backbone is "": a CLIP vision tower built from config (ViT-B/32 shape by default).
    clip_hidden_size: int = 768        # CLIP width
    clip_layers: int = 12              # CLIP depth
    clip_heads: int = 12               # CLIP attention heads
    clip_intermediate_size: int = 3072 # CLIP MLP width
    clip_image_size: int = 224         # input frame size (px); also the reader's video size
    clip_patch_size: int = 32          # CLIP patch size (px)
    latent_dim: int = 512              # joint-space size
    n_layers: int = 6                  # LAVIMO: 6-layer temporal transformer
    n_heads: int = 8                   # temporal transformer heads
    ff_dim: int = 1024                 # temporal transformer feed-forward width
    dropout: float = 0.1               # dropout in the temporal transformer
    activation: str = "gelu"           # feed-forward activation (gelu | relu)
    n_frames: int = 8                  # LAVIMO: l_v = 8 uniformly sampled frames


@dataclass
class ContrastiveLossConfig:
    kind: str = "soft_kl"              # soft_kl (LAVIMO eq. 1-6) | infonce (TMR, negative filtering)
    # LAVIMO eq. 6: pairs whose caption cosine similarity is >= epsilon keep it as target weight.
    epsilon: float = 0.8
    # How kept similarities become target weights: "cosine" (eq. 6, the kept cosine values) or
    # "binary" (1 for every kept pair). Rows are then divided by their sum; the diagonal is 1.
    target_weighting: str = "cosine"
    # TMR's filter threshold on (1 + cos) / 2, as in TMR's code: 0.8 drops pairs with cos > 0.6.
    infonce_filter_threshold: float = 0.8
    temperature_init: float = 0.07     # tau at the start (CLIP: 0.07)
    learn_temperature: bool = True     # False: tau stays at temperature_init
    temperature_min: float = 0.01     # clamp of the learnable tau (CLIP clamps 1/tau at 100)
    temperature_max: float = 1.0       # upper clamp of the learnable tau
    # Cross-rank negatives: "none" (local batch), "full" (global x global on every rank) or
    # "local" (local rows x global columns).
    gather: str = "local"
    pair_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # mt, mv, tv
    # One loss code in tiles of the logits: "dense" (one tile, O(rows x columns) memory),
    # "blockwise" (tiles of block_size: O(B d + block^2), for global batches of 10^4-10^5) or
    # "auto" (dense up to modeling.contrastive.AUTO_DENSE_MAX_COLUMNS columns, blockwise above).
    impl: str = "auto"
    block_size: int = 1024


@dataclass
class FusionDecoderConfig:
    n_heads: int = 8                   # heads of the fusion attention and the decoder
    n_layers: int = 6                  # motion decoder depth (TMR/TEMOS use 6)
    ff_dim: int = 1024                 # decoder feed-forward width
    dropout: float = 0.1               # dropout in fusion and decoder
    activation: str = "gelu"           # feed-forward activation (gelu | relu)


@dataclass
class RetrievalModelConfig:
    # motion encoder
    motion: MotionEncoderConfig = field(default_factory=MotionEncoderConfig)
    # text encoder
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    # video encoder
    video: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)
    # contrastive alignment
    loss: ContrastiveLossConfig = field(default_factory=ContrastiveLossConfig)
    # fusion attention + motion decoder
    fusion: FusionDecoderConfig = field(default_factory=FusionDecoderConfig)
    use_video: bool = True             # build the video encoder (tri-modal); False = 2-modal
    use_chronological_negatives: bool = True   # CAR: shuffled-event captions as extra text columns
    use_reconstruction: bool = True    # fusion attention + motion decoder (LAVIMO eq. 7-8)
    align_weight: float = 1.0          # weight of the alignment loss in the retrieval loss
    recon_weight: float = 0.1          # LAVIMO: lambda_recon = 0.1
    attention_backend: str = "auto"    # eager | sdpa | triton | auto, for every attention in the model


# MLP's variants: "mlp" = LP-Matcher + LP-Predictor on the motion encoder with the S-Enc (GCN);
# "mlp_s" = the same without S-Enc; "mlp_base" = no S-Enc, plain matcher, predicting part only.
VARIANTS = ("mlp", "mlp_s", "mlp_base")


def variant_uses_spatial_encoder(variant: str) -> bool:
    """Whether a variant implies the motion encoder's GCN S-Enc (MotionEncoderConfig.use_gcn)."""
    return variant == "mlp"


@dataclass
class LocalizationConfig:
    variant: str = "mlp_s"                # mlp | mlp_s | mlp_base (mlp needs motion.use_gcn=true)
    d_model: int = 256                    # MLP: d = 256
    n_sgpa_blocks: int = 4                # MLP: N_SGPA = 4
    n_heads: int = 8                   # attention heads in SGPA
    ff_dim: int = 1024                 # SGPA feed-forward width
    dropout: float = 0.1               # dropout in the head
    num_snippets: int = 256               # MLP: S = 256
    alpha_start: float = 0.8              # perturb-rate at the start of training
    alpha_end: float = 1.0                # ... rising linearly to this at the end
    flip_rate: float = 0.1                # beta: 0.1 BABEL, 0.2 HumanML3D (Restore)
    lambda_seq: float = 5.0               # Eq. 12 weights
    lambda_span: float = 1.0           # L_Span
    lambda_recover: float = 1.0        # L_Span^rec
    lambda_align: float = 1.0          # L_Align
    # L_Align's direction: "forward" = KL(P || P_rec), Eq. 11 as printed; "reverse" = KL(P_rec || P),
    # what the MLP authors' code computes
    alignment_kl: str = "forward"
    max_span_snippets: Optional[int] = None  # decoding: longest span in snippets (None = any)
    lp_matcher: Optional[bool] = None     # None = from variant
    lp_predictor: Optional[bool] = None   # None = from variant
    attention_backend: str = "auto"    # eager | sdpa | triton | auto


@dataclass
class TrimoModelConfig:
    # the retrieval model (encoders shared with localization)
    retrieval: RetrievalModelConfig = field(default_factory=RetrievalModelConfig)
    # the localization head
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)
    use_retrieval: bool = True         # contrastive (+ CAR negatives, + reconstruction per retrieval.*)
    use_localization: bool = True      # build and train the localization head
    retrieval_weight: float = 1.0      # weight of the retrieval loss in the joint loss
    localization_weight: float = 1.0   # weight of the localization loss in the joint loss
    # The 263-d feature definition the model reads ("trimo" | "humanml3d", the shard index's
    # motion_features); "" = taken from the training data when training starts. Saved with every
    # checkpoint and export; training and evaluation refuse data of another definition.
    motion_features: str = ""


# ================================================================ a training experiment

@dataclass
class RunConfig:
    name: str = "trimo"                # run name (logs, wandb)
    seed: int = 0                      # seed of weights, data order and every random draw
    output_dir: str = "runs/trimo"     # run directory: config, metrics, checkpoints, export
    max_steps: int = 1000              # optimizer steps of this run (where it stops)
    # A trained model (export, checkpoint or run directory) whose tensors start this run wherever
    # name and shape agree, e.g. a retrieval model's encoders under a new localization head;
    # "" = fresh initialization. A resumed run restores its own weights instead.
    init_from: str = ""


@dataclass
class ShardSetConfig:
    index: str = ""                    # shards.json (or its folder); "" = this task is off
    urls: Optional[str] = None         # None = the shards beside the index
    split: str = "train"               # keep samples whose meta.split is this ("" = all)
    batch_size: int = 32               # per rank
    min_frames: int = MIN_FRAMES       # shortest caption span kept (frames at 20 fps)
    max_frames: int = MAX_FRAMES       # longest caption span kept
    shuffle_buffer: int = 1000         # samples in the reader's shuffle buffer


@dataclass
class AugmentConfig:
    """Retrieval training augmentations (trainer/augment.py); all off by default."""
    mirror: float = 0.0                # probability of mirroring a sample (motion and left/right words)
    speed: float = 1.0                 # play each clip at a speed drawn log-uniformly from [1/speed, speed]
    noise: float = 0.0                 # Gaussian feature noise, in units of each feature's std


@dataclass
class DataConfig:
    # retrieval shard set
    retrieval: ShardSetConfig = field(default_factory=ShardSetConfig)
    # localization shard set (untrimmed motions)
    localization: ShardSetConfig = field(default_factory=lambda: ShardSetConfig(min_frames=20, max_frames=2000))
    # joint: every step runs both tasks and sums their losses; alternate: localization every
    # round(1 / localization_ratio) steps; random: localization with probability localization_ratio
    # (drawn from (seed, step), the same on every rank).
    mixing: str = "joint"              # how tasks share steps (see above)
    localization_ratio: float = 0.5    # share of localization steps (alternate, random)
    num_workers: int = 0               # DataLoader worker processes per rank
    load_video: bool = True            # read video.mp4 (when the model has video)
    video_size: int = 224              # frames are resized to this (px)
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
    augment: AugmentConfig = field(default_factory=AugmentConfig)   # retrieval samples only


@dataclass
class OptimConfig:
    lr: float = 1e-4                   # LAVIMO: 1e-4
    weight_decay: float = 0.01         # on weight matrices of linear maps only (trainer/optim.py)
    # AdamW betas
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8                  # AdamW epsilon
    grad_clip: float = 1.0             # max global grad norm; 0 = off
    grad_accum: int = 1                # micro-batches per optimizer step
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
    warmup_steps: int = 0              # linear warm-up from 0 (cosine, constant)
    hold_steps: int = 0                # steps at lr before the linear decay (linear)
    total_steps: Optional[int] = None  # the curve's horizon; None = run.max_steps
    final_lr: float = 1e-5             # lr at the curve's end
    step_size: int = 1000              # steps between decays (step)
    gamma: float = 0.5                 # decay factor (step)


@dataclass
class CheckpointConfig:
    every: int = 500                   # steps between checkpoints (also one at the end)
    keep_last: int = 3                 # checkpoints kept (besides best)


@dataclass
class LoggingConfig:
    every: int = 1                     # steps between metric records
    wandb: bool = True                 # log to wandb too
    wandb_project: str = "trimo"       # wandb project name
    wandb_mode: str = "offline"        # offline | online | disabled
    progress_bar: bool = True          # tqdm bar on the main process


@dataclass
class ValidationConfig:
    every: int = 0                     # steps between validations; 0 = off
    retrieval_index: str = ""          # shard sets holding the validation split ("" = off)
    localization_index: str = ""       # localization validation set ("" = off)
    split: str = "val"                 # the split validated on (never the test split)
    batch_size: int = 32               # per rank
    max_batches: int = 0               # 0 = the whole split
    metric: str = "val/score"          # higher is better; the best checkpoint is chosen on it


@dataclass
class ExperimentConfig:
    # name, seed, output, length
    run: RunConfig = field(default_factory=RunConfig)
    # shard sets and batching
    data: DataConfig = field(default_factory=DataConfig)
    # the model
    model: TrimoModelConfig = field(default_factory=TrimoModelConfig)
    # optimizer, clipping, precision
    optim: OptimConfig = field(default_factory=OptimConfig)
    # learning-rate curve
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # checkpoint cadence
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # metrics, wandb, progress
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # periodic validation
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
    aug = cfg.data.augment
    if not (0.0 <= aug.mirror <= 1.0 and aug.speed >= 1.0 and aug.noise >= 0.0):
        raise ConfigError(f"data.augment: mirror={aug.mirror} must be in [0, 1], speed={aug.speed} >= 1 "
                          f"and noise={aug.noise} >= 0")
    if cfg.data.caption_embedder not in ("minilm", "none"):
        raise ConfigError(f"data.caption_embedder={cfg.data.caption_embedder!r} must be 'minilm' or 'none'")
    if cfg.validation.split == "test":
        raise ConfigError("validation.split=test: the best checkpoint must be chosen on validation data, never on "
                          "test; use 'val' (test-split numbers come from launch/evaluate.py)")
    loc, motion = cfg.model.localization, cfg.model.retrieval.motion
    if loc.variant not in VARIANTS:
        raise ConfigError(f"model.localization.variant={loc.variant!r} must be one of {VARIANTS}")
    if cfg.model.use_localization and variant_uses_spatial_encoder(loc.variant) != motion.use_gcn:
        raise ConfigError(f"model.localization.variant={loc.variant} {'needs' if motion.use_gcn is False else 'excludes'} "
                          f"MLP's S-Enc: set model.retrieval.motion.use_gcn={str(not motion.use_gcn).lower()} "
                          "(mlp = with S-Enc; mlp_s, mlp_base = without)")
    d_text = cfg.model.retrieval.text.latent_dim
    if cfg.model.retrieval.motion.latent_dim != d_text:
        raise ConfigError("model.retrieval.motion.latent_dim and model.retrieval.text.latent_dim must be equal")


def load_experiment(files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> ExperimentConfig:
    cfg = load_config(ExperimentConfig, files, overrides)
    check_experiment(cfg)
    return cfg


# ================================================================ an evaluation

@dataclass
class EvalOptions:
    threshold: float = 0.95             # "All with threshold", on (cos + 1) / 2 (TMR; LAVIMO's paper: 0.8)
    assigned_threshold: float = 0.995   # Assigned protocol (MLP: BABEL 0.995, HumanML3D-Restore 0.8)
    dissimilar_size: int = 100         # items in the Dissimilar subset (TMR: 100)
    dissimilar_ids: Optional[list[str]] = None  # a fixed list (e.g. TMR's for HumanML3D) instead of the selection
    small_batch_size: int = 32         # TMR's small-batch protocol (32 items)
    small_batch_seed: int = 0          # seed of the small batches
    car_seed: int = 0                  # seed of the CAR shuffles
    corpus_k: int = 100                 # motions localized per query (MLP: 100 or 200)
    corpus_lambda: float = 5.0          # score = p_se * exp(lambda * r) (MLP: 5 or 10)
    corpus_ns: tuple[int, ...] = (10, 50, 100) # N of R@N and DCG@N
    corpus_ious: tuple[float, ...] = (0.5, 0.7) # IoU thresholds of corpus R@N
    candidates_per_motion: int = 5      # top spans of each retrieved motion that enter the corpus list
    chunk_s: float = 10.0              # chunk length for the corpus's motion scores (s)
    chunk_overlap: float = 0.9         # overlap of consecutive chunks
    pyramid: bool = True                # the temporal-pyramid baseline (slow by design)
    corpus: bool = True                 # corpus-level moment retrieval (every query against every motion)
    pyramid_min: int = 20              # shortest pyramid window (frames)
    pyramid_max: int = 200             # longest pyramid window (frames)
    pyramid_stride: int = 5            # stride of window starts and lengths (frames)
    batch_size: int = 32               # inference batch size (the least number of items of a batch)
    batch_frames: int = 16384          # frames per inference batch of motions (texts: a quarter of it in
                                       # tokens; head pairs: snippets + tokens); 0 = batch_size items
    num_plots: int = 4                  # localization curves and retrieval strips to draw
    strip_top_k: int = 5               # motions per retrieval strip plot
