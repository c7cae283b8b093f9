"""MLP temporal sentence localization head (Sec. III of "MLP: Motion Label Prior for Temporal
Sentence Localization in Untrimmed 3D Human Motions").

Encoding-Fusion-Match-Prediction on top of trimo's shared encoders: the motion encoder's snippet
features (with the GCN S-Enc when the motion encoder enables it) and the text encoder's token
features come in; the head runs the SGPA temporal encoder shared by both
modalities (Eq. 2), fuses them with context-query attention (Eq. 3), matches foreground with the
LP-Matcher (Eq. 4-7) and predicts the span with the LP-Predictor (Eq. 8-11), trained with Eq. 12.
The snippet, label and decoding functions (Eq. 13) are plain functions here, so the data
pipeline and evaluation can call them without building the model.

Span conventions (chosen where the paper is loose):
- A motion of F valid frames becomes T = min(F, S) snippets; frame f belongs to snippet
  floor(f * T / F), and a snippet is the mean of its frames (Sec. III-A).
- Snippet i covers the time [i, i + 1) * D / T. A span (i, j) with i <= j covers snippets i..j,
  i.e. the time [i * D / T, (j + 1) * D / T]: the paper's t = i / T * D applied to the start of
  the first snippet and to the end of the last one.
- The ground-truth moment maps to the span with the best IoU against it (evaluation spec); ties
  go to the smallest end, then the smallest start.
- Decoding (Eq. 13) maximizes P_s(i) * P_e(j) over i <= j (and j - i < max_span when given); ties
  go to the smallest end j, then the smallest start i. The top-k ranking uses the same order, so
  its first entry is always the argmax.

Other choices where the paper is ambiguous (each one is a decision, not a quote):
- Snippet pooling (`pool_snippets`) happens before the encoders, as the paper orders it: the
  assembled model (modeling.trimo_model) pools the raw motion, then encodes the snippets. The
  head pools its input again, which is the identity for T <= S elements, so it also accepts frame
  features directly; the data pipeline only passes frames, masks and the moment in seconds.
- Dimension alignment (footnote 2, and "w/o S-Enc: an FFN layer" for MLPBase): one Linear per
  modality to d, for every variant.
- SGPA block (Eq. 2): a pre-norm block; self-attention and cross-attention run in parallel on the
  same normed input, are merged by the cross-gating of Eq. 2 (the FFNs there are single Linear
  layers), then a residual connection and a position-wise feed-forward with its own residual, as
  in a transformer layer. Both modalities advance together: layer l+1 of the motion stream attends
  to layer l of the text stream and vice versa, and the text side uses the same blocks (shared
  weights) with its inputs swapped.
- CQA (Eq. 3): trilinear similarity S = w^T [m; q; m*q]. The paper prints A_QM = S_c S_c^T M;
  we use the standard context-query attention form A_QM = S_r S_c^T M (its ref. [12]).
- Sentence vector: additive attention v^T tanh(W q_j + b), masked softmax over tokens.
- LP-Matcher: label ids 0 background, 1 foreground, 2 PAD; sinusoidal PE added after encoding
  (Eq. 5). Features are then weighted by the highlight score: M^q <- S_LP * M^q (the embeddings
  are not added to the features passed on). The perturbed run covers round(alpha * T_b) snippets
  (round half up), at a uniform random start; alpha = alpha_start + (alpha_end - alpha_start) *
  progress; at inference every label is PAD. L_Seq (Eq. 7) is the binary cross-entropy averaged
  over all valid snippets of the batch.
- LP-Predictor: head = Linear(d, d) -> LayerNorm -> ReLU -> Linear(d, 1) on the GRU output (Eq. 8);
  the end GRU reads the start GRU's outputs ("conditioned on the start"). The recovering part
  continues each GRU from its hidden state after the last valid snippet, h_T, over the embedded
  flipped labels (separate start/non-start and end/non-end embeddings). Because the predicting
  part is computed first and alone, its outputs cannot depend on the labels (the paper's reason
  for a unidirectional GRU). The reference code feeds the start labels to the end stream; here the
  end stream gets the end labels.
- Label flipping: every valid position's start (end) label is flipped 0 <-> 1 independently with
  probability beta. (The reference code redraws a random class, an effective flip rate of beta/2.)
- Loss (Eq. 12): L_Span and L_Span^rec average the start and end terms (as the paper writes);
  L_Align is likewise (KL_s + KL_e) / 2, each KL(P || P^rec) averaged over the batch; gradients
  flow into both distributions (the paper does not stop either). In eval mode only L_Seq and
  L_Span are computed; the recovering terms are 0.
- Random draws (perturbation, flipping) use the CPU generator passed in, or the global CPU RNG,
  so results do not depend on the device and a trainer that restores RNG states resumes exactly.

Variants (`variant`): "mlp" = everything and implies the motion encoder's GCN S-Enc
(`MotionEncoderConfig.use_gcn=True`); "mlp_s" = the same head without S-Enc (`use_gcn=False`);
"mlp_base" = no S-Enc, the plain sequence matcher of Eq. 4, predicting part only. `lp_matcher`
and `lp_predictor` override the variant for the ablations of Table IV.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from configs.schema import VARIANTS, LocalizationConfig
from modeling.attention import FeedForward, MultiHeadAttention, multi_source_attention
from modeling.sequence import sinusoidal_positions  # E_pos of Eq. 5

BACKGROUND, FOREGROUND, PAD = 0, 1, 2


# ---- snippets, span labels and Eq. 13 decoding ----

def snippet_lengths(frame_lengths: torch.Tensor, num_snippets: int) -> torch.Tensor:
    """T_b = min(F_b, S) per sample."""
    return frame_lengths.clamp(max=num_snippets)


def pool_snippets(frames: torch.Tensor, frame_mask: torch.Tensor, num_snippets: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Average frames (B, F, d) into snippets (B, T, d), T = max_b min(F_b, S); returns the snippet mask too."""
    if frames.dim() != 3 or frame_mask.shape != frames.shape[:2]:
        raise ValueError(f"pool_snippets expects frames (B, F, d) and mask (B, F); got {tuple(frames.shape)} "
                         f"and {tuple(frame_mask.shape)}")
    frame_mask = frame_mask.bool()
    n_frames = frame_mask.sum(1)
    if (n_frames == 0).any():
        bad = torch.nonzero(n_frames == 0).flatten().tolist()
        raise ValueError(f"motion samples {bad} of the batch have no valid frame; drop them before localization")
    n_snip = snippet_lengths(n_frames, num_snippets)
    t_max = int(n_snip.max())
    f_idx = torch.arange(frames.shape[1], device=frames.device)
    # Frame f of sample b goes to snippet floor(f * T_b / F_b); padded frames contribute nothing.
    seg = torch.div(f_idx[None] * n_snip[:, None], n_frames[:, None], rounding_mode="floor").clamp(max=t_max - 1)
    weight = frame_mask.to(frames.dtype)
    sums = frames.new_zeros(frames.shape[0], t_max, frames.shape[2])
    sums.scatter_add_(1, seg[..., None].expand_as(frames), frames * weight[..., None])
    counts = frames.new_zeros(frames.shape[0], t_max).scatter_add_(1, seg, weight)
    snippet_mask = torch.arange(t_max, device=frames.device)[None] < n_snip[:, None]
    return sums / counts.clamp(min=1.0)[..., None], snippet_mask


