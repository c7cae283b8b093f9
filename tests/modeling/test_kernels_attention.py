"""Fused Triton attention, run on CPU in Triton's interpreter, against the eager reference.

Forward outputs and gradients of q, k, v are compared with `eager_attention` evaluated in float64
on the same inputs: fp32 to 1e-5 relative (largest error / largest reference value), fp16/bf16 to
1e-2 relative in the Frobenius norm (their inputs to each matmul are rounded to 8 or 11 bits, so a
single element may stray further). References that are zero (dq of a row with one real key) are
compared absolutely, with a floor of 0.1 on the denominator. Shapes are random and ragged (each
source its own length and padding), with fully masked rows. bf16 `tl.dot` is computed wrongly by
the Triton 3.x interpreter, so on CPU the kernels multiply bf16 tiles in fp32 (same products; see
`_mm`); the tensor-core bf16 path itself is only exercised on a GPU.
"""
import importlib
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

os.environ["TRITON_INTERPRET"] = "1"   # must precede the first import of triton's jit
triton = pytest.importorskip("triton", reason="triton is not installed (optional: the fused attention kernels)")

from modeling import attention as attention_module  # noqa: E402
from modeling.attention import MultiHeadAttention, attention, eager_attention  # noqa: E402

for _name in ("modeling.kernels.triton_attention", "modeling.kernels"):   # imported earlier without the interpreter
    if _name in sys.modules:
        importlib.reload(sys.modules[_name])
from modeling.kernels.triton_attention import fused_attention, fused_multi_source_attention  # noqa: E402

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    error = actual.double() - expected
    if actual.dtype == torch.float32:
        return (error.abs().max() / expected.abs().max().clamp_min(0.1)).item()
    return (error.norm() / expected.norm().clamp_min(0.1 * expected.numel() ** 0.5)).item()


def _ragged_mask(g, batch, length, fully_masked_row=None):
    """Padding masks: real keys first, a random length per sample; optionally one sample without keys."""
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    mask = torch.arange(length)[None] < lengths[:, None]
    if fully_masked_row is not None:
        mask[fully_masked_row] = False
    return mask


def _leaf(g, shape, dtype):
    return torch.randn(*shape, generator=g).to(dtype).requires_grad_()


def _grads(out, inputs, grad):
    outs = out if isinstance(out, (list, tuple)) else [out]
    grads = grad if isinstance(grad, (list, tuple)) else [grad]
    return torch.autograd.grad(outs, inputs, [gr.to(o.dtype) for o, gr in zip(outs, grads)])


def _reference(tensors):
    return [t.detach().double().requires_grad_() for t in tensors]


@pytest.mark.parametrize("dtype,d,seed", [
    (torch.float32, 32, 0), (torch.float32, 64, 1), (torch.float32, 48, 2), (torch.float32, 128, 3),
    (torch.float16, 64, 4), (torch.bfloat16, 32, 5), (torch.bfloat16, 128, 6),
    (torch.float32, 16, 7), (torch.bfloat16, 16, 8),      # head dim 16: the quickstart's and the ablation's
    (torch.float16, 48, 9), (torch.bfloat16, 80, 10),     # half precision, head dims that are no power of two
])
def test_single_source_matches_eager(dtype, d, seed):
    g = torch.Generator().manual_seed(seed)
    b, h = 2, 2
    lq, lk = (int(x) for x in torch.randint(1, 40, (2,), generator=g))
    q, k, v = _leaf(g, (b, h, lq, d), dtype), _leaf(g, (b, h, lk, d), dtype), _leaf(g, (b, h, lk, d), dtype)
    mask = _ragged_mask(g, b, lk, fully_masked_row=1 if seed % 2 else None)
    out = fused_attention(q, k, v, mask)
    assert out.dtype == dtype and out.shape == (b, h, lq, d)
    qr, kr, vr = _reference((q, k, v))
    ref = eager_attention(qr, kr, vr, mask)
    assert _rel(out, ref) <= TOLERANCE[dtype]
    grad = torch.randn(b, h, lq, d, generator=g, dtype=torch.float64)
    for got, want in zip(_grads(out, (q, k, v), grad), _grads(ref, (qr, kr, vr), grad)):
        assert _rel(got, want) <= TOLERANCE[dtype]
    if seed % 2:
        assert torch.all(out[1] == 0)


