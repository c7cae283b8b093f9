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

Global batch (`gather`): "full" builds the global x global matrices on every rank; "local" builds
local rows x global columns; in both, embeddings are gathered with gradients and the trainer's
usual gradient averaging over ranks gives the single-process gradient. Every rank must have the
same batch size B and the same modalities at a step (each gather is a collective).
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
PAIRS = (("motion", "text"), ("motion", "video"), ("text", "video"))


def soft_target_weights(sent_sim: torch.Tensor, positive_index: torch.Tensor, epsilon: float,
                        weighting: str = "cosine") -> torch.Tensor:
    """LAVIMO eq. 6 rows, normalized to sum to 1. sent_sim (R, C); positive_index (R,) true column."""
    if weighting not in ("cosine", "binary"):
        raise ValueError(f"target_weighting must be 'cosine' or 'binary', got {weighting!r}")
    kept = sent_sim >= epsilon
    weights = torch.where(kept, sent_sim if weighting == "cosine" else torch.ones_like(sent_sim),
                          torch.zeros_like(sent_sim))
    rows = torch.arange(sent_sim.shape[0], device=sent_sim.device)
    weights = weights.clone()
    weights[rows, positive_index] = 1.0
    return weights / weights.sum(dim=1, keepdim=True)


def soft_kl_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) per row; targets may cover only the first columns (rest: 0)."""
    log_p = logits.log_softmax(dim=1)
    if targets.shape[1] < logits.shape[1]:
        targets = F.pad(targets, (0, logits.shape[1] - targets.shape[1]))
    return (torch.xlogy(targets, targets) - targets * log_p).sum(dim=1)


def infonce_rows(logits: torch.Tensor, positive_index: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy per row with the true column as label; `drop` (R, C<=) columns leave the softmax."""
    if drop is not None:
        if drop.shape[1] < logits.shape[1]:
            drop = F.pad(drop, (0, logits.shape[1] - drop.shape[1]), value=False)
        logits = logits.masked_fill(drop, float("-inf"))
    return F.cross_entropy(logits, positive_index, reduction="none")


def direction_loss(rows: torch.Tensor, cols: torch.Tensor, positive_index: torch.Tensor,
                   sent_sim: torch.Tensor | None, scale: torch.Tensor, cfg: ContrastiveLossConfig,
                   extra_cols: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row losses (R,) of the rows -> cols softmax. rows/cols/extra_cols are L2-normalized
    embeddings; extra_cols (K, d) are pure negatives (CAR). sent_sim (R, C) caption similarities or None."""
    logits = rows @ cols.T
    if extra_cols is not None and extra_cols.shape[0] > 0:
        logits = torch.cat([logits, rows @ extra_cols.T], dim=1)
    logits = logits * scale
    if cfg.kind == "soft_kl":
        if sent_sim is None:
            targets = F.one_hot(positive_index, cols.shape[0]).to(logits.dtype)
        else:
            targets = soft_target_weights(sent_sim.to(logits.dtype), positive_index, cfg.epsilon, cfg.target_weighting)
        return soft_kl_rows(logits, targets)
    if cfg.kind == "infonce":
        drop = None
        if sent_sim is not None:
            drop = (1.0 + sent_sim) / 2.0 > cfg.infonce_filter_threshold
            drop[torch.arange(drop.shape[0], device=drop.device), positive_index] = False
        return infonce_rows(logits, positive_index, drop)
    raise ValueError(f"loss.kind must be one of {KINDS}, got {cfg.kind!r}")


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

    def forward(self, embeddings: dict[str, torch.Tensor], caption_emb: torch.Tensor | None = None,
                text_sim: torch.Tensor | None = None, negatives: torch.Tensor | None = None,
                present: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """embeddings: {"motion"|"text"|"video": (B, d)} (two or three of them), row i = sample i.
        caption_emb (B, e): sentence embeddings of the captions (targets/filtering), or text_sim
        (B, B) their cosine similarities (single process only). negatives (K, d): text-encoder
        embeddings of shuffled-event captions (CAR). present: {modality: (B,) bool} for samples that
        lack a modality (e.g. no rendered video); a pair then uses only the samples having both.
        Returns {"align": total, "align_mt": ..., "temperature"}."""
        rank, world = rank_and_world() if self.cfg.gather != "none" else (0, 1)
        if text_sim is not None and caption_emb is None and world > 1:
            raise ValueError("text_sim covers only the local batch; with gathered negatives give caption_emb "
                             "(the captions' sentence embeddings) so that global targets can be built")
        local = {name: F.normalize(_loss_precision(e), dim=-1) for name, e in embeddings.items()}
        b = next(iter(local.values())).shape[0]
        device = next(iter(local.values())).device
        gathered = {name: gather_with_grad(e) if world > 1 else e for name, e in local.items()}
        present = present or {}
        valid = {}
        for name in local:
            mask = present.get(name, torch.ones(b, dtype=torch.bool, device=device)).bool()
            valid[name] = gather_no_grad(mask) if world > 1 else mask

        sim_all = None
        if caption_emb is not None:
            cap = F.normalize(caption_emb.detach().float(), dim=-1)
            cap = gather_no_grad(cap) if world > 1 else cap
            sim_all = cap @ cap.T
        elif text_sim is not None:
            sim_all = text_sim.detach().float()
        neg_all = None
        if negatives is not None:
            neg = F.normalize(_loss_precision(negatives), dim=-1)
            neg_all = gather_varlen_with_grad(neg) if world > 1 else neg

        local_rows = self.cfg.gather == "local" and world > 1
        # Row sets: this rank's samples ("local") or the global batch; embeddings indexed globally.
        rows = torch.arange(rank * b, (rank + 1) * b, device=device) if local_rows else \
            torch.arange(world * b, device=device)
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
            cols = both.nonzero().squeeze(1)
            column_of = torch.cumsum(both.long(), 0) - 1           # global index -> valid column
            pair_rows = rows[both[rows]]
            positive = column_of[pair_rows]

            def row_emb(name):
                return local[name][pair_rows - rank * b] if local_rows else gathered[name][pair_rows]

            sim_xy = sim_all[pair_rows][:, cols] if sim_all is not None else None
            sim_yx = sim_all.T[pair_rows][:, cols] if sim_all is not None else None
            extra = neg_all if (x, y) == ("motion", "text") else None
            forward_dir = direction_loss(row_emb(x), gathered[y][cols], positive, sim_xy, scale, self.cfg, extra)
            backward_dir = direction_loss(row_emb(y), gathered[x][cols], positive, sim_yx, scale, self.cfg)
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
