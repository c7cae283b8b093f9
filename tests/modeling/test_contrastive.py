"""Contrastive losses against direct, loop-based implementations of the papers' equations, each
on one tile ("dense") and on tiles of 2 ("blockwise": rows, columns and negatives split)."""
import math

import pytest
import torch

from configs.schema import ContrastiveLossConfig
from modeling.contrastive import ContrastiveAlignment, car_accuracy



@pytest.fixture(autouse=True)
def float64_default():
    """The references are compared at 1e-6 including gradients: run these tests in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(params=["dense", "blockwise"])
def loss_cfg(request):
    """Builds the loss config of a test with `impl` set to one tile or to tiles of 2."""
    return lambda **kw: ContrastiveLossConfig(impl=request.param, block_size=2, **kw)


# ---- loop references (plain Python over indices, the papers' notation) ----------------------

def cos(a, b):
    return (a * b).sum() / (a.norm() * b.norm())


def lavimo_target(cap, eps, weighting="cosine"):
    """Eq. 6 with the true pair at 1, each row divided by its sum."""
    n = len(cap)
    rows = []
    for i in range(n):
        row = []
        for j in range(n):
            s = cos(cap[i], cap[j])
            w = (s if weighting == "cosine" else torch.tensor(1.0)) if s >= eps else torch.tensor(0.0)
            row.append(torch.tensor(1.0) if i == j else w)
        total = sum(row)
        rows.append([w / total for w in row])
    return rows


def kl_direction(queries, cands, target_rows, tau, extra=()):
    """mean_i KL(q_i || p_i), p_i = softmax_j cos(query_i, cand_j) / tau over cands + extra."""
    total = 0.0
    for i, q in enumerate(queries):
        columns = list(cands) + list(extra)
        denom = sum(torch.exp(cos(q, c) / tau) for c in columns)
        kl = 0.0
        for j, c in enumerate(columns):
            qij = target_rows[i][j] if j < len(cands) else 0.0
            if float(qij) > 0:
                p = torch.exp(cos(q, c) / tau) / denom
                kl = kl + qij * torch.log(qij / p)
        total = total + kl
    return total / len(queries)


def lavimo_pair(x, y, cap, tau, eps, extra=(), weighting="cosine"):
    target = lavimo_target(cap, eps, weighting)
    target_t = [[target[j][i] for j in range(len(cap))] for i in range(len(cap))]
    # KL(S_pred^{x2y}, S_target) + KL(S_pred^{y2x}, S_target^T); extra columns only in x -> y.
    return kl_direction(x, y, target, tau, extra) + kl_direction(y, x, target_t, tau)


def tmr_direction(queries, cands, cap, tau, threshold, extra=()):
    total = 0.0
    for i, q in enumerate(queries):
        keep = [j for j in range(len(cands))
                if j == i or cap is None or (1 + cos(cap[i], cap[j])) / 2 <= threshold]
        logits = [cos(q, cands[j]) / tau for j in keep] + [cos(q, c) / tau for c in extra]
        total = total - (cos(q, cands[i]) / tau - torch.log(sum(torch.exp(v) for v in logits)))
    return total / len(queries)


def tmr_pair(x, y, cap, tau, threshold, extra=()):
    return (tmr_direction(x, y, cap, tau, threshold, extra) + tmr_direction(y, x, cap, tau, threshold)) / 2


# ---- fixtures -----------------------------------------------------------------------------------

def make_inputs(n=6, d=8, e=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = {m: torch.randn(n, d, generator=g, requires_grad=True) for m in ("motion", "text", "video")}
    cap = torch.randn(n, e, generator=g)
    cap[1] = cap[0] + 0.05 * torch.randn(e, generator=g)   # near duplicates: kept by epsilon
    cap[4] = cap[2] + 0.3 * torch.randn(e, generator=g)
    neg = torch.randn(k, d, generator=g, requires_grad=True)
    return emb, cap, neg


def grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def check_close(a, b, tol=1e-6):
    assert torch.allclose(a, b, atol=tol, rtol=0), (a, b)


@pytest.mark.parametrize("weighting", ["cosine", "binary"])
def test_soft_kl_trimodal_matches_loop(weighting, loss_cfg):
    emb, cap, _ = make_inputs()
    cfg = loss_cfg(kind="soft_kl", gather="none", target_weighting=weighting, pair_weights=[1.0, 0.5, 2.0])
    module = ContrastiveAlignment(cfg)
    out = module(emb, caption_emb=cap)
    tau = 1.0 / module.scale()
    ref = {
        "align_mt": lavimo_pair(emb["motion"], emb["text"], cap, tau, 0.8, weighting=weighting),
        "align_mv": lavimo_pair(emb["motion"], emb["video"], cap, tau, 0.8, weighting=weighting),
        "align_tv": lavimo_pair(emb["text"], emb["video"], cap, tau, 0.8, weighting=weighting),
    }
    for key, value in ref.items():
        check_close(out[key], value.reshape(1) if value.dim() == 0 else value)
    ref_total = ref["align_mt"] + 0.5 * ref["align_mv"] + 2.0 * ref["align_tv"]
    check_close(out["align"], ref_total)
    leaves = [emb["motion"], emb["text"], emb["video"], module.log_scale]
    for got, want in zip(grads(out["align"].sum(), leaves), grads(ref_total.sum(), leaves)):
        check_close(got, want)


def test_infonce_with_filtering_matches_loop(loss_cfg):
    emb, cap, _ = make_inputs()
    cfg = loss_cfg(kind="infonce", gather="none", temperature_init=0.1, learn_temperature=False)
    module = ContrastiveAlignment(cfg)
    out = module({"motion": emb["motion"], "text": emb["text"]}, caption_emb=cap)
    ref = tmr_pair(emb["motion"], emb["text"], cap, 0.1, 0.8)
    check_close(out["align"], ref)
    # the filter really removes a column (else this test could not tell filtering apart)
    unfiltered = tmr_pair(emb["motion"], emb["text"], None, 0.1, 0.8)
    assert abs(float(ref.detach() - unfiltered.detach())) > 1e-4
    leaves = [emb["motion"], emb["text"]]
    for got, want in zip(grads(out["align"].sum(), leaves), grads(ref.sum(), leaves)):
        check_close(got, want)


@pytest.mark.parametrize("kind", ["soft_kl", "infonce"])
def test_chronological_negatives_match_loop(kind, loss_cfg):
    emb, cap, neg = make_inputs()
    cfg = loss_cfg(kind=kind, gather="none")
    module = ContrastiveAlignment(cfg)
    out = module({"motion": emb["motion"], "text": emb["text"]}, caption_emb=cap, negatives=neg)
    tau = 1.0 / module.scale()
    if kind == "soft_kl":
        ref = lavimo_pair(emb["motion"], emb["text"], cap, tau, 0.8, extra=list(neg))
    else:
        ref = tmr_pair(emb["motion"], emb["text"], cap, tau, 0.8, extra=list(neg))
    check_close(out["align"], ref)
    leaves = [emb["motion"], emb["text"], neg, module.log_scale]
    for got, want in zip(grads(out["align"].sum(), leaves), grads(ref.sum(), leaves)):
        check_close(got, want)


@pytest.mark.parametrize("kind", ["soft_kl", "infonce"])
def test_identical_shuffled_caption_equals_duplicated_column(kind, loss_cfg):
    """A negative identical to its owner's caption acts as a duplicated text column in m->t only."""
    emb, cap, _ = make_inputs()
    owner = torch.tensor([0, 3])
    neg = emb["text"][owner]
    cfg = loss_cfg(kind=kind, gather="none")
    module = ContrastiveAlignment(cfg)
    out = module({"motion": emb["motion"], "text": emb["text"]}, caption_emb=cap, negatives=neg)
    tau = 1.0 / module.scale()
    m, t = emb["motion"], emb["text"]
    # m->t over the N columns plus copies of columns 0 and 3 (zero target mass);
    # t->m exactly as without negatives (no rows for the negatives).
    if kind == "soft_kl":
        target = lavimo_target(cap, 0.8)
        target_t = [[target[j][i] for j in range(6)] for i in range(6)]
        m2t = kl_direction(m, t, target, tau, extra=[t[0], t[3]])
        t2m = kl_direction(t, m, target_t, tau)
        expected = m2t + t2m
    else:
        m2t = tmr_direction(m, t, cap, tau, 0.8, extra=[t[0], t[3]])
        t2m = tmr_direction(t, m, cap, tau, 0.8)
        expected = (m2t + t2m) / 2
    check_close(out["align"], expected)
    without = module({"motion": m, "text": t}, caption_emb=cap)["align"]
    assert float(out["align"].detach()) > float(without.detach())   # the duplicate column lowers p of the true text


