"""The contrastive loss in tiles (`loss.impl`): one tile and many give the same loss and gradients
(the values themselves are checked against the papers' equations in test_contrastive.py), tiles
bound memory, and `auto` picks what it says."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from configs.schema import ContrastiveLossConfig
from modeling.contrastive import AUTO_DENSE_MAX_COLUMNS, ContrastiveAlignment, direction_loss


def _rel(actual, expected):
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-12)).item()


def _batch(seed, b=37, d=16, e=8, k=5):
    g = torch.Generator().manual_seed(seed)
    emb = {m: torch.randn(b, d, generator=g, requires_grad=True) for m in ("motion", "text", "video")}
    negatives = torch.randn(k, d, generator=g, requires_grad=True)
    captions = torch.randn(b, e, generator=g)
    # near-duplicate captions: soft targets and InfoNCE filtering have work to do
    captions[5], captions[9] = captions[3], captions[3] + 0.05 * torch.randn(e, generator=g)
    return emb, negatives, captions


def _loss_and_grads(cfg, emb, negatives, captions, present=None):
    module = ContrastiveAlignment(cfg)
    out = module(emb, caption_emb=captions, negatives=negatives, present=present)
    leaves = [*emb.values(), module.log_scale] + ([negatives] if negatives is not None else [])
    return out, torch.autograd.grad(out["align"], leaves)


CASES = [  # kind, target weighting, captions?, CAR negatives?
    ("soft_kl", "cosine", True, True), ("soft_kl", "binary", True, False), ("soft_kl", "cosine", False, True),
    ("infonce", "cosine", True, True), ("infonce", "cosine", False, False),
]


@pytest.mark.parametrize("kind,weighting,with_captions,with_negatives", CASES)
@pytest.mark.parametrize("block", [1, 8, 36])
def test_tiles_give_the_one_tile_loss_and_gradients(kind, weighting, with_captions, with_negatives, block):
    """fp32, three modalities, some samples without video: within 1e-5 relative of one tile."""
    emb, negatives, captions = _batch(0)
    present = {"video": torch.arange(37) % 4 != 1}
    kw = dict(kind=kind, target_weighting=weighting, epsilon=0.3, infonce_filter_threshold=0.75, gather="none")
    args = (emb, negatives if with_negatives else None, captions if with_captions else None, present)
    dense, dense_grads = _loss_and_grads(ContrastiveLossConfig(impl="dense", **kw), *args)
    tiled, tiled_grads = _loss_and_grads(ContrastiveLossConfig(impl="blockwise", block_size=block, **kw), *args)
    for key in ("align", "align_mt", "align_mv", "align_tv"):
        assert abs(tiled[key].item() - dense[key].item()) <= 1e-5 * abs(dense[key].item()), key
    for got, want in zip(tiled_grads, dense_grads):
        assert _rel(got, want) <= 1e-5


@pytest.mark.parametrize("kind", ["soft_kl", "infonce"])
def test_rows_fewer_than_columns_with_permuted_true_columns(kind):
    """The general rows -> cols softmax (what `gather: local` computes), float64, against a direct
    computation of the equations on the full matrices."""
    cfg = ContrastiveLossConfig(kind=kind, epsilon=0.2, infonce_filter_threshold=0.7)
    g = torch.Generator().manual_seed(1)
    rows, cols, extra = (F.normalize(torch.randn(n, 12, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
                         for n in (11, 19, 4))
    cap_r, cap_c = (F.normalize(torch.randn(n, 6, generator=g, dtype=torch.float64), dim=-1) for n in (11, 19))
    positive = torch.randperm(19, generator=g)[:11]
    scale = torch.tensor([9.0], dtype=torch.float64, requires_grad=True)
    ours = direction_loss(rows, cols, scale, cfg, positive, cap_r, cap_c, extra, block=4)

    logits = torch.cat([rows @ cols.T, rows @ extra.T], dim=1) * scale
    sim, hit = cap_r @ cap_c.T, F.one_hot(positive, 19).bool()
    if kind == "soft_kl":   # LAVIMO eq. 6 targets, KL(q || p); the negatives get no target mass
        w = torch.where(hit, 1.0, torch.where(sim >= 0.2, sim, 0.0))
        q = F.pad(w / w.sum(1, keepdim=True), (0, 4))
        expected = (torch.xlogy(q, q) - q * logits.log_softmax(1)).sum(1)
    else:                   # TMR: near-duplicate columns leave the softmax, never the true one
        drop = F.pad(((1 + sim) / 2 > 0.7) & ~hit, (0, 4), value=False)
        expected = F.cross_entropy(logits.masked_fill(drop, float("-inf")), positive, reduction="none")
    assert torch.allclose(ours, expected, rtol=1e-12, atol=0)
    weights = torch.randn(11, generator=g, dtype=torch.float64)    # a non-uniform upstream gradient
    leaves = (rows, cols, extra, scale)
    for got, want in zip(torch.autograd.grad(ours, leaves, weights), torch.autograd.grad(expected, leaves, weights)):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_half_precision_embeddings_and_autocast_are_computed_in_fp32():
    """bf16 inputs (bf16 training) and bf16 autocast give the fp32 loss: the loss runs in fp32."""
    emb, negatives, captions = _batch(3)
    cfg = ContrastiveLossConfig(kind="soft_kl", gather="none", impl="blockwise", block_size=8)
    reference, _ = _loss_and_grads(cfg, emb, negatives, captions)
    half = {m: e.detach().bfloat16().float() for m, e in emb.items()}   # the bf16-rounded inputs in fp32
    rounded, _ = _loss_and_grads(cfg, {m: e.requires_grad_() for m, e in half.items()}, None, captions)
    as_bf16 = {m: e.detach().bfloat16().requires_grad_() for m, e in emb.items()}
    out, grads = _loss_and_grads(cfg, as_bf16, None, captions)
    assert out["align"].dtype == torch.float32 and grads[0].dtype == torch.bfloat16
    assert abs(out["align"].item() - rounded["align"].item()) <= 1e-6 * rounded["align"].item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast, _ = _loss_and_grads(cfg, emb, negatives, captions)
    assert autocast["align"].dtype == torch.float32
    assert abs(autocast["align"].item() - reference["align"].item()) <= 1e-6 * reference["align"].item()


def test_auto_is_one_tile_up_to_its_threshold_then_blockwise():
    auto = ContrastiveAlignment(ContrastiveLossConfig(block_size=512))
    assert auto.tile_size(256, 300) == 300
    assert auto.tile_size(AUTO_DENSE_MAX_COLUMNS, AUTO_DENSE_MAX_COLUMNS) == AUTO_DENSE_MAX_COLUMNS
    assert auto.tile_size(AUTO_DENSE_MAX_COLUMNS, AUTO_DENSE_MAX_COLUMNS + 1) == 512
    assert ContrastiveAlignment(ContrastiveLossConfig(impl="dense")).tile_size(10**5, 10**5) == 10**5
    assert ContrastiveAlignment(ContrastiveLossConfig(impl="blockwise", block_size=64)).tile_size(8, 40) == 40
    with pytest.raises(ValueError, match="loss.impl"):
        ContrastiveAlignment(ContrastiveLossConfig(impl="flash"))
    with pytest.raises(ValueError, match="loss.block_size"):
        ContrastiveAlignment(ContrastiveLossConfig(block_size=0))


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("batch", [256, 1024])
def test_blockwise_never_creates_a_batch_by_batch_tensor(batch):
    """Every intermediate of forward and backward is O(B * d + block^2); one tile is O(B^2)."""
    d, e, block = 16, 8, 64
    g = torch.Generator().manual_seed(4)
    motion, text = (torch.randn(batch, d, generator=g, requires_grad=True) for _ in range(2))
    captions, negatives = torch.randn(batch, e, generator=g), torch.randn(batch // 4, d, generator=g)
    for impl, bound in (("blockwise", lambda n: n <= max(batch * d, block * block)), ("dense", lambda n: n >= batch**2)):
        module = ContrastiveAlignment(ContrastiveLossConfig(impl=impl, block_size=block, gather="none"))
        with _LargestTensor() as probe:
            module({"motion": motion, "text": text}, caption_emb=captions, negatives=negatives)["align"].backward()
        assert bound(probe.largest), (impl, probe.largest)


def test_bad_arguments():
    x = F.normalize(torch.randn(4, 8), dim=-1)
    with pytest.raises(ValueError, match="caption_rows and caption_cols"):
        direction_loss(x, x, torch.tensor([10.0]), ContrastiveLossConfig(), torch.arange(4), caption_rows=x)
