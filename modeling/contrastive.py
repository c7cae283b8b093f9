"""Contrastive losses of trimo: LAVIMO's soft-target KL alignment, TMR's filtered InfoNCE, and
CAR's chronological negatives, over the local or the global (all ranks) batch.

Notation: rows are queries, columns candidates; logits = cos(row, col) / tau.

LAVIMO (eq. 1-6). For each modality pair (x, y) present, L^xy = KL(x->y) + KL(y->x), and
L_align = sum over pairs (eq. 1, optional per-pair weights). Predicted rows are softmaxes of the
logits (eq. 3-4). Targets (eq. 6): with s_ij the cosine similarity of the captions' sentence
embeddings, w_ij = s_ij if s_ij >= epsilon else 0 ("cosine"; or 1 for "binary"); the true pair's
weight is set to 1 (its caption is its own); then each row is divided by its sum, so each target row
is a distribution. The y->x direction uses the transposed similarities (eq. 2's S_target^T).
"KL(S_pred, S_target)" is read as the divergence of the prediction from the target distribution,
KL(target || pred) = sum_j q_ij (log q_ij - log p_ij) with 0 log 0 = 0, averaged over rows; it is
the only finite reading when targets contain zeros (it is what `F.kl_div(log p, q)` computes).

TMR (`kind="infonce"`): cross-entropy with the true column as label, in both directions, averaged
(1/2N as in TMR/CAR eq. 1); columns j != true whose captions are near duplicates,
(1 + s_ij) / 2 > threshold (TMR's rescaled threshold), are removed from the softmax.

CAR (eq. 3-5): K event-shuffled captions add K text columns, N x (N + K). They appear only in the
motion->text softmax (every motion row sees all K); text->motion rows span the N motions only.
With soft targets the shuffled columns get target mass 0 even when their sentence similarity to the
true caption is high (same words, other order: exactly the pairs they must push apart), so they
only enter the normalizer of p; with InfoNCE they are never filtered.

Global batch (`gather`): "full" computes the global x global losses on every rank; "local" computes
local rows x global columns; in both, embeddings are gathered with gradients and the trainer's
usual gradient averaging over ranks gives the single-process gradient. Every rank must have the
same batch size B and the same modalities at a step (each gather is a collective).

One implementation, in tiles (`loss.impl`). The logits are visited in (block x block) tiles; only
per-row statistics are kept: a running log-sum-exp, and for soft targets the row sums of the target
weights (Z_i), of w_ij * logit_ij and of w_ij log w_ij, which give
KL(q_i || p_i) = sum_j w log w / Z - log Z - sum_j w * logit / Z + lse_i (q_ij = w_ij / Z_i);
InfoNCE is lse_i - logit_i,positive. The backward (a custom autograd function) recomputes each tile:
dL_i/dlogit_ij = g_i (p_ij - q_ij). Caption similarities are recomputed per tile from the gathered
caption embeddings, never held as a global x global matrix. "dense" is one tile (memory O(rows x
columns)); "blockwise" tiles of `loss.block_size` keep memory at O(B d +
block^2); "auto" is dense up to AUTO_DENSE_MAX_COLUMNS columns, blockwise above.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from configs.schema import ContrastiveLossConfig
from modeling.distributed import (gather_no_grad, gather_varlen_with_grad, gather_with_grad, rank_and_world,
                                  sum_over_ranks)

KINDS = ("soft_kl", "infonce")
IMPLS = ("auto", "dense", "blockwise")
PAIRS = (("motion", "text"), ("motion", "video"), ("text", "video"))
# "auto" uses one tile up to this many columns (global batch + negatives). Measured with
# `trimo-bench-contrastive speed`: tiles of 1024 are as fast as one tile at 2,048 and faster above.
AUTO_DENSE_MAX_COLUMNS = 2048


def _tile(rows, cols, cap_rows, cap_cols, positive, c0, is_extra, scale, cfg):
    """Logits (cosine * scale, filtered columns at -inf), cosines and target weights of one tile;
    `positive` holds each row's true column in global column numbering, c0 is the tile's first."""
    cos = rows @ cols.T
    logits = cos * scale
    weights = torch.zeros_like(cos)
    if is_extra:      # chronological negatives: target mass 0, never filtered
        return logits, cos, weights
    if cap_rows is not None:
        sim = cap_rows @ cap_cols.T
        if cfg.kind == "soft_kl":
            kept = sim >= cfg.epsilon
            weights = torch.where(kept, sim if cfg.target_weighting == "cosine" else torch.ones_like(sim), weights)
        else:
            drop = (1.0 + sim) / 2.0 > cfg.infonce_filter_threshold
    # The true pair: target weight 1 (soft targets; one-hot for InfoNCE), never filtered.
    in_tile = positive - c0
    hit = ((in_tile >= 0) & (in_tile < cols.shape[0])).nonzero().squeeze(1)
    weights[hit, in_tile[hit]] = 1.0
    if cap_rows is not None and cfg.kind == "infonce":
        drop[hit, in_tile[hit]] = False
        logits = logits.masked_fill(drop, float("-inf"))
    return logits, cos, weights


def _column_tiles(cols, extra, block):
    """(first column index, columns, is_extra) over the true columns, then the negatives."""
    for c0 in range(0, cols.shape[0], block):
        yield c0, cols[c0:c0 + block], False
    if extra is not None:
        for e0 in range(0, extra.shape[0], block):
            yield cols.shape[0] + e0, extra[e0:e0 + block], True


class _TiledDirection(torch.autograd.Function):
    """Per-row losses of one direction; see the module docstring. Runs in the inputs' precision
    with autocast off: logits / tau in bf16 would lose the ranking the loss is about."""

    @staticmethod
    def forward(ctx, rows, cols, extra, scale, positive, cap_rows, cap_cols, cfg, block):
        n_rows = rows.shape[0]
        lse = torch.full((n_rows,), float("-inf"), dtype=rows.dtype, device=rows.device)
        z, w_logit, w_log_w = torch.zeros_like(lse), torch.zeros_like(lse), torch.zeros_like(lse)
        with torch.autocast(rows.device.type, enabled=False):
            for r0 in range(0, n_rows, block):
                rs = slice(r0, r0 + block)
                cap_r = cap_rows[rs] if cap_rows is not None else None
                for c0, tile_cols, is_extra in _column_tiles(cols, extra, block):
                    cap_c = cap_cols[c0:c0 + block] if cap_r is not None and not is_extra else None
                    logits, _, w = _tile(rows[rs], tile_cols, cap_r, cap_c, positive[rs], c0, is_extra, scale, cfg)
                    lse[rs] = torch.logaddexp(lse[rs], torch.logsumexp(logits, dim=1))
                    if cfg.kind == "soft_kl" and not is_extra:
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
        with torch.autocast(rows.device.type, enabled=False):
            for r0 in range(0, rows.shape[0], block):
                rs = slice(r0, r0 + block)
                cap_r = cap_rows[rs] if cap_rows is not None else None
                for c0, tile_cols, is_extra in _column_tiles(cols, extra, block):
                    cap_c = cap_cols[c0:c0 + block] if cap_r is not None and not is_extra else None
                    logits, cos, w = _tile(rows[rs], tile_cols, cap_r, cap_c, positive[rs], c0, is_extra, scale, cfg)
                    target = w / z[rs, None] if cfg.kind == "soft_kl" else w
                    g = grad_loss[rs, None] * (torch.exp(logits - lse[rs, None]) - target)
                    d_rows[rs] += (g @ tile_cols) * scale
                    d_tile = (g.T @ rows[rs]) * scale
                    if is_extra:
                        d_extra[c0 - cols.shape[0]:c0 - cols.shape[0] + block] += d_tile
                    else:
                        d_cols[c0:c0 + block] += d_tile
                    d_scale += (g * cos).sum()
        return d_rows, d_cols, d_extra, d_scale.reshape(scale.shape), None, None, None, None, None


def direction_loss(rows: torch.Tensor, cols: torch.Tensor, scale: torch.Tensor, cfg: ContrastiveLossConfig,
                   positive_index: torch.Tensor, caption_rows: torch.Tensor | None = None,
                   caption_cols: torch.Tensor | None = None, extra_cols: torch.Tensor | None = None,
                   block: int = 1024) -> torch.Tensor:
    """Per-row losses (R,) of the rows -> cols softmax in tiles of `block`. rows (R, d), cols (C, d),
    extra_cols (K, d) (pure negatives, CAR) are L2-normalized embeddings; caption_* L2-normalized
    sentence embeddings (targets / filtering; None: one-hot targets, no filtering); positive_index
    (R,) the true column of each row."""
    if (caption_rows is None) != (caption_cols is None):
        raise ValueError("give both caption_rows and caption_cols (sentence embeddings of rows and columns) or neither")
    if extra_cols is not None and extra_cols.shape[0] == 0:
        extra_cols = None
    caps = [c.detach().to(rows.dtype) if c is not None else None for c in (caption_rows, caption_cols)]
    return _TiledDirection.apply(rows, cols, extra_cols, scale, positive_index, *caps, cfg, max(1, block))


def _loss_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision embeddings (bf16/fp16 training) are compared in fp32: logits / tau need it."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class ContrastiveAlignment(nn.Module):
    """Tri-modal alignment with a learnable temperature (shape (1,): DeepSpeed rejects 0-dim params)."""

    def __init__(self, cfg: ContrastiveLossConfig):
        super().__init__()
        if cfg.kind not in KINDS:
            raise ValueError(f"loss.kind must be one of {KINDS}, got {cfg.kind!r}")
        if cfg.gather not in ("none", "full", "local"):
            raise ValueError(f"loss.gather must be none, full or local, got {cfg.gather!r}")
        if cfg.impl not in IMPLS:
            raise ValueError(f"loss.impl must be one of {IMPLS}, got {cfg.impl!r}")
        if cfg.block_size < 1:
            raise ValueError(f"loss.block_size must be positive, got {cfg.block_size}")
        if len(cfg.pair_weights) != 3:
            raise ValueError(f"loss.pair_weights needs 3 weights (mt, mv, tv), got {list(cfg.pair_weights)}")
        self.cfg = cfg
        log_scale = torch.full((1,), math.log(1.0 / cfg.temperature_init))
        if cfg.learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def scale(self) -> torch.Tensor:
        """1 / tau, clamped to [1 / temperature_max, 1 / temperature_min]."""
        return self.log_scale.exp().clamp(1.0 / self.cfg.temperature_max, 1.0 / self.cfg.temperature_min)

    def tile_size(self, n_rows: int, n_columns: int) -> int:
        """The tile edge `loss.impl` asks for with these rows and (true + negative) columns."""
        one_tile = max(n_rows, n_columns)
        if self.cfg.impl == "dense" or (self.cfg.impl == "auto" and n_columns <= AUTO_DENSE_MAX_COLUMNS):
            return one_tile
        return min(self.cfg.block_size, one_tile)

    def forward(self, embeddings: dict[str, torch.Tensor], caption_emb: torch.Tensor | None = None,
                negatives: torch.Tensor | None = None,
                present: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """embeddings: {"motion"|"text"|"video": (B, d)} (two or three of them), row i = sample i.
        caption_emb (B, e): sentence embeddings of the captions (targets / filtering; None: one-hot
        targets). negatives (K, d): text-encoder embeddings of shuffled-event captions (CAR).
        present: {modality: (B,) bool} for samples that lack a modality (e.g. no rendered video); a
        pair then uses only the samples having both.
        Returns {"align": total, "align_mt": ..., "temperature"}."""
        rank, world = rank_and_world() if self.cfg.gather != "none" else (0, 1)
        local = {name: F.normalize(_loss_precision(e), dim=-1) for name, e in embeddings.items()}
        b = next(iter(local.values())).shape[0]
        device = next(iter(local.values())).device
        gathered = {name: gather_with_grad(e) if world > 1 else e for name, e in local.items()}
        present = present or {}
        valid = {}
        for name in local:
            mask = present.get(name, torch.ones(b, dtype=torch.bool, device=device)).bool()
            valid[name] = gather_no_grad(mask) if world > 1 else mask
        captions = None
        if caption_emb is not None:   # (N, e): the global targets come from these, tile by tile
            captions = F.normalize(caption_emb.detach().float(), dim=-1)
            captions = gather_no_grad(captions) if world > 1 else captions
        neg_all = None
        if negatives is not None:
            neg = F.normalize(_loss_precision(negatives), dim=-1)
            neg_all = gather_varlen_with_grad(neg) if world > 1 else neg

        local_rows = self.cfg.gather == "local" and world > 1
        # This rank's rows ("local") or the global batch's; the row embeddings of each.
        row_range = slice(rank * b, (rank + 1) * b) if local_rows else slice(0, world * b)
        row_source = local if local_rows else gathered
        scale = self.scale()
        out: dict[str, torch.Tensor] = {}
        total = None
        for (x, y), weight in zip(PAIRS, self.cfg.pair_weights):
            if x not in local or y not in local:
                continue
            both = valid[x] & valid[y]                             # (N,) global
            n_valid = int(both.sum())
            if n_valid == 0:
                continue
            mine = both[row_range]                                 # this pair's rows among row_range
            positive = (torch.cumsum(both.long(), 0) - 1)[row_range][mine]   # their columns among the valid
            # Index (copy) only when some sample lacks a modality: at B = 65,536 a copy is 128 MB.
            pick_cols = (lambda t: t) if n_valid == both.numel() else (lambda t: t[both])
            pick_rows = (lambda t: t) if bool(mine.all()) else (lambda t: t[mine])
            cap_rows = pick_rows(captions[row_range]) if captions is not None else None
            cap_cols = pick_cols(captions) if captions is not None else None
            extra = neg_all if (x, y) == ("motion", "text") else None
            n_extra = extra.shape[0] if extra is not None else 0
            tile = self.tile_size(int(mine.sum()), n_valid + n_extra)
            forward_dir = direction_loss(pick_rows(row_source[x]), pick_cols(gathered[y]), scale, self.cfg, positive,
                                         cap_rows, cap_cols, extra, tile)
            backward_dir = direction_loss(pick_rows(row_source[y]), pick_cols(gathered[x]), scale, self.cfg, positive,
                                          cap_rows, cap_cols, None, tile)
            # Mean over the pair's global rows; with local rows each rank holds a 1/world share, so the
            # mean over ranks (what gradient averaging computes) is the global mean.
            denominator = n_valid / world if local_rows else n_valid
            pair = (forward_dir.sum() + backward_dir.sum()) / denominator
            if self.cfg.kind == "infonce":
                pair = pair / 2   # TMR / CAR eq. 1 average the two directions
            out[f"align_{x[0]}{y[0]}"] = pair
            total = weight * pair if total is None else total + weight * pair
        if total is None:
            raise ValueError(f"alignment needs at least two modalities present in some sample, the batch has "
                             f"{sorted(embeddings)}")
        out["align"] = total
        out["temperature"] = (1.0 / scale).detach()
        return out


def car_counts(true_sim: torch.Tensor, shuffled_sim: torch.Tensor) -> torch.Tensor:
    """CAR eq. 2's test, the one definition training, validation and evaluation use: (wins, items),
    a win being a motion strictly closer to its true caption than to its shuffled one (ties lose)."""
    return torch.stack([(true_sim > shuffled_sim).sum(), torch.tensor(true_sim.numel(), device=true_sim.device)])


def car_accuracy(motion: torch.Tensor, text: torch.Tensor, negatives: torch.Tensor,
                 owner: torch.Tensor, across_ranks: bool = False) -> torch.Tensor:
    """CAR accuracy on a batch: share of negatives k whose owner motion prefers its true caption
    (NaN without negatives). across_ranks: over the negatives of every rank (a collective)."""
    m, t, c = (F.normalize(x.detach().float(), dim=-1) for x in (motion, text, negatives))
    counts = car_counts((m[owner] * t[owner]).sum(-1), (m[owner] * c).sum(-1)).float()
    if across_ranks:
        counts = sum_over_ranks(counts)
    return counts[0] / counts[1] if counts[1] > 0 else counts.new_tensor(float("nan"))