def test_negatives_never_contribute_a_text_to_motion_row(loss_cfg):
    """The total is m->t over N + K columns plus t->m over the N motions only (no row per negative),
    whatever the negatives are."""
    emb, cap, neg = make_inputs()
    cfg = loss_cfg(kind="soft_kl", gather="none")
    module = ContrastiveAlignment(cfg)
    tau = 1.0 / module.scale()
    m, t = emb["motion"], emb["text"]
    out = module({"motion": m, "text": t}, caption_emb=cap, negatives=neg)
    target = lavimo_target(cap, 0.8)
    m2t = kl_direction(m, t, target, tau, extra=list(neg))
    t2m = kl_direction(t, m, [[target[j][i] for j in range(6)] for i in range(6)], tau)
    check_close(out["align"] - m2t, t2m)
    other = torch.randn(5, neg.shape[1], generator=torch.Generator().manual_seed(7))
    out2 = module({"motion": m, "text": t}, caption_emb=cap, negatives=other)
    check_close(out2["align"] - kl_direction(m, t, target, tau, extra=list(other)), t2m)
    assert abs(float(out2["align"].detach() - out["align"].detach())) > 1e-6


@pytest.mark.parametrize("kind", ["soft_kl", "infonce"])
def test_samples_without_a_modality_leave_only_its_pairs(kind, loss_cfg):
    """Samples 1 and 4 have no video: the pairs with video use the other samples (and their
    captions' targets) only; motion-text keeps all six."""
    emb, cap, neg = make_inputs()
    module = ContrastiveAlignment(loss_cfg(kind=kind, gather="none"))
    has_video = torch.tensor([True, False, True, True, False, True])
    out = module(emb, caption_emb=cap, negatives=neg, present={"video": has_video})
    tau = 1.0 / module.scale()
    keep = has_video.nonzero().squeeze(1)
    sub = {m: e[keep] for m, e in emb.items()}
    if kind == "soft_kl":
        mv = lavimo_pair(sub["motion"], sub["video"], cap[keep], tau, 0.8)
        tv = lavimo_pair(sub["text"], sub["video"], cap[keep], tau, 0.8)
        mt = lavimo_pair(emb["motion"], emb["text"], cap, tau, 0.8, extra=list(neg))
    else:
        mv = tmr_pair(sub["motion"], sub["video"], cap[keep], tau, 0.8)
        tv = tmr_pair(sub["text"], sub["video"], cap[keep], tau, 0.8)
        mt = tmr_pair(emb["motion"], emb["text"], cap, tau, 0.8, extra=list(neg))
    check_close(out["align_mv"], mv)
    check_close(out["align_tv"], tv)
    check_close(out["align_mt"], mt)
    leaves = [emb["motion"], emb["text"], emb["video"], neg]
    for got, want in zip(grads(out["align"].sum(), leaves), grads((mv + tv + mt).sum(), leaves)):
        check_close(got, want)
    none = module(emb, caption_emb=cap, present={"video": torch.zeros(6, dtype=torch.bool)})
    assert "align_mv" not in none and "align_tv" not in none and "align_mt" in none


