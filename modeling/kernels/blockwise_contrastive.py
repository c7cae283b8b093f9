"""Exact contrastive losses that never hold the B x B similarity matrix (peak memory O(B * d)).

Same definitions as `modeling.contrastive` (LAVIMO soft-target KL, TMR filtered InfoNCE, CAR
chronological negatives as extra columns of the rows -> cols softmax only); read its docstring for
the equations. Here the logits are visited in (block x block) tiles:

- forward: per row, a running log-sum-exp over all columns, and for soft targets the row sums of
  the target weights (Z_i), of w_ij * logit_ij and of w_ij log w_ij, which give
  KL(q_i || p_i) = sum_j w log w / Z - log Z - sum_j w * logit / Z + lse_i with q_ij = w_ij / Z_i;
  InfoNCE is lse_i - logit_i,positive. Only (R,) statistics are kept.
- backward (custom autograd): dL_i/dlogit_ij = g_i (p_ij - q_ij), with p recomputed from the saved
  lse tile by tile; the gradients of rows, columns, negatives and the temperature scale are sums of
  tile products. Sentence similarities (targets, filtering) are recomputed from the caption
  embeddings in each tile instead of being passed as a B x B matrix.

Cost: the forward computes every tile once and the backward twice (recompute + two matmuls), like
FlashAttention; memory is the inputs, their gradients, and one tile.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from configs.schema import ContrastiveLossConfig

KINDS = ("soft_kl", "infonce")


def _tile(rows, cols, cap_rows, cap_cols, positive, c0, is_extra, scale, cfg):
    """Logits (cosine * scale, dropped columns at -inf), cosines and target weights of one tile."""
    cos = rows @ cols.T
    logits = cos * scale
    weights = torch.zeros_like(cos)
    if not is_extra:
        if cap_rows is not None:
            sim = cap_rows @ cap_cols.T
            if cfg.kind == "soft_kl":
                kept = sim >= cfg.epsilon
                weights = torch.where(kept, sim if cfg.target_weighting == "cosine" else torch.ones_like(sim), weights)
            else:
                drop = (1.0 + sim) / 2.0 > cfg.infonce_filter_threshold
        # The true pair: target weight 1 (soft targets, one-hot for InfoNCE) and never filtered.
        local = positive - c0
        hit = (local >= 0) & (local < cols.shape[0])
        hit_rows = hit.nonzero().squeeze(1)
        weights[hit_rows, local[hit_rows]] = 1.0
        if cap_rows is not None and cfg.kind == "infonce":
            drop[hit_rows, local[hit_rows]] = False
            logits = logits.masked_fill(drop, float("-inf"))
    return logits, cos, weights


def _column_blocks(cols, extra, block):
    """(first column index, columns, is_extra) over the true columns, then the negatives."""
    for c0 in range(0, cols.shape[0], block):
        yield c0, cols[c0:c0 + block], False
    if extra is not None:
        for e0 in range(0, extra.shape[0], block):
            yield cols.shape[0] + e0, extra[e0:e0 + block], True


class _BlockwiseDirection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, cols, extra, scale, positive, cap_rows, cap_cols, cfg, block):
        n_rows = rows.shape[0]
        lse = torch.full((n_rows,), float("-inf"), dtype=rows.dtype, device=rows.device)
        z = torch.zeros_like(lse)
        w_logit = torch.zeros_like(lse)
        w_log_w = torch.zeros_like(lse)
        with torch.no_grad():
            for r0 in range(0, n_rows, block):
                rs = slice(r0, r0 + block)
                cap_r = cap_rows[rs] if cap_rows is not None else None
                for c0, cb, is_extra in _column_blocks(cols, extra, block):
                    cap_c = cap_cols[c0:c0 + block] if cap_cols is not None and not is_extra else None
                    logits, _, w = _tile(rows[rs], cb, cap_r, cap_c, positive[rs], c0, is_extra, scale, cfg)
                    lse[rs] = torch.logaddexp(lse[rs], torch.logsumexp(logits, dim=1))
                    if cfg.kind == "soft_kl":
                        z[rs] += w.sum(1)
                        w_logit[rs] += (w * logits).sum(1)
                        w_log_w[rs] += torch.xlogy(w, w).sum(1)
            if cfg.kind == "soft_kl":
                loss = w_log_w / z - torch.log(z) - w_logit / z + lse
            else:
                loss = lse - (rows * cols[positive]).sum(1) * scale
        ctx.save_for_backward(rows, cols, extra, scale, positive, cap_rows, cap_cols, lse, z)
        ctx.cfg, ctx.block = cfg, block
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        rows, cols, extra, scale, positive, cap_rows, cap_cols, lse, z = ctx.saved_tensors
        cfg, block = ctx.cfg, ctx.block
        d_rows, d_cols = torch.zeros_like(rows), torch.zeros_like(cols)
        d_extra = torch.zeros_like(extra) if extra is not None else None
        d_scale = torch.zeros((), dtype=rows.dtype, device=rows.device)
        for r0 in range(0, rows.shape[0], block):
            rs = slice(r0, r0 + block)
            cap_r = cap_rows[rs] if cap_rows is not None else None
            for c0, cb, is_extra in _column_blocks(cols, extra, block):
                cap_c = cap_cols[c0:c0 + block] if cap_cols is not None and not is_extra else None
                logits, cos, w = _tile(rows[rs], cb, cap_r, cap_c, positive[rs], c0, is_extra, scale, cfg)
                target = w / z[rs, None] if cfg.kind == "soft_kl" else w
                g = grad_loss[rs, None] * (torch.exp(logits - lse[rs, None]) - target)
                d_rows[rs] += (g @ cb) * scale
                d_cb = (g.T @ rows[rs]) * scale
                if is_extra:
                    e0 = c0 - cols.shape[0]
                    d_extra[e0:e0 + block] += d_cb
                else:
                    d_cols[c0:c0 + block] += d_cb
                d_scale += (g * cos).sum()
        return d_rows, d_cols, d_extra, d_scale.reshape(scale.shape), None, None, None, None, None


def blockwise_direction_loss(rows: torch.Tensor, cols: torch.Tensor, scale: torch.Tensor,
                             cfg: ContrastiveLossConfig, positive_index: torch.Tensor | None = None,
                             caption_rows: torch.Tensor | None = None, caption_cols: torch.Tensor | None = None,
                             extra_cols: torch.Tensor | None = None, block_size: int = 1024) -> torch.Tensor:
    """Per-row losses (R,) of the rows -> cols softmax, equal to `modeling.contrastive.direction_loss`
    with sent_sim = caption_rows @ caption_cols.T. rows (R, d), cols (C, d), extra_cols (K, d) are
    L2-normalized embeddings; caption_* are L2-normalized sentence embeddings (no gradient) or None;
    positive_index (R,) is the true column of each row (default: row i <-> column i)."""
    if cfg.kind not in KINDS:
        raise ValueError(f"loss.kind must be one of {KINDS}, got {cfg.kind!r}")
    if (caption_rows is None) != (caption_cols is None):
        raise ValueError("give both caption_rows and caption_cols (sentence embeddings of rows and columns) or neither")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if positive_index is None:
        if rows.shape[0] > cols.shape[0]:
            raise ValueError(f"{rows.shape[0]} rows but {cols.shape[0]} columns: give positive_index")
        positive_index = torch.arange(rows.shape[0], device=rows.device)
    scale = torch.as_tensor(scale, dtype=rows.dtype, device=rows.device)
    if extra_cols is not None and extra_cols.shape[0] == 0:
        extra_cols = None
    caps = [c.detach().to(rows.dtype) if c is not None else None for c in (caption_rows, caption_cols)]
    return _BlockwiseDirection.apply(rows, cols, extra_cols, scale, positive_index, *caps, cfg, block_size)


def blockwise_pair_loss(x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, cfg: ContrastiveLossConfig,
                        caption_emb: torch.Tensor | None = None, negatives: torch.Tensor | None = None,
                        block_size: int = 1024) -> torch.Tensor:
    """Symmetric loss of one modality pair on one process, sample i of x paired with sample i of y:
    what `ContrastiveAlignment` reports as `align_xy` (gather "none", every sample present), without
    any B x B matrix. x, y (B, d) raw embeddings (normalized here, half precision compared in fp32);
    caption_emb (B, e) sentence embeddings for soft targets / filtering; negatives (K, d) CAR texts,
    extra columns of the x -> y softmax only (so x is the motion and y the text)."""
    if x.shape != y.shape:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must both be (B, d)")
    precise = (lambda t: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t)
    x, y = F.normalize(precise(x), dim=-1), F.normalize(precise(y), dim=-1)
    cap = F.normalize(caption_emb.detach().float(), dim=-1).to(x.dtype) if caption_emb is not None else None
    neg = F.normalize(precise(negatives), dim=-1) if negatives is not None else None
    forward_dir = blockwise_direction_loss(x, y, scale, cfg, None, cap, cap, neg, block_size)
    backward_dir = blockwise_direction_loss(y, x, scale, cfg, None, cap, cap, None, block_size)
    pair = (forward_dir.sum() + backward_dir.sum()) / x.shape[0]
    return pair / 2 if cfg.kind == "infonce" else pair
