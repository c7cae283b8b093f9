"""MLP localization head: schedules, label noise, leakage, losses against their equations, variants."""
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import modeling.localization as loc
from configs.schema import LocalizationConfig, variant_uses_spatial_encoder
from modeling.localization import (PAD, LocalizationHead, alignment_loss, boundary_loss,
                                   flip_labels, highlight_loss, perturb_labels, perturb_rate)

D_MOTION, D_TEXT = 12, 10


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(**kw) -> LocalizationConfig:
    base = dict(d_model=16, n_heads=2, ff_dim=32, n_sgpa_blocks=2, num_snippets=10, dropout=0.0)
    base.update(kw)
    return LocalizationConfig(**base)


def batch(seed=0, b=4, f=14, n_tokens=5):
    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(b, f, D_MOTION, generator=g)
    lengths = torch.tensor([f, 9, 6, 12][:b])
    mmask = torch.arange(f)[None] < lengths[:, None]
    text = torch.randn(b, n_tokens, D_TEXT, generator=g)
    tmask = torch.arange(n_tokens)[None] < torch.tensor([5, 3, 4, 2][:b])[:, None]
    duration = lengths.double() / 20.0
    start = torch.tensor([0.1, 0.05, 0.0, 0.2], dtype=torch.float64)[:b] * duration / 0.3
    end = torch.minimum(start + 0.4 * duration, duration)
    return motion, mmask, text, tmask, duration, start, end


def test_paper_defaults_and_omegaconf():
    cfg = OmegaConf.structured(LocalizationConfig)
    assert (cfg.num_snippets, cfg.d_model, cfg.n_sgpa_blocks) == (256, 256, 4)
    assert (cfg.lambda_seq, cfg.lambda_span, cfg.lambda_recover, cfg.lambda_align) == (5.0, 1.0, 1.0, 1.0)
    assert (cfg.alpha_start, cfg.alpha_end, cfg.flip_rate) == (0.8, 1.0, 0.1)
    assert OmegaConf.merge(cfg, {"variant": "mlp_base"}).variant == "mlp_base"


def test_variants_and_spatial_encoder_setting():
    assert variant_uses_spatial_encoder("mlp") is True
    assert variant_uses_spatial_encoder("mlp_s") is False and variant_uses_spatial_encoder("mlp_base") is False
    with pytest.raises(ValueError, match="not one of"):
        LocalizationHead(tiny_cfg(variant="mlpx"), D_MOTION, D_TEXT)
    with pytest.raises(ValueError, match="flip_rate"):
        LocalizationHead(tiny_cfg(flip_rate=1.5), D_MOTION, D_TEXT)
    base = LocalizationHead(tiny_cfg(variant="mlp_base"), D_MOTION, D_TEXT)
    full = LocalizationHead(tiny_cfg(variant="mlp_s"), D_MOTION, D_TEXT)
    assert base.matcher.label_embedding is None and base.predictor.start_labels is None
    assert full.matcher.label_embedding is not None and full.predictor.end_labels is not None
    ablation = LocalizationHead(tiny_cfg(variant="mlp_s", lp_predictor=False), D_MOTION, D_TEXT)
    assert ablation.matcher.label_embedding is not None and ablation.predictor.start_labels is None
    base.train()
    out = base(*batch(), progress=0.5)
    assert float(out["loss_recover"]) == 0.0 and float(out["loss_align"]) == 0.0
    torch.testing.assert_close(out["loss"], 5.0 * out["loss_seq"] + out["loss_span"])


def test_perturb_rate_schedule_numbers():
    cfg = LocalizationConfig()
    assert [perturb_rate(cfg, p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)] == pytest.approx([0.8, 0.85, 0.9, 0.95, 1.0])
    assert perturb_rate(cfg, -1.0) == pytest.approx(0.8) and perturb_rate(cfg, 2.0) == pytest.approx(1.0)


@pytest.mark.parametrize("alpha,t_valid,expected", [(0.8, 10, 8), (0.85, 10, 9), (0.84, 10, 8), (1.0, 7, 7),
                                                     (0.9, 256, 230), (0.0, 5, 0)])
