"""LAVIMO's feature fusion (eq. 7) and the motion decoder trained with MSE (eq. 8).

Fusion: the motion embedding e_m (one token per sample) is the query of three attentions, over the
motion frame features, the text token features and the video frame features; their outputs are
summed (a modality missing from the batch, or from a sample, drops its term). Keeping the query a single vector keeps
the reconstruction a bottleneck through the joint embedding, as in TEMOS/TMR decoders.
Decoder (TEMOS/TMR style, "conditioned on the duration l_m"): l_m sinusoidal position queries
cross-attend to the fused token through a transformer decoder, then a linear layer gives frames.
"""
from __future__ import annotations

import torch
from torch import nn

from modeling.attention import MultiHeadAttention, TransformerDecoderLayer, multi_source_attention
from configs.schema import FusionDecoderConfig
from modeling.sequence import sinusoidal_positions

SOURCES = ("motion", "text", "video")


class FusionAttention(nn.Module):
    def __init__(self, latent_dim: int, n_heads: int, dropout: float = 0.0, backend: str = "auto"):
        super().__init__()
        self.attn = nn.ModuleDict({s: MultiHeadAttention(latent_dim, n_heads, dropout, backend) for s in SOURCES})

    def forward(self, motion_emb: torch.Tensor,
                features: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """motion_emb (B, d); features {source: (tokens (B, L, d), mask (B, L))} -> fused (B, 1, d)."""
        if "motion" not in features:
            raise ValueError("fusion attention needs the motion features (its queries attend to them first)")
        query = motion_emb[:, None]
        present = [s for s in SOURCES if s in features]
        queries, sources = [], []
        for source in present:
            tokens, mask = features[source]
            q, k, v = self.attn[source].project(query, tokens)
            queries.append(q)
            sources.append((k, v, mask.bool()))
        # One call for all sources (the fused multi-source kernel on CUDA); each keeps its projections.
        first = self.attn[present[0]]
        outs = multi_source_attention(queries, sources, "none", backend=first.backend, dropout_p=first.dropout_p)
        fused = None
        for source, out in zip(present, outs):
            # a sample without this modality (all keys masked) gets no term, not the output bias
            has_keys = features[source][1].bool().any(dim=1)[:, None, None].to(query.dtype)
            term = self.attn[source].merge(out) * has_keys
            fused = term if fused is None else fused + term
        return fused


class MotionDecoder(nn.Module):
    def __init__(self, latent_dim: int, n_feats: int, cfg: FusionDecoderConfig, backend: str = "auto"):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(latent_dim, cfg.n_heads, cfg.ff_dim, cfg.dropout, cfg.activation, backend)
            for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(latent_dim)
        self.out = nn.Linear(latent_dim, n_feats)

    def forward(self, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """memory (B, M, d); mask (B, T) real frames -> motion (B, T, n_feats), zero on padding."""
        b, t = mask.shape
        x = sinusoidal_positions(t, memory.shape[-1], memory.device, memory.dtype).expand(b, t, -1)
        for layer in self.layers:
            x = layer(x, memory, x_mask=mask.bool())
        return self.out(self.norm(x)) * mask[..., None].to(memory.dtype)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real frames (mask (B, T)) and all features."""
    weights = mask.to(pred.dtype)[..., None]
    return (((pred - target) ** 2) * weights).sum() / (weights.sum() * pred.shape[-1]).clamp_min(1.0)
