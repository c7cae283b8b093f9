"""Motion encoder: 263-d frames -> frame features (B, T, d) and a pooled embedding (B, d).

MotionCLIP/LAVIMO: linear projection, a prepended [CLS] token, sinusoidal positions, a masked
transformer; the CLS output is the motion embedding e_m. Optionally MLP's S-Enc (GCN over the 22
joints of every frame) replaces the linear input path.

The encoder holds the model's one copy of the feature statistics (the retrieval shard set's mean/std,
buffers saved with every checkpoint and export; set them with `set_feature_stats`): `normalize` maps
raw features to the normalized ones the encoder reads, and the S-Enc, which needs the per-joint 12-d
representation of raw features, un-normalizes with the same buffers (`joint12`). A caller that
pools frames into snippets passes the S-Enc the pooled per-frame joint features (`joints`): root
rotation and position are integrated from velocities, and integrating snippet means instead of
frames would shrink the trajectory by frames per snippet.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from configs.schema import MotionEncoderConfig
from modeling.gcn import SpatialGCN, default_parents, skeleton_adjacency
from modeling.sequence import SequenceTransformer
from motion.features import FEATURE_DIM, FEATURE_GROUPS, features_to_joint12


def _default_joint12(features: torch.Tensor) -> torch.Tensor:
    return features_to_joint12(features)


class MotionEncoder(nn.Module):
    def __init__(self, cfg: MotionEncoderConfig, backend: str = "auto",
                 joint12_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 parents: list[int] | None = None):
        super().__init__()
        self.cfg = cfg
        self.gcn = None
        in_dim = cfg.n_feats
        if cfg.use_gcn:
            adjacency = skeleton_adjacency(parents if parents is not None else default_parents(),
                                           cfg.gcn_normalize_adjacency)
            self.gcn = SpatialGCN(cfg.joint_feats, cfg.gcn_dim, cfg.gcn_layers, adjacency)
            self.joint12_fn = joint12_fn or _default_joint12
            in_dim = cfg.gcn_dim
        self.register_buffer("feat_mean", torch.zeros(cfg.n_feats))
        self.register_buffer("feat_std", torch.ones(cfg.n_feats))
        self.transformer = SequenceTransformer(in_dim, cfg.latent_dim, cfg.n_layers, cfg.n_heads, cfg.ff_dim,
                                               cfg.dropout, cfg.activation, backend, pooling="cls")

    def set_feature_stats(self, mean, std) -> None:
        """The statistics raw motion is normalized with, (x - mean) / std.

        No feature is scaled up more than its group's average (FEATURE_GROUPS: the std of each
        dimension is at least its group's mean std, the value HumanML3D's group normalization
        gives every dimension): a dimension that hardly varies in the training data (the stiff
        joints of a synthetic corpus: rotation stds of 1e-5) would otherwise turn real motion's
        ordinary values into thousands of stds, far from anything the encoder saw (measured on
        real mocap against the demo corpus's statistics: rotations 26 stds off on average, 2.2
        with the floor). Features that never vary in any dimension of their group (std ~ 0) are
        only centred."""
        std = torch.as_tensor(std, dtype=torch.float64)
        if len(std) == FEATURE_DIM:
            floor = torch.zeros_like(std)
            for group in FEATURE_GROUPS.values():
                floor[group] = std[group].mean()
            std = torch.maximum(std, floor)
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=self.feat_mean.dtype))
        self.feat_std.copy_(torch.where(std < 1e-6, torch.ones_like(std), std).to(self.feat_std.dtype))

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        """Raw features -> normalized, in float32 (the encoder casts to its weights' dtype)."""
        return (motion.float() - self.feat_mean.float()) / self.feat_std.float()

    def joint12(self, motion: torch.Tensor) -> torch.Tensor:
        """Normalized features (B, T, 263) -> the S-Enc's per-joint view of the raw ones (B, T, 22, 12),
        in float32 whatever the weights' dtype."""
        return self.joint12_fn(motion.float() * self.feat_std.float() + self.feat_mean.float())

    def forward(self, motion: torch.Tensor, mask: torch.Tensor, joints: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """motion (B, T, 263) normalized, mask (B, T) True = real frame -> ((B, T, d), (B, d)).
        With the S-Enc, `joints` (B, T, 22, 12) replaces `joint12(motion)` (pooled snippets)."""
        if motion.shape[-1] != self.cfg.n_feats:
            raise ValueError(f"motion has {motion.shape[-1]} features per frame, the encoder expects {self.cfg.n_feats}")
        x = motion
        if self.gcn is not None:
            x = self.gcn(self.joint12(motion) if joints is None else joints, mask)
        return self.transformer(x, mask)