def test_perturbation_is_one_contiguous_run_of_rounded_length(alpha, t_valid, expected):
    assert expected == math.floor(alpha * t_valid + 0.5)
    t = max(t_valid, 12)
    mask = (torch.arange(t) < t_valid)[None].repeat(400, 1)
    highlight = (torch.arange(t) % 3 == 0).long()[None].repeat(400, 1) * mask
    out = perturb_labels(highlight, mask, alpha, torch.Generator().manual_seed(0))
    assert (out[~mask] == PAD).all()
    starts = []
    for row, hl in zip(out, highlight):
        pad_pos = torch.nonzero(row[:t_valid] == PAD).flatten()
        assert len(pad_pos) == expected
        if expected:
            assert (pad_pos == torch.arange(pad_pos[0], pad_pos[0] + expected)).all(), "contiguous run"
            starts.append(int(pad_pos[0]))
        keep = row[:t_valid] != PAD
        assert torch.equal(row[:t_valid][keep], hl[:t_valid][keep])
    if expected and expected < t_valid:
        # Uniform start over 0..T_b - n: every start occurs, mean near the middle.
        n_starts = t_valid - expected + 1
        assert set(starts) == set(range(n_starts))
        assert abs(np.mean(starts) - (n_starts - 1) / 2) < 0.25 * n_starts


@pytest.mark.parametrize("beta", [0.1, 0.2])
def test_label_flip_rate(beta):
    g = torch.Generator().manual_seed(1)
    labels = torch.zeros(200, 100, dtype=torch.long)
    labels[:, 17] = 1
    mask = torch.arange(100)[None] < torch.randint(30, 101, (200, 1), generator=g)
    flipped = flip_labels(labels, mask, beta, g)
    changed = flipped != labels
    assert not changed[~mask].any()
    n = int(mask.sum())
    rate = changed[mask].float().mean().item()
    assert abs(rate - beta) < 4 * math.sqrt(beta * (1 - beta) / n), rate
    assert torch.equal(flip_labels(labels, mask, 0.0, g), labels)
    assert set(flipped.unique().tolist()) <= {0, 1}


def test_predicting_part_does_not_see_recovering_labels(monkeypatch):
    torch.manual_seed(0)
    head = LocalizationHead(tiny_cfg(), D_MOTION, D_TEXT).train()
    args = batch()
    real_flip = loc.flip_labels
    runs = []
    for labels in ("true", "random", "ones"):
        def fake_flip(y, mask, rate, generator=None, mode=labels):
            real_flip(y, mask, rate, generator)  # same RNG consumption in every run
            if mode == "true":
                return y
            if mode == "ones":
                return torch.ones_like(y)
            return torch.randint(0, 2, y.shape, generator=torch.Generator().manual_seed(5))
        monkeypatch.setattr(loc, "flip_labels", fake_flip)
        runs.append(head(*args, progress=0.3, generator=torch.Generator().manual_seed(11)))
    for key in ("p_start", "p_end", "start_logits", "end_logits", "highlight", "loss_seq", "loss_span"):
        assert torch.equal(runs[0][key], runs[1][key]) and torch.equal(runs[0][key], runs[2][key]), key
    assert not torch.equal(runs[0]["rec_start_logits"], runs[1]["rec_start_logits"])
    assert not torch.equal(runs[0]["rec_end_logits"], runs[2]["rec_end_logits"])


def test_inference_does_not_depend_on_ground_truth():
    torch.manual_seed(0)
    head = LocalizationHead(tiny_cfg(), D_MOTION, D_TEXT).eval()
    motion, mmask, text, tmask, duration, start, end = batch()
    no_gt = head(motion, mmask, text, tmask, duration)
    gt_a = head(motion, mmask, text, tmask, duration, start, end)
    gt_b = head(motion, mmask, text, tmask, duration, start * 0, duration)
    for key in ("p_start", "p_end", "highlight"):
        assert torch.equal(no_gt[key], gt_a[key]) and torch.equal(no_gt[key], gt_b[key]), key
    assert float(gt_a["loss_recover"]) == 0.0
    # Masked snippets get probability 0; valid ones sum to 1.
    mask = no_gt["snippet_mask"]
    assert (no_gt["p_start"][~mask] == 0).all() and (no_gt["p_end"][~mask] == 0).all()
    torch.testing.assert_close(no_gt["p_start"].sum(1), torch.ones(4))
    # The training-mode matcher input with all labels PAD equals inference: alpha = 1 at the end of training.
    head.train()
    end_of_training = head(motion, mmask, text, tmask, duration, start, end, progress=1.0)
    torch.testing.assert_close(end_of_training["highlight"], no_gt["highlight"])


