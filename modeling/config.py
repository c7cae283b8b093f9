"""Typed configuration of the retrieval model (LAVIMO + CAR); defaults are the papers' values.

One dataclass per component. Fields use only OmegaConf-supported types so that the trainer can
compose them into its structured ExperimentConfig and override them from the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MotionEncoderConfig:
    n_feats: int = 263                 # HumanML3D feature size per frame
    latent_dim: int = 512              # LAVIMO: C = 512
    n_layers: int = 6                  # LAVIMO: 6-layer transformer encoder
    n_heads: int = 8
    ff_dim: int = 1024
    dropout: float = 0.1
    activation: str = "gelu"
    # MLP's S-Enc in front of the transformer: L layers of BN(tanh(A H W)), mean-pooled over joints.
    use_gcn: bool = False
    gcn_layers: int = 7                # MLP: L = 7
    gcn_dim: int = 64
    n_joints: int = 22
    joint_feats: int = 12              # MLP: d_p = 12 (6D rotation + position + velocity)
    gcn_normalize_adjacency: bool = False  # True: D^-1/2 (A+I) D^-1/2 instead of the binary A+I


@dataclass
class TextEncoderConfig:
    # Local directory or hub name for AutoModel; "" = the packaged all-MiniLM-L6-v2.
    backbone: str = ""
    mode: str = "full"                 # frozen | lora | full  (LAVIMO fine-tunes DistilBERT)
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    # Modules LoRA wraps; empty = picked from the backbone type (query/value projections).
    lora_target_modules: list[str] = field(default_factory=list)
    latent_dim: int = 512
    # LAVIMO: CLS + temporal transformer "following the architecture of the motion encoder".
    n_layers: int = 6
    n_heads: int = 8
    ff_dim: int = 1024
    dropout: float = 0.1
    activation: str = "gelu"
    max_tokens: int = 77


@dataclass
class VideoEncoderConfig:
    # Local directory of a CLIP (vision) checkpoint; "" = build an untrained tower from the fields below.
    backbone: str = ""
    mode: str = "full"                 # frozen | full
    # Used only when backbone is "": a CLIP vision tower built from config (ViT-B/32 shape by default).
    clip_hidden_size: int = 768
    clip_layers: int = 12
    clip_heads: int = 12
    clip_intermediate_size: int = 3072
    clip_image_size: int = 224
    clip_patch_size: int = 32
    latent_dim: int = 512
    n_layers: int = 6                  # LAVIMO: 6-layer temporal transformer
    n_heads: int = 8
    ff_dim: int = 1024
    dropout: float = 0.1
    activation: str = "gelu"
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
    temperature_init: float = 0.07
    learn_temperature: bool = True
    temperature_min: float = 0.01     # clamp of the learnable tau (CLIP clamps 1/tau at 100)
    temperature_max: float = 1.0
    # Cross-rank negatives: "none" (local batch), "full" (global x global on every rank) or
    # "local" (local rows x global columns).
    gather: str = "local"
    pair_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # mt, mv, tv


@dataclass
class FusionDecoderConfig:
    n_heads: int = 8
    n_layers: int = 6                  # motion decoder depth (TMR/TEMOS use 6)
    ff_dim: int = 1024
    dropout: float = 0.1
    activation: str = "gelu"


@dataclass
class RetrievalModelConfig:
    motion: MotionEncoderConfig = field(default_factory=MotionEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    video: VideoEncoderConfig = field(default_factory=VideoEncoderConfig)
    loss: ContrastiveLossConfig = field(default_factory=ContrastiveLossConfig)
    fusion: FusionDecoderConfig = field(default_factory=FusionDecoderConfig)
    use_video: bool = True             # build the video encoder (tri-modal); False = 2-modal
    use_chronological_negatives: bool = True   # CAR: shuffled-event captions as extra text columns
    use_reconstruction: bool = True    # fusion attention + motion decoder (LAVIMO eq. 7-8)
    align_weight: float = 1.0
    recon_weight: float = 0.1          # LAVIMO: lambda_recon = 0.1
    attention_backend: str = "auto"    # eager | sdpa | triton | auto, for every attention in the model