@pytest.mark.parametrize("dtype,lq", [(torch.float32, 1), (torch.float32, 9), (torch.bfloat16, 1)])
def test_fusion_sum_of_three_sources(dtype, lq):
    """LAVIMO fusion: one query over motion, text and video features, outputs summed."""
    g = torch.Generator().manual_seed(10 + lq)
    b, h, d = 3, 2, 32
    lengths = (37, 11, 20)
    q = _leaf(g, (b, h, lq, d), dtype)
    kvs = [(_leaf(g, (b, h, n, d), dtype), _leaf(g, (b, h, n, d), dtype)) for n in lengths]
    masks = [_ragged_mask(g, b, n, fully_masked_row=i) for i, n in enumerate(lengths)]   # each source empties one sample
    out = fused_multi_source_attention(q, [(k, v, m) for (k, v), m in zip(kvs, masks)], reduce="sum")
    leaves = [q, *[t for kv in kvs for t in kv]]
    refs = _reference(leaves)
    ref = sum(eager_attention(refs[0], refs[1 + 2 * i], refs[2 + 2 * i], masks[i]) for i in range(3))
    assert _rel(out, ref) <= TOLERANCE[dtype]
    grad = torch.randn(b, h, lq, d, generator=g, dtype=torch.float64)
    for got, want in zip(_grads(out, leaves, grad), _grads(ref, refs, grad)):
        assert _rel(got, want) <= TOLERANCE[dtype]


def _limited_gpu(monkeypatch, largest_tile):
    """Kernels that Triton finds too large for the GPU at launch (OutOfResources) above
    `largest_tile` rows or keys; returns the (BLOCK_M, BLOCK_N, num_stages) of every launch tried."""
    from triton.runtime.errors import OutOfResources

    from modeling.kernels import triton_attention as ta

    launched: dict[str, list] = {}
    for name in ("_forward_kernel", "_backward_dkdv_kernel", "_backward_dq_kernel"):
        kernel = getattr(ta, name)

        class Limited:
            def __getitem__(self, grid, kernel=kernel, name=name):
                def run(*args, **kw):
                    launched.setdefault(name, []).append((kw["BLOCK_M"], kw["BLOCK_N"], kw["num_stages"]))
                    if max(kw["BLOCK_M"], kw["BLOCK_N"]) > largest_tile:
                        raise OutOfResources(110_000, 101_376, "shared memory")
                    return kernel[grid](*args, **kw)
                return run
        monkeypatch.setattr(ta, name, Limited())
    return launched


def test_tiles_shrink_where_the_estimate_misjudged_a_gpu(monkeypatch):
    """The last resort: a GPU on which Triton finds the chosen tiles too large at launch. The
    launches retry with one pipeline stage fewer, then halved tiles, and give the eager results;
    multi-block loops run too (queries and keys longer than the small tiles)."""
    launched = _limited_gpu(monkeypatch, 16)
    g = torch.Generator().manual_seed(21)
    b, h, lq, lk, d = 2, 2, 70, 45, 32
    q, k, v = _leaf(g, (b, h, lq, d), torch.float32), _leaf(g, (b, h, lk, d), torch.float32), \
        _leaf(g, (b, h, lk, d), torch.float32)
    mask = _ragged_mask(g, b, lk)
    out = fused_attention(q, k, v, mask)
    qr, kr, vr = _reference((q, k, v))
    ref = eager_attention(qr, kr, vr, mask)
    assert _rel(out, ref) <= TOLERANCE[torch.float32]
    grad = torch.randn(b, h, lq, d, generator=g, dtype=torch.float64)
    for got, want in zip(_grads(out, (q, k, v), grad), _grads(ref, (qr, kr, vr), grad)):
        assert _rel(got, want) <= TOLERANCE[torch.float32]
    # fp32, head dim 32: 64 x 64 tiles, 3 stages; then 2 stages; then the larger tile halved
    assert launched["_forward_kernel"] == [(64, 64, 3), (64, 64, 2), (32, 64, 2), (32, 32, 2), (16, 32, 2), (16, 16, 2)]
    assert all(tiles[-1][:2] == (16, 16) for tiles in launched.values())


