"""Blockwise contrastive losses against the naive ones of `modeling.contrastive` (same loss and
gradients within 1e-5 relative), and a check that no B x B tensor is ever created."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from configs.schema import ContrastiveLossConfig
from modeling.contrastive import ContrastiveAlignment, direction_loss
from modeling.kernels.blockwise_contrastive import blockwise_direction_loss, blockwise_pair_loss


def _rel(actual, expected):
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-12)).item()


def _batch(seed, b=37, d=16, e=8, k=5, duplicates=True):
    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(b, d, generator=g, requires_grad=True)
    text = torch.randn(b, d, generator=g, requires_grad=True)
    negatives = torch.randn(k, d, generator=g, requires_grad=True)
    captions = torch.randn(b, e, generator=g)
    if duplicates:   # near-duplicate captions: soft targets and InfoNCE filtering have work to do
        captions[5], captions[9] = captions[3], captions[3] + 0.05 * torch.randn(e, generator=g)
    return motion, text, negatives, captions


CASES = [  # kind, target weighting, captions?, CAR negatives?
    ("soft_kl", "cosine", True, True), ("soft_kl", "binary", True, False), ("soft_kl", "cosine", False, True),
    ("infonce", "cosine", True, True), ("infonce", "cosine", False, False),
]


@pytest.mark.parametrize("kind,weighting,with_captions,with_negatives", CASES)
def test_pair_loss_matches_naive_alignment(kind, weighting, with_captions, with_negatives):
    cfg = ContrastiveLossConfig(kind=kind, target_weighting=weighting, epsilon=0.3,
                                infonce_filter_threshold=0.75, gather="none")
    motion, text, negatives, captions = _batch(0)
    captions = captions if with_captions else None
    negatives = negatives if with_negatives else None
    module = ContrastiveAlignment(cfg)
    naive = module({"motion": motion, "text": text}, caption_emb=captions, negatives=negatives)["align_mt"]
    blockwise = blockwise_pair_loss(motion, text, module.scale(), cfg, captions, negatives, block_size=8)
    leaves = [motion, text, module.log_scale] + ([negatives] if with_negatives else [])
    assert abs(blockwise.item() - naive.item()) <= 1e-5 * abs(naive.item())
    for got, want in zip(torch.autograd.grad(blockwise, leaves), torch.autograd.grad(naive, leaves)):
        assert _rel(got, want) <= 1e-5


@pytest.mark.parametrize("kind", ["soft_kl", "infonce"])
def test_direction_loss_with_other_positives_and_more_columns(kind):
    """Rows fewer than columns, true columns permuted: the general rows -> cols softmax, float64."""
    cfg = ContrastiveLossConfig(kind=kind, epsilon=0.2, infonce_filter_threshold=0.7)
    g = torch.Generator().manual_seed(1)
    rows = F.normalize(torch.randn(11, 12, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    cols = F.normalize(torch.randn(19, 12, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    extra = F.normalize(torch.randn(4, 12, generator=g, dtype=torch.float64), dim=-1).requires_grad_()
    cap_r = F.normalize(torch.randn(11, 6, generator=g, dtype=torch.float64), dim=-1)
    cap_c = F.normalize(torch.randn(19, 6, generator=g, dtype=torch.float64), dim=-1)
    positive = torch.randperm(19, generator=g)[:11]
    scale = torch.tensor([9.0], dtype=torch.float64, requires_grad=True)
    naive = direction_loss(rows, cols, positive, cap_r @ cap_c.T, scale, cfg, extra)
    ours = blockwise_direction_loss(rows, cols, scale, cfg, positive, cap_r, cap_c, extra, block_size=4)
    assert torch.allclose(ours, naive, rtol=1e-12, atol=0)
    weights = torch.randn(11, generator=g, dtype=torch.float64)    # a non-uniform upstream gradient
    leaves = (rows, cols, extra, scale)
    for got, want in zip(torch.autograd.grad(ours, leaves, weights), torch.autograd.grad(naive, leaves, weights)):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_block_size_does_not_change_the_result():
    cfg = ContrastiveLossConfig(kind="soft_kl", epsilon=0.3)
    motion, text, negatives, captions = _batch(2)
    scale = torch.tensor([1 / 0.07])
    losses = [blockwise_pair_loss(motion, text, scale, cfg, captions, negatives, block_size=n) for n in (1, 6, 37, 4096)]
    assert max(abs(x.item() - losses[0].item()) for x in losses) <= 1e-6 * losses[0].item()


def test_half_precision_embeddings_are_compared_in_fp32():
    cfg = ContrastiveLossConfig(kind="infonce", gather="none")
    motion, text, _, captions = _batch(3)
    m16, t16 = motion.detach().bfloat16().requires_grad_(), text.detach().bfloat16().requires_grad_()
    module = ContrastiveAlignment(cfg)
    naive = module({"motion": m16, "text": t16}, caption_emb=captions)["align_mt"]
    ours = blockwise_pair_loss(m16, t16, module.scale(), cfg, captions)
    assert ours.dtype == torch.float32 and abs(ours.item() - naive.item()) <= 1e-5 * naive.item()
    got, want = torch.autograd.grad(ours, m16), torch.autograd.grad(naive, m16)
    assert got[0].dtype == torch.bfloat16 and _rel(got[0].float(), want[0].float()) <= 1e-2


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
def test_no_batch_by_batch_tensor_is_created(batch):
    """Every intermediate of forward and backward is O(B * d + block^2); the naive loss is O(B^2)."""
    d, e, block = 16, 8, 64
    cfg = ContrastiveLossConfig(kind="soft_kl", gather="none")
    g = torch.Generator().manual_seed(4)
    motion, text = (torch.randn(batch, d, generator=g, requires_grad=True) for _ in range(2))
    captions, negatives = torch.randn(batch, e, generator=g), torch.randn(batch // 4, d, generator=g)
    with _LargestTensor() as probe:
        blockwise_pair_loss(motion, text, torch.tensor([14.0]), cfg, captions, negatives, block_size=block).backward()
    assert probe.largest <= max(batch * d, block * block)
    with _LargestTensor() as probe:
        module = ContrastiveAlignment(cfg)
        module({"motion": motion, "text": text}, caption_emb=captions, negatives=negatives)["align"].backward()
    assert probe.largest >= batch * batch    # the probe does see a B x B matrix when there is one


def test_bad_arguments():
    cfg = ContrastiveLossConfig()
    x = F.normalize(torch.randn(4, 8), dim=-1)
    with pytest.raises(ValueError, match="caption_rows and caption_cols"):
        blockwise_direction_loss(x, x, torch.tensor(10.0), cfg, caption_rows=x)
    with pytest.raises(ValueError, match="positive_index"):
        blockwise_direction_loss(torch.randn(5, 8), x, torch.tensor(10.0), cfg)
    with pytest.raises(ValueError, match="loss.kind"):
        blockwise_direction_loss(x, x, torch.tensor(10.0), ContrastiveLossConfig(kind="hinge"))
