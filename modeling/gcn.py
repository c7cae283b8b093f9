"""MLP's spatial encoder (S-Enc): a GCN over the 22-joint skeleton applied to every frame.

H^(l+1) = BN(tanh(A H^(l) W^(l))), L layers, then a mean over joints gives one vector per frame
(MLP eq. 1). A is the binary bone adjacency; we add self-loops (A + I) so that a joint keeps its
own features through the product, which the binary bone graph alone would drop. Batch norm
statistics come from real (unpadded) frames only.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
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
    """The 22-joint SMPL parents from shards.skeleton (the one skeleton definition of trimo)."""
    from shards.skeleton import PARENTS

    return [int(p) if p is not None else -1 for p in PARENTS]


class SpatialGCN(nn.Module):
    """(B, T, J, d_p) joint features + frame mask (B, T) -> (B, T, d) per-frame spatial features."""

    def __init__(self, in_dim: int, dim: int, n_layers: int, adjacency: torch.Tensor):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"the spatial GCN needs at least one layer, got {n_layers}")
        self.register_buffer("adjacency", adjacency.float(), persistent=False)
        dims = [in_dim] + [dim] * n_layers
        self.weights = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(n_layers))

    def forward(self, joints: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, j, _ = joints.shape
        if j != self.adjacency.shape[0]:
            raise ValueError(f"the GCN was built for {self.adjacency.shape[0]} joints, the input has {j}")
        h = joints[mask.bool()]                                   # (N_real_frames, J, d_p)
        for weight, norm in zip(self.weights, self.norms):
            h = torch.tanh(torch.matmul(self.adjacency.to(h.dtype), weight(h)))   # A H W
            h = norm(h.transpose(1, 2)).transpose(1, 2)            # BN over channels
        out = joints.new_zeros(b, t, h.shape[-1])
        out[mask.bool()] = h.mean(dim=1)                           # mean over joints
        return out