def test_batch_times_heads_is_on_the_grid_axis_without_the_65535_cap(monkeypatch):
    """CUDA caps grid axes 1 and 2 at 65,535 and axis 0 at 2^31 - 1: every kernel puts batch * heads
    on axis 0, so B >= 8,192 at 8 heads runs fused; the blocks of queries or keys go on axis 1."""
    from modeling.kernels import triton_attention as ta

    grids, launch = {}, ta._launch
    monkeypatch.setattr(ta, "_launch", lambda kernel, grid, args, config, name, **kw: (
        grids.__setitem__(name, grid(config)), launch(kernel, grid, args, config, name, **kw))[1])
    g = torch.Generator().manual_seed(5)
    b, h, lq, lk, d = 3, 2, 70, 45, 16
    q, k, v = (_leaf(g, (b, h, n, d), torch.float32) for n in (lq, lk, lk))
    fused_attention(q, k, v, _ragged_mask(g, b, lk)).sum().backward()
    assert set(grids) == {"forward", "dkdv", "dq"} and all(grid[0] == b * h for grid in grids.values())
    assert grids["forward"][1] > 1 and grids["dq"][1] > 1     # several query blocks: the loops are covered


def test_calls_that_fit_no_configuration_run_sdpa_with_one_warning(monkeypatch):
    """Where not even 16 x 16 tiles fit (found up front from the shared-memory table, or by Triton at
    launch), the fused call raises DoesNotFit before anything ran, and `attention` /
    `multi_source_attention` run SDPA instead, warning once per (device, dtype, head dim)."""
    from modeling.attention import multi_source_attention
    from modeling.kernels import triton_attention as ta

    monkeypatch.setattr(attention_module, "_SDPA_FALLBACKS", set())
    g = torch.Generator().manual_seed(22)
    q, k, v = (torch.randn(2, 2, 9, 32, generator=g) for _ in range(3))
    mask = _ragged_mask(g, 2, 9)
    sdpa = attention(q, k, v, mask, backend="sdpa")
    tiny = ta.DeviceLimits((8, 6), 4096)    # a shared memory no 16 x 16 tile fits
    assert ta.launch_config("forward", torch.float32, 32, 9, 9, tiny) is None
    monkeypatch.setattr(ta, "device_limits", lambda device: tiny)
    with pytest.raises(ta.DoesNotFit, match="forward/dkdv/dq kernel fits sm_86"):
        fused_attention(q.requires_grad_(), k, v, mask)
    q.requires_grad_(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.equal(attention(q, k, v, mask, backend="triton"), sdpa)
        # the same shape again: no second warning; another head dim: its own
        assert torch.equal(multi_source_attention(q, [(k, v, mask)], backend="triton"), sdpa)
        attention(q[..., :16], k[..., :16], v[..., :16], backend="triton")
    assert [str(w.message).split(": ")[-1] for w in caught] == [
        "running SDPA for torch.float32 attention with head dim 32 on cpu",
        "running SDPA for torch.float32 attention with head dim 16 on cpu"]
    monkeypatch.setattr(ta, "device_limits", lambda device: ta.INTERPRETER_LIMITS)
    _limited_gpu(monkeypatch, 8)    # the table says it fits, but Triton finds nothing small enough at launch
    with pytest.raises(ta.DoesNotFit, match="even with 16 x 16 tiles"):
        fused_attention(q, k, v, mask)
    with pytest.warns(RuntimeWarning, match="head dim 24"):
        assert torch.allclose(attention(q[..., :24], k[..., :24], v[..., :24], mask, backend="triton"),
                              attention(q[..., :24], k[..., :24], v[..., :24], mask, backend="sdpa"))


def test_launch_configurations_follow_the_gpu():
    """Configurations come from the GPU's limits up front: bf16 needs sm_80's tensor cores (a T4
    runs it on SDPA); GPUs with less shared memory get fewer pipeline stages, then smaller tiles;
    short inputs get tiles no longer than themselves."""
    from modeling.kernels import triton_attention as ta

    def config(kernel, dtype, d, arch, lq=512, max_len=512):
        limits = ta.DeviceLimits(arch, ta.SHARED_MEMORY_PER_BLOCK[arch])
        return ta.launch_config(kernel, dtype, d, lq, max_len, limits)

    assert config("forward", torch.bfloat16, 64, (7, 5)) is None
    assert config("forward", torch.float16, 64, (7, 5)) is not None
    h100, a10 = config("dq", torch.bfloat16, 128, (9, 0)), config("dq", torch.bfloat16, 128, (8, 6))
    assert h100 == ta.LaunchConfig(64, 64, 128, 4, 3) and a10 == ta.LaunchConfig(64, 64, 128, 4, 2)
    assert config("dq", torch.float32, 128, (7, 5)) == ta.LaunchConfig(32, 16, 128, 8, 2)
    assert config("forward", torch.bfloat16, 80, (8, 0), lq=1, max_len=20)[:3] == (16, 32, 128)
    for kernel in ta.KERNELS:   # every arch of the table fits something for every dtype it runs
        for arch in ta.SHARED_MEMORY_PER_BLOCK:
            for dtype in (torch.float16, torch.float32):
                assert all(config(kernel, dtype, d, arch) is not None for d in (16, 48, 128))


@pytest.mark.parametrize("dtype,lq", [(torch.float32, 70), (torch.float16, 9), (torch.bfloat16, 9)])
def test_dropout_matches_eager_with_the_same_mask(dtype, lq):
    """Attention dropout inside the kernels: the Philox mask the forward draws (and both backwards
    redraw) is `dropout_keep_mask`; outputs and gradients equal eager attention whose normalized
    probabilities are multiplied by that mask / (1 - p), over two packed sources with their own
    softmax, with a fully masked row, over several query and key blocks."""
    from modeling.kernels.triton_attention import dropout_keep_mask

    g = torch.Generator().manual_seed(31)
    b, h, d, rate, seed = 2, 2, 32, 0.3, 1234
    lengths = (45, 20)
    q = _leaf(g, (b, h, lq, d), dtype)
    kvs = [(_leaf(g, (b, h, n, d), dtype), _leaf(g, (b, h, n, d), dtype)) for n in lengths]
    masks = [_ragged_mask(g, b, n, fully_masked_row=i) for i, n in enumerate(lengths)]
    out = fused_multi_source_attention(q, [(k, v, m) for (k, v), m in zip(kvs, masks)], "sum", rate, seed)
    keep = dropout_keep_mask(seed, rate, b, h, lq, sum(lengths), "cpu")
    assert abs(keep.float().mean().item() - (1 - rate)) < 0.02          # the rate it was asked for
    leaves = [q, *[t for kv in kvs for t in kv]]
    refs = _reference(leaves)
    ref, start = 0.0, 0
    for i, n in enumerate(lengths):
        scores = refs[0] @ refs[1 + 2 * i].transpose(-1, -2) / d ** 0.5
        scores = scores.masked_fill(~masks[i][:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, -1).nan_to_num(0.0)
        ref = ref + (probs * keep[..., start:start + n] / (1 - rate)) @ refs[2 + 2 * i]
        start += n
    # bf16: the kept probabilities, scaled by 1 / (1 - p), and dS are rounded to 8 bits before the
    # products, so gradients stray further than without dropout (1.1-1.7% here); fp16 on the same
    # inputs is within 4e-4 and fp32 within 1e-6, which shows the arithmetic itself is exact
    tolerance = 2.5e-2 if dtype == torch.bfloat16 else TOLERANCE[dtype]
    assert _rel(out, ref) <= tolerance
    grad = torch.randn(b, h, lq, d, generator=g, dtype=torch.float64)
    for got, want in zip(_grads(out, leaves, grad), _grads(ref, refs, grad)):
        assert _rel(got, want) <= tolerance
    # the same seed draws the same mask; another seed another one
    again = fused_multi_source_attention(q, [(k, v, m) for (k, v), m in zip(kvs, masks)], "sum", rate, seed)
    assert torch.equal(again, out)
    assert not torch.equal(dropout_keep_mask(seed + 1, rate, b, h, lq, sum(lengths), "cpu"), keep)


def test_parallel_self_and_cross_with_own_queries():
    """SGPA: self- and cross-attention outputs returned apart, each source with its own query."""
    g = torch.Generator().manual_seed(20)
    b, h, lq, d = 2, 2, 13, 64
    q_self, q_cross = _leaf(g, (b, h, lq, d), torch.float32), _leaf(g, (b, h, lq, d), torch.float32)
    k_self, v_self = _leaf(g, (b, h, lq, d), torch.float32), _leaf(g, (b, h, lq, d), torch.float32)
    k_cross, v_cross = _leaf(g, (b, h, 29, d), torch.float32), _leaf(g, (b, h, 29, d), torch.float32)
    m_self, m_cross = _ragged_mask(g, b, lq), _ragged_mask(g, b, 29, fully_masked_row=0)
    outs = fused_multi_source_attention([q_self, q_cross], [(k_self, v_self, m_self), (k_cross, v_cross, m_cross)],
                                        reduce="none")
    leaves = [q_self, q_cross, k_self, v_self, k_cross, v_cross]
    r = _reference(leaves)
    refs = [eager_attention(r[0], r[2], r[3], m_self), eager_attention(r[1], r[4], r[5], m_cross)]
    assert len(outs) == 2 and all(_rel(o, ref) <= 1e-5 for o, ref in zip(outs, refs))
    grads = [torch.randn(b, h, lq, d, generator=g, dtype=torch.float64) for _ in range(2)]
    for got, want in zip(_grads(outs, leaves, grads), _grads(refs, r, grads)):
        assert _rel(got, want) <= 1e-5


def test_all_keys_masked_gives_zero_output_and_gradients():
    g = torch.Generator().manual_seed(30)
    q, k, v = (_leaf(g, (1, 2, 5, 32), torch.float32) for _ in range(3))
    k2, v2 = _leaf(g, (1, 2, 3, 32), torch.float32), _leaf(g, (1, 2, 3, 32), torch.float32)
    none = torch.zeros(1, 5, dtype=torch.bool)
    out = fused_multi_source_attention(q, [(k, v, none), (k2, v2, torch.zeros(1, 3, dtype=torch.bool))])
    assert torch.all(out == 0)
    grads = torch.autograd.grad(out, (q, k, v, k2, v2), torch.randn_like(out))
    assert all(torch.all(gr == 0) for gr in grads)


def test_attention_interface_routes_to_the_kernel():
    g = torch.Generator().manual_seed(40)
    torch.manual_seed(40)
    mha = MultiHeadAttention(64, 2, backend="triton")
    x, mem = torch.randn(2, 7, 64, generator=g), torch.randn(2, 12, 64, generator=g)
    mask = _ragged_mask(g, 2, 12, fully_masked_row=1)
    fused = mha(x, mem, key_mask=mask)
    mha.backend = "sdpa"
    assert torch.allclose(fused, mha(x, mem, key_mask=mask), atol=1e-5)   # non-contiguous head views
    q, k, v = (torch.randn(1, 2, 6, 32, generator=g) for _ in range(3))
    assert _rel(attention(q, k, v, backend="triton"), eager_attention(q.double(), k.double(), v.double())) <= 1e-5
    assert attention_module._resolve_backend("auto", torch.device("cuda")) == "triton"
    assert attention_module._resolve_backend("auto", torch.device("cpu")) == "sdpa"


def test_bad_inputs_are_rejected(monkeypatch):
    q = torch.randn(1, 2, 4, 32)
    with pytest.raises(ValueError, match="head dims"):
        fused_attention(torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="key_mask"):
        fused_attention(q, q, q, torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="source 1"):
        fused_multi_source_attention(q, [(q, q, None), (q.half(), q.half(), None)])
    with pytest.raises(ValueError, match="reduce"):
        fused_multi_source_attention(q, [(q, q, None)], reduce="mean")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="CUDA"):
        fused_attention(q, q, q)


# GPU compilation without a GPU: `tools.kernel_matrix` runs a training step of the wrapper (dropout
# on) with every launch replaced by a compile for the named architecture with the wheel's ptxas, so
# it compiles what a GPU run launches (configuration, Triton's argument specialisation). This catches
# what the interpreter cannot (types in loops, layouts) and checks the launch configurations: each
# kernel fits the architecture's shared memory, at or under `shared_memory_estimate` (so the
# configuration is chosen right up front), and spills no more than `SPILL_BOUND`. One subprocess
# without TRITON_INTERPRET; Triton's cache makes reruns fast. bf16 on sm_75 must go to SDPA.
def _compile_matrix(archs, dtypes, head_dims) -> None:
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip(f"this triton wheel has no CUDA backend / ptxas ({ptxas}); GPU compilation cannot be checked")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    args = ["--arch", *archs, "--dtype", *dtypes, "--head-dim", *map(str, head_dims), "--json"]
    done = subprocess.run([sys.executable, "-m", "tools.kernel_matrix", *args], env=env, capture_output=True,
                          text=True, timeout=840)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(archs) * len(dtypes) * len(head_dims)
    from modeling.kernels.triton_attention import KERNELS
    from tools.kernel_matrix import spill_bound

    for r in results:
        case = f"{r['arch']} {r['dtype']} head dim {r['head_dim']}"
        if (r["arch"], r["dtype"]) == ("sm_75", "bf16"):
            assert "sm_75" in r["sdpa"], case
            continue
        assert [k["kernel"] for k in r["kernels"]] == list(KERNELS), case
        for k in r["kernels"]:
            assert k["shared"] <= min(k["shared_estimate"], k["shared_limit"]), (case, k)
            assert k["spill_bytes"] <= spill_bound(r["arch"], r["dtype"]), (case, k)


def test_kernels_compile_for_h100_and_a10():
    """The GPU that trains (H100, sm_90) and the smallest shared memory among tensor-core GPUs (A10,
    RTX 30xx: 99 KB, sm_86), in every dtype, at the head dims of the quickstart (16), of the
    paper-sized models (64), and the largest (128), and one that is no power of two (80)."""
    _compile_matrix(["sm_90", "sm_86"], ["bf16", "fp16", "fp32"], [16, 64, 80, 128])


@pytest.mark.slow
def test_kernels_compile_for_every_architecture():
    """The whole matrix, the one `python -m tools.kernel_matrix` tabulates for the README: adds T4
    (sm_75: 64 KB, FMA dots, bf16 on SDPA), A100 (sm_80), L4 / RTX 40xx (sm_89), head dims 32 and 48."""
    from tools.kernel_matrix import ARCHS, DTYPES, HEAD_DIMS

    _compile_matrix(list(ARCHS), list(DTYPES), list(HEAD_DIMS))


def test_fusion_and_sgpa_modules_run_on_the_fused_kernel():
    """LAVIMO's fusion (3 sources summed) and MLP's SGPA (self + cross) through the kernel = SDPA."""
    from modeling.fusion import FusionAttention
    from modeling.localization import SGPABlock

    torch.manual_seed(0)
    d, heads = 64, 2
    fused, ref = FusionAttention(d, heads, backend="triton").eval(), FusionAttention(d, heads, backend="sdpa").eval()
    ref.load_state_dict(fused.state_dict())
    feats = {s: (torch.randn(2, n, d), torch.rand(2, n) > 0.2) for s, n in (("motion", 7), ("text", 5), ("video", 4))}
    feats["video"][1][1] = False  # second sample has no video
    emb = torch.randn(2, d)
    assert torch.allclose(fused(emb, feats), ref(emb, feats), atol=1e-5)

    block, block_ref = SGPABlock(d, heads, 128, 0.0, "triton").eval(), SGPABlock(d, heads, 128, 0.0, "sdpa").eval()
    block_ref.load_state_dict(block.state_dict())
    x, other = torch.randn(2, 6, d), torch.randn(2, 9, d)
    xm, om = torch.rand(2, 6) > 0.2, torch.rand(2, 9) > 0.2
    assert torch.allclose(block(x, xm, other, om), block_ref(x, xm, other, om), atol=1e-5)
