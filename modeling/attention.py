"""The one attention function of trimo, and the transformer blocks built on it.

Every attention in the model (encoders, fusion attention, SGPA) calls `attention()`, so a
backend switch (`eager | sdpa | triton | auto`) changes all of them at once. Masks use one
convention throughout: `key_mask` is boolean (B, Lk), True where a key is a real token.
A query whose keys are all masked gets a zero output (never NaN).
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("auto", "eager", "sdpa", "triton")


def _resolve_backend(backend: str, device: torch.device, dropout_p: float = 0.0, causal: bool = False,
                     head_dim: int = 64, dtype: torch.dtype = torch.float32) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        # The fused kernel (with attention dropout, so in training too) has no causal mask, takes
        # head dims 16..128 in fp32/fp16/bf16, and is built
        # and tested for NVIDIA GPUs (a ROCm build also calls its device "cuda"): every other call
        # stays on SDPA.
        if (device.type == "cuda" and torch.version.hip is None and not causal
                and 16 <= head_dim <= 128 and dtype in (torch.float32, torch.float16, torch.bfloat16)
                and _triton_available()):
            return "triton"
        return "sdpa"
    return backend


# (device, dtype, head dim) of calls whose fused kernels did not fit and went to SDPA: warned once each.
_SDPA_FALLBACKS: set[tuple] = set()


def _fused_or_sdpa(fused, sdpa, q: torch.Tensor):
    """fused(), or sdpa() where the fused kernels cannot run on this GPU for q's dtype and head dim
    (`DoesNotFit`, raised before any kernel ran: no tile configuration fits its shared memory, or
    bf16 before sm_80), with one warning per (device, dtype, head dim), the things that decide it."""
    from modeling.kernels.triton_attention import DoesNotFit

    try:
        return fused()
    except DoesNotFit as err:
        shape = (str(q.device), q.dtype, q.shape[-1])
        if shape not in _SDPA_FALLBACKS:
            _SDPA_FALLBACKS.add(shape)
            warnings.warn(f"{err}: running SDPA for {q.dtype} attention with head dim {q.shape[-1]} on {q.device}",
                          RuntimeWarning, stacklevel=3)
        return sdpa()


def _triton_available() -> bool:
    try:
        from modeling.kernels import fused_attention  # noqa: F401
    except ImportError:
        return False
    return True


def eager_attention(q, k, v, key_mask=None, dropout_p: float = 0.0, causal: bool = False):
    """Reference implementation: softmax(q k^T / sqrt(d)) v, in the input dtype."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    allowed = _allowed(q, k, key_mask, causal)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    # A fully masked row would be softmax of all -inf: give it zero weights instead of NaN.
    probs = torch.softmax(scores.float(), dim=-1).nan_to_num(0.0).to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v)


def _allowed(q, k, key_mask, causal):
    """Boolean (B|1, 1, Lq|1, Lk) mask of allowed query-key pairs, or None if all are allowed."""
    allowed = None
    if key_mask is not None:
        allowed = key_mask[:, None, None, :].bool()
    if causal:
        lq, lk = q.shape[-2], k.shape[-2]
        tri = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        allowed = tri[None, None] if allowed is None else allowed & tri[None, None]
    return allowed


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    *,
    backend: str = "auto",
    dropout_p: float = 0.0,
    causal: bool = False,
) -> torch.Tensor:
    """Scaled dot-product attention. q: (B, H, Lq, D); k, v: (B, H, Lk, D) -> (B, H, Lq, D)."""
    backend = _resolve_backend(backend, q.device, dropout_p, causal, q.shape[-1], q.dtype)
    if backend == "eager":
        return eager_attention(q, k, v, key_mask, dropout_p, causal)
    if backend == "triton":
        from modeling.kernels import fused_attention

        if causal:
            raise NotImplementedError("the fused Triton kernel has no causal mask; use backend='sdpa'")
        return _fused_or_sdpa(lambda: fused_attention(q, k, v, key_mask, dropout_p),
                              lambda: attention(q, k, v, key_mask, backend="sdpa", dropout_p=dropout_p), q)
    allowed = _allowed(q, k, key_mask, causal)
    if allowed is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    # SDPA returns NaN for fully masked rows: let such rows see every key, then zero them.
    empty = ~allowed.any(dim=-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | empty, dropout_p=dropout_p)
    return out.masked_fill(empty, 0.0)


def multi_source_attention(q, sources, reduce: str = "sum", *, backend: str = "auto", dropout_p: float = 0.0):
    """One query tensor (or one per source) against several (k, v, key_mask) sources, each with
    its own softmax; returns their sum (reduce="sum") or the list of outputs ("none"). On CUDA the
    fused Triton kernel does all sources in one launch; elsewhere one `attention()` per source."""
    if reduce not in ("sum", "none"):
        raise ValueError(f"reduce must be 'sum' or 'none', got {reduce!r}")
    queries = list(q) if isinstance(q, (list, tuple)) else [q] * len(sources)
    first = queries[0]

    def per_source(inner: str):
        outs = [attention(qs, k, v, m, backend=inner, dropout_p=dropout_p) for qs, (k, v, m) in zip(queries, sources)]
        return sum(outs) if reduce == "sum" else outs

    if _resolve_backend(backend, first.device, dropout_p, False, first.shape[-1], first.dtype) == "triton":
        from modeling.kernels import fused_multi_source_attention

        return _fused_or_sdpa(lambda: fused_multi_source_attention(q, sources, reduce, dropout_p),
                              lambda: per_source("sdpa"), first)
    return per_source("sdpa" if backend in ("auto", "triton") else backend)


class MultiHeadAttention(nn.Module):
    """Multi-head attention over `attention()`. Inputs and outputs are (B, L, d_model)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, backend: str = "auto",
                 d_kv: int | None = None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        d_kv = d_model if d_kv is None else d_kv
        self.n_heads, self.dropout, self.backend = n_heads, dropout, backend
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_kv, d_model)
        self.v_proj = nn.Linear(d_kv, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, -1).transpose(1, 2)

    @property
    def dropout_p(self) -> float:
        return self.dropout if self.training else 0.0

    def project(self, query, key=None, value=None):
        """Per-head q, k, v (B, H, L, D); `merge` maps an attention output back. Together they
        let several attentions share one `multi_source_attention` call."""
        key = query if key is None else key
        value = key if value is None else value
        return self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))

    def merge(self, out):
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))

    def forward(self, query, key=None, value=None, key_mask=None, causal: bool = False):
        q, k, v = self.project(query, key, value)
        return self.merge(attention(q, k, v, key_mask, backend=self.backend, dropout_p=self.dropout_p, causal=causal))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu"):
        act = {"gelu": nn.GELU(), "relu": nn.ReLU()}[activation]
        super().__init__(nn.Linear(d_model, d_ff), act, nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class TransformerEncoderLayer(nn.Module):
    """Pre-norm self-attention block; padded positions are never attended to."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "gelu", backend: str = "auto"):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout, backend)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, key_mask=None):
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, key_mask=key_mask))
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerDecoderLayer(nn.Module):
    """Pre-norm block: self-attention over the queries, then cross-attention to a memory."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "gelu", backend: str = "auto"):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, backend)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout, backend)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory, x_mask=None, memory_mask=None):
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, key_mask=x_mask))
        x = x + self.drop(self.cross_attn(self.norm2(x), memory, key_mask=memory_mask))
        return x + self.drop(self.ff(self.norm3(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1,
                 activation: str = "gelu", backend: str = "auto"):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, activation, backend) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x, key_mask=None):
        for layer in self.layers:
            x = layer(x, key_mask)
        return self.norm(x)