def _validate_moments(start_s: torch.Tensor, end_s: torch.Tensor, duration_s: torch.Tensor):
    bad_d = torch.nonzero(~(duration_s > 0)).flatten().tolist()
    if bad_d:
        raise ValueError(f"samples {bad_d}: duration must be > 0 seconds; check the sample's meta.json")
    start = start_s.clamp(min=0.0)
    end = torch.minimum(end_s, duration_s)
    bad = torch.nonzero(~(end > start)).flatten().tolist()
    if bad:
        raise ValueError(f"samples {bad}: moment end must be after its start inside [0, duration] "
                         f"(got start={start_s[bad].tolist()}, end={end_s[bad].tolist()}); fix the moment times")
    return start, end


def times_to_indices(start_s: torch.Tensor, end_s: torch.Tensor, duration_s: torch.Tensor,
                     num_snippets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map moments in seconds to the snippet span (i, j), i <= j < T_b, with the best IoU (ties: smallest j, i).

    For a fixed end, the IoU is strictly increasing in i up to the moment's start and strictly
    decreasing after it (and likewise for the end), so every best span has i within one snippet of
    floor(start * T / D) and j + 1 within one of ceil(end * T / D): 9 candidates, not T^2 pairs.
    """
    start, end = _validate_moments(start_s.double(), end_s.double(), duration_s.double())
    n = num_snippets.to(start.device)
    unit = duration_s.double().to(start.device) / n.double()
    near = torch.tensor([-1, 0, 1], device=start.device)
    i = (torch.floor(start / unit).long()[:, None] + near)                       # (B, 3)
    j = (torch.ceil(end / unit).long()[:, None] - 1 + near)                      # (B, 3)
    i = torch.minimum(i.clamp(min=0), n[:, None] - 1)[:, None, :]               # (B, 1, 3)
    j = torch.minimum(j.clamp(min=0), n[:, None] - 1)[:, :, None]               # (B, 3, 1), ascending
    s_time, e_time = i.double() * unit[:, None, None], (j.double() + 1) * unit[:, None, None]
    st, en = start[:, None, None], end[:, None, None]
    inter = (torch.minimum(e_time, en) - torch.maximum(s_time, st)).clamp(min=0)
    iou = (inter / (torch.maximum(e_time, en) - torch.minimum(s_time, st))).masked_fill(i > j, -1.0)
    best = iou.flatten(1).argmax(1)          # flat (j, i) order, both ascending: first hit = smallest (j, i)
    i, j = i.expand(-1, 3, -1).flatten(1), j.expand(-1, -1, 3).flatten(1)
    return i.gather(1, best[:, None]).squeeze(1), j.gather(1, best[:, None]).squeeze(1)


def indices_to_times(start_idx: torch.Tensor, end_idx: torch.Tensor, num_snippets: torch.Tensor,
                     duration_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Span (i, j) -> seconds [i * D / T_b, (j + 1) * D / T_b]; works for (B,) or (B, k) indices."""
    unit = duration_s.double() / num_snippets.double()
    if start_idx.dim() == 2:
        unit = unit[:, None]
    return start_idx.double() * unit, (end_idx.double() + 1) * unit


def span_labels(start_idx: torch.Tensor, end_idx: torch.Tensor, snippet_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-hot start and end labels and the 0/1 highlight (foreground) labels, all (B, T) long."""
    pos = torch.arange(snippet_mask.shape[1], device=snippet_mask.device)[None]
    start = (pos == start_idx[:, None]).long()
    end = (pos == end_idx[:, None]).long()
    highlight = ((pos >= start_idx[:, None]) & (pos <= end_idx[:, None]) & snippet_mask).long()
    return start, end, highlight


def _running_argmax(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefix max along the last dim and the EARLIEST index reaching it."""
    values = x.cummax(-1).values
    prev = torch.cat([torch.full_like(values[..., :1], float("-inf")), values[..., :-1]], -1)
    pos = torch.arange(x.shape[-1], device=x.device).expand_as(x)
    # The earliest index of the running max is where it last strictly increased.
    return values, torch.where(x > prev, pos, torch.zeros_like(pos)).cummax(-1).values


def _window_argmax(x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max of x[..., j - window + 1 : j + 1] for every j, with the earliest index; O(T) (van Herk / Gil-Werman)."""
    b, t = x.shape
    front = window - 1                                    # pad so every window has exactly `window` entries
    n_blocks = -(-(t + front) // window)
    padded = x.new_full((b, n_blocks * window), float("-inf"))
    padded[:, front:front + t] = x
    blocks = padded.view(b, n_blocks, window)
    pre_v, pre_i = _running_argmax(blocks)
    # Suffix max inside each block, earliest index on ties: scan the reversed block, keep the last hit.
    rev = blocks.flip(-1)
    suf_v = rev.cummax(-1).values
    prev = torch.cat([torch.full_like(suf_v[..., :1], float("-inf")), suf_v[..., :-1]], -1)
    pos = torch.arange(window, device=x.device).expand_as(rev)
    suf_i = torch.where(rev >= prev, pos, torch.zeros_like(pos)).cummax(-1).values
    suf_v, suf_i = suf_v.flip(-1), (window - 1 - suf_i).flip(-1)
    offset = (torch.arange(n_blocks, device=x.device) * window)[None, :, None]
    pre_v, pre_i = pre_v.reshape(b, -1), (pre_i + offset).reshape(b, -1)
    suf_v, suf_i = suf_v.reshape(b, -1), (suf_i + offset).reshape(b, -1)
    j = torch.arange(t, device=x.device) + front          # window end in padded coordinates
    lo = j - front                                        # window start in padded coordinates
    a_v, a_i = suf_v[:, lo], suf_i[:, lo]                 # [lo, end of lo's block]
    b_v, b_i = pre_v[:, j], pre_i[:, j]                   # [start of j's block, j]
    take_a = a_v >= b_v                                   # ties: a holds the smaller indices
    return torch.where(take_a, a_v, b_v), torch.where(take_a, a_i, b_i) - front


def decode_best_span(p_start: torch.Tensor, p_end: torch.Tensor, snippet_mask: torch.Tensor | None = None,
                     max_span: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 13: exact argmax over i <= j (j - i < max_span) of P_s(i) * P_e(j) in O(T); returns (i, j, p_se)."""
    if max_span is not None and max_span < 1:
        raise ValueError(f"max_span must be >= 1 snippet, got {max_span}")
    p_start, p_end = p_start.float(), p_end.float()
    if snippet_mask is not None:
        p_start = p_start.masked_fill(~snippet_mask, 0.0)
        p_end = p_end.masked_fill(~snippet_mask, 0.0)
    t = p_start.shape[1]
    if max_span is None or max_span >= t:
        best_s, best_i = _running_argmax(p_start)
    else:
        best_s, best_i = _window_argmax(p_start, max_span)
    score = best_s * p_end                                # best pair ending at each j
    if snippet_mask is not None:
        score = score.masked_fill(~snippet_mask, -1.0)
    end = score.argmax(1)                                 # first maximum: smallest j
    start = best_i.gather(1, end[:, None]).squeeze(1)
    return start, end, score.gather(1, end[:, None]).squeeze(1)


def decode_topk_spans(p_start: torch.Tensor, p_end: torch.Tensor, k: int, snippet_mask: torch.Tensor | None = None,
                      max_span: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k best distinct spans (i, j), ranked by P_s(i) * P_e(j) with the same ties as decode_best_span.

    Returns (start, end, score), each (B, k); where a sample has fewer than k valid spans, the rest
    are index -1 and score 0.
    """
    p_start, p_end = p_start.float(), p_end.float()
    t = p_start.shape[1]
    idx = torch.arange(t, device=p_start.device)
    allowed = idx[None, :] <= idx[:, None]                # [j, i]
    if max_span is not None:
        allowed &= (idx[:, None] - idx[None, :]) < max_span
    allowed = allowed[None].expand(p_start.shape[0], t, t)
    if snippet_mask is not None:
        allowed = allowed & snippet_mask[:, :, None] & snippet_mask[:, None, :]
    joint = (p_end[:, :, None] * p_start[:, None, :]).masked_fill(~allowed, -1.0).flatten(1)  # flat j * T + i
    k_eff = min(k, joint.shape[1])
    scores, flat = joint.sort(dim=1, descending=True, stable=True)
    scores, flat = scores[:, :k_eff], flat[:, :k_eff]
    ok = scores >= 0
    start = torch.where(ok, flat % t, -1)
    end = torch.where(ok, torch.div(flat, t, rounding_mode="floor"), -1)
    scores = scores.clamp(min=0.0)
    if k_eff < k:
        pad = p_start.new_full((p_start.shape[0], k - k_eff), -1, dtype=torch.long)
        start, end = torch.cat([start, pad], 1), torch.cat([end, pad], 1)
        scores = torch.cat([scores, pad.to(scores.dtype).clamp(min=0)], 1)
    return start, end, scores




def _check_config(cfg: LocalizationConfig) -> None:
    if cfg.variant not in VARIANTS:
        raise ValueError(f"localization variant {cfg.variant!r} is not one of {VARIANTS}; set localization.variant")
    for name in ("alpha_start", "alpha_end", "flip_rate"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"localization.{name}={getattr(cfg, name)} must be in [0, 1]")
    if cfg.alignment_kl not in ("forward", "reverse"):
        raise ValueError(f"localization.alignment_kl={cfg.alignment_kl!r} must be 'forward' (KL(P || P_rec), "
                         "Eq. 11) or 'reverse' (KL(P_rec || P))")
    if cfg.num_snippets < 1 or cfg.d_model % cfg.n_heads:
        raise ValueError(f"localization: num_snippets={cfg.num_snippets} must be >= 1 and d_model={cfg.d_model} "
                         f"divisible by n_heads={cfg.n_heads}")


def perturb_rate(cfg: LocalizationConfig, progress: float) -> float:
    """alpha at a training progress in [0, 1], rising linearly from alpha_start to alpha_end."""
    p = min(max(float(progress), 0.0), 1.0)
    return cfg.alpha_start + (cfg.alpha_end - cfg.alpha_start) * p


def perturb_labels(highlight: torch.Tensor, snippet_mask: torch.Tensor, alpha: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 6: a contiguous run of round(alpha * T_b) snippets, at a uniform random start, becomes PAD."""
    n_valid = snippet_mask.sum(1).cpu()
    n_pad = torch.floor(alpha * n_valid.double() + 0.5).long().clamp(max=n_valid)
    start = torch.floor(torch.rand(n_valid.shape, generator=generator, dtype=torch.float64)
                        * (n_valid - n_pad + 1).double()).long()
    start, n_pad = start.to(highlight.device), n_pad.to(highlight.device)
    pos = torch.arange(highlight.shape[1], device=highlight.device)[None]
    hidden = ((pos >= start[:, None]) & (pos < (start + n_pad)[:, None])) | ~snippet_mask
    return highlight.masked_fill(hidden, PAD)


def flip_labels(labels: torch.Tensor, snippet_mask: torch.Tensor, rate: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Label flipping of the recovering part: each valid 0/1 label flips with probability `rate`."""
    flip = (torch.rand(labels.shape, generator=generator) < rate).to(labels.device) & snippet_mask
    return torch.where(flip, 1 - labels, labels)


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float().masked_fill(~mask, torch.finfo(torch.float32).min), dim=-1)


# ---- losses (Eq. 7, 9-11), exposed so tests can compare them with direct implementations ----

def highlight_loss(logits: torch.Tensor, highlight: torch.Tensor, snippet_mask: torch.Tensor) -> torch.Tensor:
    """Eq. 7: binary cross-entropy of sigmoid(logits) against 0/1 labels, mean over valid snippets."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), highlight.float(), reduction="none")
    return (bce * snippet_mask).sum() / snippet_mask.sum()


def boundary_loss(logits: torch.Tensor, index: torch.Tensor, snippet_mask: torch.Tensor) -> torch.Tensor:
    """Eq. 9/10: cross-entropy of the masked softmax over snippets against the boundary index."""
    return -_masked_log_softmax(logits, snippet_mask).gather(1, index[:, None]).mean()


def alignment_loss(logits: torch.Tensor, rec_logits: torch.Tensor, snippet_mask: torch.Tensor) -> torch.Tensor:
    """Eq. 11: KL(P || P_rec) over valid snippets, mean over the batch."""
    log_p, log_q = _masked_log_softmax(logits, snippet_mask), _masked_log_softmax(rec_logits, snippet_mask)
    kl = torch.where(snippet_mask, log_p.exp() * (log_p - log_q), torch.zeros_like(log_p))
    return kl.sum(1).mean()


# ---- modules ----

class SGPABlock(nn.Module):
    """Self-guided parallel attention (Eq. 2): self- and cross-attention merged by cross-gating."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float, backend: str):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)          # shared by both inputs: the block serves both modalities
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, backend)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout, backend)
        self.gate_from_cross = nn.Linear(d_model, d_model)
        self.gate_from_self = nn.Linear(d_model, d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, x_mask, other, other_mask):
        h, o = self.norm(x), self.norm(other)
        q_s, k_s, v_s = self.self_attn.project(h)
        q_c, k_c, v_c = self.cross_attn.project(h, o)
        # self- and cross-attention in parallel: one call (the fused two-source kernel on CUDA)
        out_s, out_c = multi_source_attention([q_s, q_c], [(k_s, v_s, x_mask), (k_c, v_c, other_mask)], "none",
                                              backend=self.self_attn.backend, dropout_p=self.self_attn.dropout_p)
        m_s, m_c = self.self_attn.merge(out_s), self.cross_attn.merge(out_c)
        gated = torch.sigmoid(self.gate_from_cross(m_c)) * m_s + torch.sigmoid(self.gate_from_self(m_s)) * m_c
        x = x + self.drop(gated)
        return x + self.drop(self.ff(self.norm_ff(x)))


class SGPAEncoder(nn.Module):
    """T-Enc and the linguistic encoder: N_SGPA shared blocks; the text side swaps the inputs."""

    def __init__(self, cfg: LocalizationConfig):
        super().__init__()
        self.blocks = nn.ModuleList(
            SGPABlock(cfg.d_model, cfg.n_heads, cfg.ff_dim, cfg.dropout, cfg.attention_backend)
            for _ in range(cfg.n_sgpa_blocks))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, motion, motion_mask, text, text_mask):
        for block in self.blocks:
            motion, text = block(motion, motion_mask, text, text_mask), block(text, text_mask, motion, motion_mask)
        return self.norm(motion), self.norm(text)


class ContextQueryFusion(nn.Module):
    """Eq. 3 context-query attention, then [M^q; q] with the additive-attention sentence vector q -> d."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.w_motion = nn.Linear(d_model, 1, bias=False)
        self.w_text = nn.Linear(d_model, 1, bias=False)
        self.w_product = nn.Parameter(torch.empty(d_model).uniform_(-1 / math.sqrt(d_model), 1 / math.sqrt(d_model)))
        self.bias = nn.Parameter(torch.zeros(1))
        self.cqa_out = nn.Linear(4 * d_model, d_model)
        self.pool_proj = nn.Linear(d_model, d_model)
        self.pool_score = nn.Linear(d_model, 1, bias=False)
        self.concat_out = nn.Linear(2 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, motion, motion_mask, text, text_mask):
        sim = (self.w_motion(motion) + self.w_text(text).transpose(1, 2)
               + torch.matmul(motion * self.w_product, text.transpose(1, 2)) + self.bias).float()  # (B, T, N)
        neg = torch.finfo(torch.float32).min     # softmaxes in float32 whatever the autocast dtype
        s_row = torch.softmax(sim.masked_fill(~text_mask[:, None, :], neg), dim=2).to(text.dtype)
        s_col = torch.softmax(sim.masked_fill(~motion_mask[:, :, None], neg), dim=1).to(text.dtype)
        a_mq = torch.matmul(s_row, text)                                            # (B, T, d)
        a_qm = torch.matmul(torch.matmul(s_row, s_col.transpose(1, 2)), motion)     # (B, T, d)
        fused = self.cqa_out(self.drop(torch.cat([motion, a_mq, motion * a_mq, motion * a_qm], -1)))
        # Additive attention pooling of the text into one sentence vector q.
        score = self.pool_score(torch.tanh(self.pool_proj(text))).squeeze(-1).float().masked_fill(~text_mask, neg)
        sentence = torch.matmul(torch.softmax(score, dim=1).to(text.dtype)[:, None, :], text)  # (B, 1, d)
        return self.concat_out(torch.cat([fused, sentence.expand_as(fused)], -1))


class SequenceMatcher(nn.Module):
    """Eq. 4 (plain) or Eq. 5 (LP-Matcher with label embeddings and PE): the highlight logits."""

    def __init__(self, d_model: int, label_prior: bool):
        super().__init__()
        self.conv = nn.Conv1d(d_model, 1, kernel_size=1)
        self.label_embedding = nn.Embedding(3, d_model) if label_prior else None

    def forward(self, x, labels):
        if self.label_embedding is not None:
            x = x + self.label_embedding(labels) + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)
        return self.conv(x.transpose(1, 2)).squeeze(1)


def _prediction_head(d_model: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, d_model), nn.LayerNorm(d_model), nn.ReLU(), nn.Linear(d_model, 1))


class SpanPredictor(nn.Module):
    """LP-Predictor: predicting part (Eq. 8) and, when `recovering`, the recovering part (Eq. 10)."""

    def __init__(self, d_model: int, recovering: bool):
        super().__init__()
        self.start_gru = nn.GRU(d_model, d_model, batch_first=True)
        self.end_gru = nn.GRU(d_model, d_model, batch_first=True)
        self.start_head, self.end_head = _prediction_head(d_model), _prediction_head(d_model)
        self.start_labels = nn.Embedding(2, d_model) if recovering else None
        self.end_labels = nn.Embedding(2, d_model) if recovering else None

    def predict(self, x):
        """Eq. 8 for the start and the end: logits, plus the GRU outputs the recovering part continues from."""
        h_start, _ = self.start_gru(x)
        h_end, _ = self.end_gru(h_start)      # the end is conditioned on the start
        return self.start_head(h_start).squeeze(-1), self.end_head(h_end).squeeze(-1), h_start, h_end

    def recover(self, h_start, h_end, lengths, flipped_start, flipped_end):
        """Eq. 10 inputs: continue each GRU from h_T (after the last valid snippet) over the flipped labels."""
        last = (lengths - 1)[:, None, None].expand(-1, 1, h_start.shape[2])
        h0_s = h_start.gather(1, last).transpose(0, 1).contiguous()
        h0_e = h_end.gather(1, last).transpose(0, 1).contiguous()
        r_start, _ = self.start_gru(self.start_labels(flipped_start), h0_s)
        r_end, _ = self.end_gru(self.end_labels(flipped_end), h0_e)
        return self.start_head(r_start).squeeze(-1), self.end_head(r_end).squeeze(-1)


class LocalizationHead(nn.Module):
    """MLP / MLP-S / MLPBase on encoder outputs: motion frames (B, F, d_motion), text tokens (B, L, d_text)."""

    def __init__(self, cfg: LocalizationConfig, d_motion: int, d_text: int):
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        full = cfg.variant != "mlp_base"
        self.use_lp_matcher = full if cfg.lp_matcher is None else cfg.lp_matcher
        self.use_recovering = full if cfg.lp_predictor is None else cfg.lp_predictor
        self.motion_proj = nn.Linear(d_motion, cfg.d_model)
        self.text_proj = nn.Linear(d_text, cfg.d_model)
        self.encoder = SGPAEncoder(cfg)
        self.fusion = ContextQueryFusion(cfg.d_model, cfg.dropout)
        self.matcher = SequenceMatcher(cfg.d_model, self.use_lp_matcher)
        self.predictor = SpanPredictor(cfg.d_model, self.use_recovering)

    def forward(self, motion: torch.Tensor, motion_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                duration_s: torch.Tensor, gt_start_s: torch.Tensor | None = None, gt_end_s: torch.Tensor | None = None,
                progress: float = 0.0, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Probabilities, highlight scores and (with ground truth) the Eq. 12 loss and its terms.

        motion_mask/text_mask are bool, True = real frame/token. duration_s (B,) is each motion's
        length in seconds (e.g. motion_mask.sum(1) / fps); gt_start_s/gt_end_s (B,) the moment.
        `progress` in [0, 1] is the fraction of training done (drives alpha); `generator` is a CPU
        generator for the random perturbation and flipping (default: the global CPU RNG).
        """
        has_gt = gt_start_s is not None and gt_end_s is not None
        if self.training and not has_gt:
            raise ValueError("LocalizationHead in training mode needs gt_start_s and gt_end_s (seconds)")
        snippets, mask = pool_snippets(motion, motion_mask.bool(), self.cfg.num_snippets)
        text_mask = text_mask.bool()
        lengths = mask.sum(1)
        m, q = self.encoder(self.motion_proj(snippets), mask, self.text_proj(text), text_mask)
        fused = self.fusion(m, mask, q, text_mask)

        out: dict[str, torch.Tensor] = {"snippet_mask": mask, "num_snippets": lengths}
        if has_gt:
            dev = mask.device
            s_idx, e_idx = times_to_indices(gt_start_s.to(dev), gt_end_s.to(dev), duration_s.to(dev), lengths)
            y_start, y_end, y_high = span_labels(s_idx, e_idx, mask)
        # LP-Matcher (Eq. 5-6): labels during training (perturbed), all PAD otherwise.
        labels = torch.full_like(mask, PAD, dtype=torch.long)
        if self.training and self.use_lp_matcher:
            labels = perturb_labels(y_high, mask, perturb_rate(self.cfg, progress), generator)
        h_logits = self.matcher(fused, labels).float().masked_fill(~mask, torch.finfo(torch.float32).min)
        highlight = torch.sigmoid(h_logits)
        weighted = fused * highlight[..., None].to(fused.dtype)
        s_logits, e_logits, h_s, h_e = self.predictor.predict(weighted)
        out.update(highlight=highlight, start_logits=s_logits, end_logits=e_logits,
                   p_start=_masked_log_softmax(s_logits, mask).exp(), p_end=_masked_log_softmax(e_logits, mask).exp())
        if not has_gt:
            return out

        zero = fused.new_zeros(())
        loss_seq = highlight_loss(h_logits, y_high, mask)                                       # Eq. 7
        loss_span = 0.5 * (boundary_loss(s_logits, s_idx, mask) + boundary_loss(e_logits, e_idx, mask))  # Eq. 9
        loss_rec, loss_align = zero, zero
        if self.training and self.use_recovering:
            flipped_s = flip_labels(y_start, mask, self.cfg.flip_rate, generator)
            flipped_e = flip_labels(y_end, mask, self.cfg.flip_rate, generator)
            rs_logits, re_logits = self.predictor.recover(h_s, h_e, lengths, flipped_s, flipped_e)
            loss_rec = 0.5 * (boundary_loss(rs_logits, s_idx, mask) + boundary_loss(re_logits, e_idx, mask))  # Eq. 10
            pairs = [(s_logits, rs_logits), (e_logits, re_logits)]
            if self.cfg.alignment_kl == "reverse":
                pairs = [(rec, pred) for pred, rec in pairs]
            loss_align = 0.5 * sum(alignment_loss(p, q, mask) for p, q in pairs)                   # Eq. 11
            out.update(rec_start_logits=rs_logits, rec_end_logits=re_logits)
        c = self.cfg
        loss = c.lambda_seq * loss_seq + c.lambda_span * loss_span + c.lambda_recover * loss_rec \
            + c.lambda_align * loss_align                                                          # Eq. 12
        out.update(loss=loss, loss_seq=loss_seq, loss_span=loss_span, loss_recover=loss_rec, loss_align=loss_align,
                   gt_start_idx=s_idx, gt_end_idx=e_idx)
        return out

    @torch.no_grad()
    def predict(self, motion: torch.Tensor, motion_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                duration_s: torch.Tensor, top_k: int = 5) -> dict[str, torch.Tensor]:
        """Eq. 13 in seconds: start_s, end_s, score (B,) and top-k lists topk_start_s/end_s/score (B, k)."""
        was_training = self.training
        self.eval()
        try:
            out = self.forward(motion, motion_mask, text, text_mask, duration_s)
        finally:
            self.train(was_training)
        return decode_moments(out["p_start"], out["p_end"], out["snippet_mask"], duration_s, top_k,
                              self.cfg.max_span_snippets)


def decode_moments(p_start: torch.Tensor, p_end: torch.Tensor, snippet_mask: torch.Tensor, duration_s: torch.Tensor,
                   top_k: int = 5, max_span: int | None = None) -> dict[str, torch.Tensor]:
    """Best span and top-k spans, as snippet indices and as seconds (top-k padding has time -1)."""
    lengths = snippet_mask.sum(1)
    duration_s = duration_s.to(p_start.device)
    i, j, score = decode_best_span(p_start, p_end, snippet_mask, max_span)
    start_s, end_s = indices_to_times(i, j, lengths, duration_s)
    ti, tj, tscore = decode_topk_spans(p_start, p_end, top_k, snippet_mask, max_span)
    ts, te = indices_to_times(ti.clamp(min=0), tj.clamp(min=0), lengths, duration_s)
    ts, te = ts.masked_fill(ti < 0, -1.0), te.masked_fill(ti < 0, -1.0)
    return {"start_idx": i, "end_idx": j, "start_s": start_s, "end_s": end_s, "score": score,
            "topk_start_idx": ti, "topk_end_idx": tj, "topk_start_s": ts, "topk_end_s": te, "topk_score": tscore}
