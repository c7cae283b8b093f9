"""MLP's spatial encoder (S-Enc): a GCN over the 22-joint skeleton applied to every frame.

A graph-convolution layer is H' = BN(tanh(A H W + b)) (MLP eq. 1), L layers, then a mean over
joints gives one vector per frame. As in the MLP authors' S-Enc, the first layer maps the joint
features to the GCN width and the other L - 1 come in residual blocks of two layers
(H <- H + layer(layer(H)); a last odd layer is a residual block of one), the adjacency is learned,
starting from the bone graph, and the weights start xavier-uniform with zero bias (against a
plain stack with a fixed graph, +7 mIoU for MLP on the demo corpus; see the README). We add
self-loops (A + I) so that a joint keeps its own features through the product, which the binary
bone graph alone would drop. The input H^(0) is batch-normalized per joint and channel first (as
the authors' S-Enc and ST-GCN do): the raw per-joint features differ in scale by 10-100x
(velocities ~0.01, positions ~1, a long take's integrated root position tens of metres). Batch
norm statistics come from real (unpadded) frames only.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def skeleton_adjacency(parents: Sequence[int], normalize: bool = False) -> torch.Tensor:
    """(J, J) float adjacency with self-loops from a parent list (root's parent < 0)."""
    n = len(parents)
    adj = torch.eye(n)
    for child, parent in enumerate(parents):
        if parent is not None and parent >= 0:
            adj[child, parent] = adj[parent, child] = 1.0
    if normalize:
        d = adj.sum(1).rsqrt()
        adj = d[:, None] * adj * d[None, :]
    return adj


def default_parents() -> list[int]:
    """The 22-joint SMPL parents from motion.skeleton (the one skeleton definition of trimo)."""
    from motion.skeleton import PARENTS

    return [int(p) if p is not None else -1 for p in PARENTS]


class Float32BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d computed in float32 whatever the dtype of input and weights: DeepSpeed's bf16
    casts the affine weights but keeps the running statistics in float32, a mix BatchNorm refuses
    (and statistics of bf16 activations would be coarse). Same parameters and state as BatchNorm1d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        out = F.batch_norm(x.float(), self.running_mean, self.running_var, self.weight.float(), self.bias.float(),
                           self.training, self.momentum, self.eps)
        return out.to(x.dtype)


class SpatialGCN(nn.Module):
    """(B, T, J, d_p) joint features + frame mask (B, T) -> (B, T, d) per-frame spatial features."""

    def __init__(self, in_dim: int, dim: int, n_layers: int, adjacency: torch.Tensor):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"the spatial GCN needs at least one layer, got {n_layers}")
        self.adjacency = nn.Parameter(adjacency.float().clone())   # learned, starting from A + I
        self.input_norm = Float32BatchNorm1d(adjacency.shape[0] * in_dim)
        dims = [in_dim] + [dim] * n_layers
        self.weights = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(Float32BatchNorm1d(dim) for _ in range(n_layers))
        for layer in self.weights:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _layer(self, i: int, h: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(torch.matmul(self.adjacency.to(h.dtype), self.weights[i](h)))   # A H W + b
        return self.norms[i](h.transpose(1, 2)).transpose(1, 2)                      # BN over channels

    def forward(self, joints: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, j, _ = joints.shape
        if j != self.adjacency.shape[0]:
            raise ValueError(f"the GCN was built for {self.adjacency.shape[0]} joints, the input has {j}")
        h = joints[mask.bool()]                                    # (N_real_frames, J, d_p)
        h = self.input_norm(h.flatten(1)).view_as(h).to(self.weights[0].weight.dtype)
        h = self._layer(0, h)
        for i in range(1, len(self.weights), 2):                   # residual blocks of two layers
            block = self._layer(i, h)
            if i + 1 < len(self.weights):
                block = self._layer(i + 1, block)
            h = h + block
        out = h.new_zeros(b, t, h.shape[-1])
        out[mask.bool()] = h.mean(dim=1)                           # mean over joints
        return out