def test_no_similarity_means_one_hot_targets_equal_infonce_sum(loss_cfg):
    """Without caption similarities the KL with one-hot targets is plain cross-entropy (x2)."""
    emb, _, _ = make_inputs()
    pair = {"motion": emb["motion"], "text": emb["text"]}
    kl = ContrastiveAlignment(loss_cfg(kind="soft_kl", gather="none"))(pair)["align"]
    nce = ContrastiveAlignment(loss_cfg(kind="infonce", gather="none"))(pair)["align"]
    check_close(kl, 2 * nce)


def test_temperature_parameter_shape_and_clamp():
    module = ContrastiveAlignment(ContrastiveLossConfig(temperature_init=0.07))
    assert module.log_scale.shape == (1,) and module.log_scale.requires_grad
    assert math.isclose(float(1 / module.scale().detach()), 0.07, rel_tol=1e-9)
    with torch.no_grad():
        module.log_scale.fill_(math.log(1e6))
    assert math.isclose(float(1 / module.scale().detach()), 0.01, rel_tol=1e-9)   # clamped at temperature_min
    fixed = ContrastiveAlignment(ContrastiveLossConfig(learn_temperature=False))
    assert not any(p is fixed.log_scale for p in fixed.parameters())


def test_one_modality_is_an_error_and_bad_kind_is_named():
    emb, _, _ = make_inputs()
    with pytest.raises(ValueError, match="at least two modalities"):
        ContrastiveAlignment(ContrastiveLossConfig(gather="none"))({"motion": emb["motion"]})
    with pytest.raises(ValueError, match="loss.kind"):
        ContrastiveAlignment(ContrastiveLossConfig(kind="triplet"))


def test_car_accuracy_counts_owner_preferences():
    m = torch.eye(3)
    t = torch.eye(3)
    # owner 0's negative is less similar than its caption (success); owner 1's equals it (a tie fails)
    neg = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert float(car_accuracy(m, t, neg, torch.tensor([0, 1]))) == 0.5
    # no negative at all: undefined, not 0 or 1
    assert math.isnan(float(car_accuracy(m, t, neg[:0], torch.zeros(0, dtype=torch.long))))
