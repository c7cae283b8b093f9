"""The one attention function: backends agree, masks hold, fully masked rows give zeros."""
import pytest
import torch

from modeling.attention import MultiHeadAttention, TransformerEncoder, attention


def _direct(q, k, v, key_mask, causal=False):
    """Per-(batch, head, query) loop of softmax(q.k / sqrt(d)) v over allowed keys."""
    out = torch.zeros_like(q)
    b, h, lq, d = q.shape
    lk = k.shape[2]
    for bi in range(b):
        for hi in range(h):
            for i in range(lq):
                keys = [j for j in range(lk) if (key_mask is None or key_mask[bi, j]) and (not causal or j <= i + lk - lq)]
                if not keys:
                    continue
                s = torch.stack([q[bi, hi, i] @ k[bi, hi, j] for j in keys]) / d ** 0.5
                p = torch.softmax(s, 0)
                out[bi, hi, i] = sum(p[n] * v[bi, hi, j] for n, j in enumerate(keys))
    return out


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("causal", [False, True])
def test_backends_match_direct_loop(backend, causal):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64)
    k = torch.randn(2, 3, 6, 8, generator=g, dtype=torch.float64)
    v = torch.randn(2, 3, 6, 8, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)  # 2nd row: all masked
    out = attention(q, k, v, mask, backend=backend, causal=causal)
    ref = _direct(q, k, v, mask, causal)
    assert torch.allclose(out, ref, atol=1e-10), (out - ref).abs().max()
    assert torch.all(out[1] == 0) and torch.isfinite(out).all()


def test_gradients_finite_with_fully_masked_rows():
    q = torch.randn(1, 2, 3, 4, requires_grad=True)
    k = torch.randn(1, 2, 3, 4, requires_grad=True)
    v = torch.randn(1, 2, 3, 4, requires_grad=True)
    mask = torch.zeros(1, 3, dtype=torch.bool)
    for backend in ("eager", "sdpa"):
        attention(q, k, v, mask, backend=backend).sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_padding_does_not_change_real_outputs():
    torch.manual_seed(0)
    enc = TransformerEncoder(2, 16, 4, 32, dropout=0.0, backend="sdpa").eval()
    x = torch.randn(1, 5, 16)
    padded = torch.cat([x, torch.randn(1, 3, 16) * 100], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    assert torch.allclose(enc(x)[0], enc(padded, mask)[0, :5], atol=1e-5)


def test_cross_attention_with_other_width_and_bad_backend():
    mha = MultiHeadAttention(16, 4, d_kv=8)
    out = mha(torch.randn(2, 3, 16), torch.randn(2, 7, 8))
    assert out.shape == (2, 3, 16)
    with pytest.raises(ValueError, match="backend"):
        attention(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4), backend="flash")


def test_auto_takes_the_fused_kernel_in_training_and_keeps_causal_off_it(monkeypatch):
    import modeling.attention as att

    monkeypatch.setattr(att, "_triton_available", lambda: True)
    cuda = torch.device("cuda")
    assert att._resolve_backend("auto", cuda) == "triton"
    assert att._resolve_backend("auto", cuda, dropout_p=0.1) == "triton"     # the kernels carry dropout
    assert att._resolve_backend("auto", cuda, causal=True) == "sdpa"
    assert att._resolve_backend("auto", torch.device("cpu")) == "sdpa"
    assert att._resolve_backend("auto", cuda, head_dim=256) == "sdpa"
    assert att._resolve_backend("auto", cuda, dtype=torch.float64) == "sdpa"
    # a ROCm build calls its GPU "cuda" too: the kernels are built and tested for NVIDIA only
    monkeypatch.setattr(torch.version, "hip", "6.4.0")
    assert att._resolve_backend("auto", cuda) == "sdpa"


def test_kernel_precision_follows_either_tf32_api_and_rocm(monkeypatch):
    """fp32 tl.dot precision follows torch's TF32 switch, old API or new (reading the old one
    after the new was set raises in torch); HIP's Triton accepts no "tf32" at all."""
    pytest.importorskip("triton")
    from modeling.kernels.triton_attention import _precision

    matmul = torch.backends.cuda.matmul
    before = (matmul.fp32_precision, torch.backends.fp32_precision)
    try:
        assert _precision(torch.float32) == ("tf32" if matmul.allow_tf32 else "ieee")
        matmul.fp32_precision = "tf32"
        assert _precision(torch.float32) == "tf32" and _precision(torch.bfloat16) == "tf32"
        matmul.fp32_precision = "ieee"
        assert _precision(torch.float32) == "ieee"
        matmul.fp32_precision = "none"
        torch.backends.fp32_precision = "tf32"     # the global switch, when the matmul one is unset
        assert _precision(torch.float32) == "tf32"
        monkeypatch.setattr(torch.version, "hip", "6.4.0")
        assert _precision(torch.float32) == _precision(torch.bfloat16) == _precision(torch.float16) == "ieee"
    finally:
        matmul.fp32_precision, torch.backends.fp32_precision = before


def test_multi_source_attention_sums_or_lists_per_source_outputs():
    from modeling.attention import multi_source_attention

    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 2, 3, 8, generator=g)
    sources = [(torch.randn(2, 2, n, 8, generator=g), torch.randn(2, 2, n, 8, generator=g),
                torch.rand(2, n, generator=g) > 0.3) for n in (4, 6, 5)]
    each = [attention(q, k, v, m, backend="eager") for k, v, m in sources]
    summed = multi_source_attention(q, sources, "sum", backend="eager")
    listed = multi_source_attention([q, q * 2, q], sources, "none", backend="sdpa")
    assert torch.allclose(summed, sum(each), atol=1e-6)
    assert torch.allclose(listed[1], attention(q * 2, *sources[1], backend="eager"), atol=1e-5)
    with pytest.raises(ValueError, match="reduce"):
        multi_source_attention(q, sources, "mean")