def test_padding_in_the_batch_does_not_change_a_sample():
    torch.manual_seed(0)
    head = LocalizationHead(tiny_cfg(), D_MOTION, D_TEXT).eval()
    motion, mmask, text, tmask, duration, *_ = batch()
    full = head.predict(motion, mmask, text, tmask, duration, top_k=3)
    n_f, n_t = int(mmask[2].sum()), int(tmask[2].sum())
    alone = head.predict(motion[2:3, :n_f], mmask[2:3, :n_f], text[2:3, :n_t], tmask[2:3, :n_t], duration[2:3], top_k=3)
    assert int(full["start_idx"][2]) == int(alone["start_idx"][0])
    assert int(full["end_idx"][2]) == int(alone["end_idx"][0])
    torch.testing.assert_close(full["score"][2:3], alone["score"], rtol=1e-5, atol=1e-7)
    assert full["topk_start_s"].shape == (4, 3)


def test_random_draws_follow_the_generator():
    head = LocalizationHead(tiny_cfg(), D_MOTION, D_TEXT).train()
    args = batch()
    a = head(*args, progress=0.1, generator=torch.Generator().manual_seed(3))["loss"]
    b = head(*args, progress=0.1, generator=torch.Generator().manual_seed(3))["loss"]
    c = head(*args, progress=0.1, generator=torch.Generator().manual_seed(4))["loss"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(9)
    d = head(*args, progress=0.1)["loss"]
    torch.manual_seed(9)
    assert torch.equal(d, head(*args, progress=0.1)["loss"])


# ---- each loss term against a direct float64 implementation of its equation ----

def _np_log_softmax(x, valid):
    x = x[valid]
    return x - (np.log(np.exp(x - x.max()).sum()) + x.max())


def test_highlight_loss_is_eq7_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, generator=g)
    labels = torch.randint(0, 2, (3, 6), generator=g)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4]).bool()
    s = 1 / (1 + np.exp(-logits.double().numpy()))
    y = labels.numpy()
    terms = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    expected = terms[mask.numpy()].mean()
    assert float(highlight_loss(logits, labels, mask)) == pytest.approx(expected, rel=1e-5)


def test_boundary_and_alignment_losses_are_eq9_to_11():
    g = torch.Generator().manual_seed(1)
    logits, rec = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    mask = torch.arange(7)[None] < torch.tensor([[7], [5], [2]])
    index = torch.tensor([3, 4, 1])
    ce, kl = [], []
    for b in range(3):
        v = mask[b].numpy()
        lp = _np_log_softmax(logits[b].double().numpy(), v)
        lq = _np_log_softmax(rec[b].double().numpy(), v)
        ce.append(-lp[index[b]])
        kl.append(float(np.sum(np.exp(lp) * (lp - lq))))
    assert float(boundary_loss(logits, index, mask)) == pytest.approx(np.mean(ce), rel=1e-5)
    assert float(alignment_loss(logits, rec, mask)) == pytest.approx(np.mean(kl), rel=1e-4)
    assert float(alignment_loss(logits, logits, mask)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_forward_loss_is_eq12_of_its_terms(direction):
    torch.manual_seed(0)
    head = LocalizationHead(tiny_cfg(alignment_kl=direction), D_MOTION, D_TEXT).train()
    out = head(*batch(), progress=0.4, generator=torch.Generator().manual_seed(0))
    loss = out["loss"]
    out = {k: v.detach() for k, v in out.items()}
    mask, s, e = out["snippet_mask"], out["gt_start_idx"], out["gt_end_idx"]

    def ce(logits, idx):
        return np.mean([-_np_log_softmax(logits[b].double().detach().numpy(), mask[b].numpy())[idx[b]]
                        for b in range(len(idx))])

    def kl(p_logits, q_logits):
        vals = []
        for b in range(len(mask)):
            lp = _np_log_softmax(p_logits[b].double().detach().numpy(), mask[b].numpy())
            lq = _np_log_softmax(q_logits[b].double().detach().numpy(), mask[b].numpy())
            vals.append(np.sum(np.exp(lp) * (lp - lq)))
        return np.mean(vals)

    span = 0.5 * (ce(out["start_logits"], s) + ce(out["end_logits"], e))
    rec = 0.5 * (ce(out["rec_start_logits"], s) + ce(out["rec_end_logits"], e))
    pairs = [(out["start_logits"], out["rec_start_logits"]), (out["end_logits"], out["rec_end_logits"])]
    if direction == "reverse":                  # KL(P_rec || P)
        pairs = [(q, p) for p, q in pairs]
    align = 0.5 * sum(kl(p, q) for p, q in pairs)
    assert float(out["loss_span"]) == pytest.approx(span, rel=1e-5)
    assert float(out["loss_recover"]) == pytest.approx(rec, rel=1e-5)
    assert float(out["loss_align"]) == pytest.approx(align, rel=1e-4, abs=1e-7)
    # Highlight labels are the GT span [s, e]; L_Seq is BCE on the returned scores.
    pos = torch.arange(mask.shape[1])[None]
    y = ((pos >= s[:, None]) & (pos <= e[:, None]) & mask).double().numpy()
    h = out["highlight"].double().detach().numpy()[mask.numpy()]
    y = y[mask.numpy()]
    seq = -(y * np.log(h) + (1 - y) * np.log(1 - h)).mean()
    assert float(out["loss_seq"]) == pytest.approx(seq, rel=1e-4)
    expected = 5.0 * seq + span + rec + align
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-4)
    loss.backward()
    assert head.predictor.start_labels.weight.grad.abs().sum() > 0
    assert head.matcher.label_embedding.weight.grad.abs().sum() > 0


