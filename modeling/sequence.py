"""The sequence transformer shared by the three encoders: projection, optional CLS, positions.

Motion (MotionCLIP-style), the text encoder's temporal transformer and the video encoder's temporal
transformer all are "project to d, maybe prepend a learned [CLS], add sinusoidal positions, run a
masked transformer"; they differ only in pooling (CLS output or masked mean).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from modeling.attention import TransformerEncoder


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) fixed sin/cos table of "Attention is all you need"; any length, no buffer."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table.to(dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, L, d) over the positions where mask (B, L) is True; zero for empty rows."""
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class SequenceTransformer(nn.Module):
    """x (B, L, in_dim), mask (B, L) -> (tokens (B, L, d), pooled (B, d)).

    pooling="cls": a learned token is prepended and its output is the pooled vector;
    pooling="mean": the masked mean of the outputs.
    """

    def __init__(self, in_dim: int, latent_dim: int, n_layers: int, n_heads: int, ff_dim: int,
                 dropout: float, activation: str, backend: str, pooling: str = "cls"):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.proj = nn.Linear(in_dim, latent_dim)
        self.cls = nn.Parameter(torch.randn(1, 1, latent_dim) * 0.02) if pooling == "cls" else None
        self.drop = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(n_layers, latent_dim, n_heads, ff_dim, dropout, activation, backend)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Inputs come in float32 (features, backbone outputs); the first learned layer sets the
        # compute dtype (bf16 when DeepSpeed holds the weights in bf16).
        h = self.proj(x.to(self.proj.weight.dtype))
        mask = mask.bool()
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1).to(h.dtype), h], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype)
        h = self.encoder(self.drop(h), key_mask=mask)
        if self.cls is not None:
            return h[:, 1:], h[:, 0]
        return h, masked_mean(h, mask)