def test_an_unknown_alignment_direction_is_refused():
    with pytest.raises(ValueError, match="alignment_kl='both' must be 'forward'"):
        LocalizationHead(tiny_cfg(alignment_kl="both"), D_MOTION, D_TEXT)


# ---- Eq. 2 and Eq. 3 against direct implementations with the modules' own weights ----

def _attn(q_in, kv_in, mha, key_mask):
    q, k, v = mha.q_proj(q_in), mha.k_proj(kv_in), mha.v_proj(kv_in)
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~key_mask[:, None, :], float("-inf"))
    return mha.out_proj(torch.softmax(scores, -1) @ v)


@torch.no_grad()
def test_sgpa_block_is_eq2_and_text_side_swaps_inputs():
    torch.manual_seed(0)
    cfg = tiny_cfg(n_heads=1, n_sgpa_blocks=2)
    enc = loc.SGPAEncoder(cfg).double().eval()
    m, q = torch.randn(2, 6, 16, dtype=torch.float64), torch.randn(2, 4, 16, dtype=torch.float64)
    m_mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    q_mask = torch.tensor([[True] * 4, [True] * 2 + [False] * 2])

    def block(blk, x, x_mask, y, y_mask):
        h, o = blk.norm(x), blk.norm(y)
        m_s, m_c = _attn(h, h, blk.self_attn, x_mask), _attn(h, o, blk.cross_attn, y_mask)
        x = x + torch.sigmoid(blk.gate_from_cross(m_c)) * m_s + torch.sigmoid(blk.gate_from_self(m_s)) * m_c
        return x + blk.ff(blk.norm_ff(x))

    mm, qq = m, q
    for blk in enc.blocks:
        mm, qq = block(blk, mm, m_mask, qq, q_mask), block(blk, qq, q_mask, mm, m_mask)
    got_m, got_q = enc(m, m_mask, q, q_mask)
    torch.testing.assert_close(got_m, enc.norm(mm))
    torch.testing.assert_close(got_q, enc.norm(qq))


@torch.no_grad()
def test_context_query_fusion_is_eq3():
    torch.manual_seed(0)
    fusion = loc.ContextQueryFusion(8, 0.0).double().eval()
    m, q = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 3, 8, dtype=torch.float64)
    m_mask = torch.tensor([[True] * 5, [True] * 4 + [False]])
    q_mask = torch.tensor([[True] * 3, [True] * 2 + [False]])
    got = fusion(m, m_mask, q, q_mask)
    w_m, w_q, w_p = fusion.w_motion.weight[0], fusion.w_text.weight[0], fusion.w_product
    for b in range(2):
        t_n, n_n = int(m_mask[b].sum()), int(q_mask[b].sum())
        mb, qb = m[b, :t_n], q[b, :n_n]
        sim = torch.tensor([[float(w_m @ mb[i] + w_q @ qb[j] + (mb[i] * w_p) @ qb[j] + fusion.bias)
                             for j in range(n_n)] for i in range(t_n)], dtype=torch.float64)
        s_r, s_c = torch.softmax(sim, 1), torch.softmax(sim, 0)
        a_mq, a_qm = s_r @ qb, s_r @ s_c.T @ mb
        m_q = fusion.cqa_out(torch.cat([mb, a_mq, mb * a_mq, mb * a_qm], -1))
        a = torch.softmax(fusion.pool_score(torch.tanh(fusion.pool_proj(qb))).squeeze(-1), 0)
        sentence = (a[:, None] * qb).sum(0)
        expected = fusion.concat_out(torch.cat([m_q, sentence.expand(t_n, -1)], -1))
        torch.testing.assert_close(got[b, :t_n], expected)
