"""Fused multi-source attention in Triton: one launch for S key/value sources.

out_s = softmax(q_s k_s^T / sqrt(D) over the real keys of source s) v_s, for s = 1..S, returned
as the S outputs or their sum. LAVIMO's fusion attention is the sum over motion, text and video;
MLP's SGPA block takes the self- and cross-attention outputs apart; S = 1 is plain attention.

How the sources share one launch: their keys, values and key masks are concatenated along the
key axis and a small table of segment starts tells each program where source s lives, so every
source keeps its own length and padding. Queries are stacked as (S, B, H, Lq, D); a query shared
by all sources is an `expand` (stride 0 over S) and autograd sums its S gradients.

Kernels (FlashAttention-2 scheme): the forward keeps one online softmax per source and saves each
row's log-sum-exp; the backward recomputes the probabilities from it (one kernel for dK/dV, one for
dQ), so no Lq x Lk matrix is ever stored. A query whose keys are all masked gets a zero output and
zero gradients (its log-sum-exp is stored as +inf, which zeroes every recomputed probability).
Exponentials are base 2 (exp2 is the fast instruction); the 1/sqrt(D) scale is folded into log2(e).
"""
from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

LOG2E = 1.4426950408889634
MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 128
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _mm(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """tl.dot with fp32 accumulation. UPCAST (set only under TRITON_INTERPRET for bf16, whose tl.dot
    the 3.x interpreter computes wrongly) multiplies in fp32: bf16 x bf16 products are exact in fp32,
    so the result equals the GPU's bf16 tensor-core dot up to summation order."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _keep(seed, rate, pid_bh, LQ, LK_TOTAL, offs_m, offs_n):
    """Attention dropout's keep mask for rows offs_m and packed keys offs_n of one (batch, head):
    Philox random numbers at a counter that names the element, so every kernel that needs the
    mask (forward, both backwards, `dropout_keep_mask`) draws the same one without storing it."""
    counter = (pid_bh * LQ + offs_m)[:, None] * LK_TOTAL + offs_n[None, :]
    return tl.rand(seed, counter.to(tl.int32)) >= rate


@triton.jit(do_not_specialize=["seed"])
def _forward_kernel(
    Q, K, V, MASK, SEG, PARTS, OUT, LSE,
    sq_s, sq_b, sq_h, sq_m, sq_d,
    sk_b, sk_h, sk_n, sk_d,
    sv_b, sv_h, sv_n, sv_d,
    sm_b, sm_n,
    H, LQ, D, LK_TOTAL, qk_scale, seed, rate,
    S: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    STORE_PARTS: tl.constexpr, STORE_SUM: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    DROPOUT: tl.constexpr,
):
    # batch * heads on grid axis 0 (up to 2^31 - 1; axes 1 and 2 stop at 65,535); int64: offsets of big tensors
    pid_bh, pid_m = tl.program_id(0).to(tl.int64), tl.program_id(1)
    b, h = pid_bh // H, pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok, d_ok = offs_m < LQ, offs_d < D
    # PARTS is (S, B, H, LQ, D), OUT (B, H, LQ, D), LSE (S, B, H, LQ), all contiguous.
    row = pid_bh * LQ + offs_m
    total = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for s in range(S):
        start, end = tl.load(SEG + s), tl.load(SEG + s + 1)
        q_ptrs = Q + s * sq_s + b * sq_b + h * sq_h + offs_m[:, None] * sq_m + offs_d[None, :] * sq_d
        q = tl.load(q_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        for n0 in range(start, end, BLOCK_N):
            n = n0 + offs_n
            n_ok = n < end
            key_ok = tl.load(MASK + b * sm_b + n * sm_n, mask=n_ok, other=0) != 0
            kt = tl.load(K + b * sk_b + h * sk_h + n[None, :] * sk_n + offs_d[:, None] * sk_d,
                         mask=d_ok[:, None] & n_ok[None, :], other=0.0)
            scores = _mm(q, kt, PRECISION, UPCAST) * qk_scale
            scores = tl.where(key_ok[None, :], scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            # While a row has seen no real key its max is -inf; shift by 0 then so exp2 gives 0, not NaN.
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_safe)
            p = tl.exp2(scores - m_safe[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + b * sv_b + h * sv_h + n[:, None] * sv_n + offs_d[None, :] * sv_d,
                        mask=n_ok[:, None] & d_ok[None, :], other=0.0)
            if DROPOUT:   # the normalizer keeps every probability; only the values see the dropout
                p = tl.where(_keep(seed, rate, pid_bh, LQ, LK_TOTAL, offs_m, n), p / (1.0 - rate), 0.0)
            acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, PRECISION, UPCAST)
            m_i = m_new
        has_keys = l_i > 0.0
        o = acc / tl.where(has_keys, l_i, 1.0)[:, None]
        lse = tl.where(has_keys, m_i + tl.log2(tl.where(has_keys, l_i, 1.0)), float("inf"))
        tl.store(LSE + s * tl.num_programs(0).to(tl.int64) * LQ + row, lse, mask=m_ok)
        out_mask = m_ok[:, None] & d_ok[None, :]
        if STORE_PARTS:
            part_ptrs = PARTS + (s * tl.num_programs(0).to(tl.int64) * LQ + row)[:, None] * D + offs_d[None, :]
            tl.store(part_ptrs, o.to(PARTS.dtype.element_ty), mask=out_mask)
        total += o
    if STORE_SUM:
        tl.store(OUT + row[:, None] * D + offs_d[None, :], total.to(OUT.dtype.element_ty),
                 mask=m_ok[:, None] & d_ok[None, :])


@triton.jit(do_not_specialize=["seed"])
def _backward_dkdv_kernel(
    Q, K, V, MASK, SEG, DO, LSE, DELTA, DK, DV,
    sq_s, sq_b, sq_h, sq_m, sq_d,
    sk_b, sk_h, sk_n, sk_d,
    sv_b, sv_h, sv_n, sv_d,
    sm_b, sm_n,
    sdo_s, sdo_b, sdo_h, sdo_m, sdo_d,
    H, LQ, D, LK_TOTAL, qk_scale, sm_scale, seed, rate,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    DROPOUT: tl.constexpr,
):
    pid_bh, pid_n, s = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
    b, h = pid_bh // H, pid_bh % H
    start, end = tl.load(SEG + s), tl.load(SEG + s + 1)
    n0 = start + pid_n * BLOCK_N
    if n0 < end:   # the grid covers the longest source; shorter ones have idle programs
        offs_n = n0 + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        n_ok, d_ok = offs_n < end, offs_d < D
        kv_mask = n_ok[:, None] & d_ok[None, :]
        key_ok = tl.load(MASK + b * sm_b + offs_n * sm_n, mask=n_ok, other=0) != 0
        k = tl.load(K + b * sk_b + h * sk_h + offs_n[:, None] * sk_n + offs_d[None, :] * sk_d, mask=kv_mask, other=0.0)
        v = tl.load(V + b * sv_b + h * sv_h + offs_n[:, None] * sv_n + offs_d[None, :] * sv_d, mask=kv_mask, other=0.0)
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        stat_base = (s * tl.num_programs(0).to(tl.int64) + pid_bh) * LQ
        for m0 in range(0, LQ, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            m_ok = offs_m < LQ
            q_mask = m_ok[:, None] & d_ok[None, :]
            q = tl.load(Q + s * sq_s + b * sq_b + h * sq_h + offs_m[:, None] * sq_m + offs_d[None, :] * sq_d,
                        mask=q_mask, other=0.0)
            do = tl.load(DO + s * sdo_s + b * sdo_b + h * sdo_h + offs_m[:, None] * sdo_m + offs_d[None, :] * sdo_d,
                         mask=q_mask, other=0.0)
            lse = tl.load(LSE + stat_base + offs_m, mask=m_ok, other=float("inf"))
            delta = tl.load(DELTA + stat_base + offs_m, mask=m_ok, other=0.0)
            scores = _mm(q, tl.trans(k), PRECISION, UPCAST) * qk_scale
            p = tl.exp2(scores - lse[:, None])
            p = tl.where(key_ok[None, :] & m_ok[:, None], p, 0.0)
            dp = _mm(do, tl.trans(v), PRECISION, UPCAST)
            if DROPOUT:   # O = (P * Z) V with Z = keep / (1 - rate): dV = (P * Z)^T dO, dP = (dO V^T) * Z
                keep = _keep(seed, rate, pid_bh, LQ, LK_TOTAL, offs_m, offs_n)
                dv += _mm(tl.trans(tl.where(keep, p / (1.0 - rate), 0.0).to(do.dtype)), do, PRECISION, UPCAST)
                dp = tl.where(keep, dp / (1.0 - rate), 0.0)
            else:
                dv += _mm(tl.trans(p.to(do.dtype)), do, PRECISION, UPCAST)
            ds = p * (dp - delta[:, None])
            dk += _mm(tl.trans(ds.to(q.dtype)), q, PRECISION, UPCAST)
        # DK, DV are contiguous (B, H, LK_TOTAL, D).
        out_ptrs = (pid_bh * LK_TOTAL + offs_n)[:, None] * D + offs_d[None, :]
        tl.store(DK + out_ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
        tl.store(DV + out_ptrs, dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit(do_not_specialize=["seed"])
def _backward_dq_kernel(
    Q, K, V, MASK, SEG, DO, LSE, DELTA, DQ,
    sq_s, sq_b, sq_h, sq_m, sq_d,
    sk_b, sk_h, sk_n, sk_d,
    sv_b, sv_h, sv_n, sv_d,
    sm_b, sm_n,
    sdo_s, sdo_b, sdo_h, sdo_m, sdo_d,
    H, LQ, D, LK_TOTAL, qk_scale, sm_scale, seed, rate,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    DROPOUT: tl.constexpr,
):
    pid_bh, pid_m, s = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
    b, h = pid_bh // H, pid_bh % H
    start, end = tl.load(SEG + s), tl.load(SEG + s + 1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok, d_ok = offs_m < LQ, offs_d < D
    q_mask = m_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + s * sq_s + b * sq_b + h * sq_h + offs_m[:, None] * sq_m + offs_d[None, :] * sq_d,
                mask=q_mask, other=0.0)
    do = tl.load(DO + s * sdo_s + b * sdo_b + h * sdo_h + offs_m[:, None] * sdo_m + offs_d[None, :] * sdo_d,
                 mask=q_mask, other=0.0)
    stat_base = (s * tl.num_programs(0).to(tl.int64) + pid_bh) * LQ
    lse = tl.load(LSE + stat_base + offs_m, mask=m_ok, other=float("inf"))
    delta = tl.load(DELTA + stat_base + offs_m, mask=m_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_ok = offs_n < end
        kv_mask = n_ok[:, None] & d_ok[None, :]
        key_ok = tl.load(MASK + b * sm_b + offs_n * sm_n, mask=n_ok, other=0) != 0
        k = tl.load(K + b * sk_b + h * sk_h + offs_n[:, None] * sk_n + offs_d[None, :] * sk_d, mask=kv_mask, other=0.0)
        v = tl.load(V + b * sv_b + h * sv_h + offs_n[:, None] * sv_n + offs_d[None, :] * sv_d, mask=kv_mask, other=0.0)
        scores = _mm(q, tl.trans(k), PRECISION, UPCAST) * qk_scale
        p = tl.where(key_ok[None, :], tl.exp2(scores - lse[:, None]), 0.0)
        dp = _mm(do, tl.trans(v), PRECISION, UPCAST)
        if DROPOUT:
            dp = tl.where(_keep(seed, rate, pid_bh, LQ, LK_TOTAL, offs_m, offs_n), dp / (1.0 - rate), 0.0)
        ds = p * (dp - delta[:, None])
        dq += _mm(ds.to(k.dtype), k, PRECISION, UPCAST)
    # DQ is contiguous (S, B, H, LQ, D).
    dq_ptrs = (stat_base + offs_m)[:, None] * D + offs_d[None, :]
    tl.store(DQ + dq_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=q_mask)


def _precision(dtype: torch.dtype) -> str:
    """tl.dot's input precision. fp32 follows torch's TF32 switch for CUDA matmuls, so that fp32
    stays exact unless the user asked for TF32; ROCm's Triton accepts no "tf32" (not even for
    16-bit inputs, where NVIDIA's ignores it), so HIP builds always get "ieee"."""
    if torch.version.hip is not None:
        return "ieee"
    if dtype == torch.float32 and not fp32_matmul_uses_tf32():
        return "ieee"
    return "tf32"   # Triton ignores it for fp16/bf16 inputs


def fp32_matmul_uses_tf32() -> bool:
    """Whether torch lets fp32 CUDA matmuls use TF32. The new API (`torch.backends.cuda.matmul.
    fp32_precision`, falling back to the global `torch.backends.fp32_precision`) wins when set:
    reading the legacy `allow_tf32` after it raises ("mix of the legacy and new APIs")."""
    for setting in (getattr(torch.backends.cuda.matmul, "fp32_precision", "none"),
                    getattr(torch.backends, "fp32_precision", "none")):
        if setting != "none":
            return setting == "tf32"
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32)
    except RuntimeError:   # the new API was set and reset: no answer, so stay exact
        return False


class DoesNotFit(RuntimeError):
    """No launch configuration of a fused kernel fits this GPU (or the GPU cannot run the dtype's
    dots); raised before anything ran, and `modeling.attention` then runs SDPA."""


class DeviceLimits(NamedTuple):
    """What a GPU gives one block. Registers are left out: every architecture here has 64K 32-bit
    registers per block and 255 per thread, more than 8 warps can claim, so registers decide spills
    (measured by `tools.kernel_matrix`), never whether a launch fits."""
    capability: tuple[int, int]
    shared_memory: int   # bytes one block may opt in to


class LaunchConfig(NamedTuple):
    block_m: int     # query rows per tile
    block_n: int     # keys per tile
    block_d: int     # head-dim columns (the head dim rounded up to a power of two)
    num_warps: int
    num_stages: int  # Triton's software-pipelining depth for the loads in the kernel's loop


# The three kernels of one training step, in launch order.
KERNELS = ("forward", "dkdv", "dq")
# Shared memory one block may opt in to, by compute capability (CUDA C++ Programming Guide,
# technical specifications per compute capability): T4 64 KB; A100 and Jetson Orin 163 KB; A10,
# RTX 30xx (8.6), L4 and RTX 40xx (8.9) 99 KB; H100 227 KB. Other GPUs report their own.
SHARED_MEMORY_PER_BLOCK = {(7, 5): 64 << 10, (8, 0): 163 << 10, (8, 6): 99 << 10, (8, 7): 163 << 10,
                           (8, 9): 99 << 10, (9, 0): 227 << 10}
# Triton 3.9 puts tl.dot on tensor cores (MMA) from sm_80 on; before, it multiplies on the FMA
# units, and there bf16 has no arithmetic of its own, so bf16 goes to SDPA.
MMA_CAPABILITY = (8, 0)
# The interpreter has no limits: it runs the H100 configurations, the ones training uses.
INTERPRETER_LIMITS = DeviceLimits((9, 0), SHARED_MEMORY_PER_BLOCK[(9, 0)])


def device_limits(device: torch.device) -> DeviceLimits:
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        shared = SHARED_MEMORY_PER_BLOCK.get(capability)
        if shared is None:
            shared = torch.cuda.get_device_properties(device).shared_memory_per_block_optin
        return DeviceLimits(capability, shared)
    if os.environ.get("TRITON_INTERPRET") == "1":
        return INTERPRETER_LIMITS
    raise RuntimeError(f"the fused Triton attention runs on CUDA tensors (got {device}); use "
                       "attention(..., backend='sdpa') on CPU, or set TRITON_INTERPRET=1 before importing triton")


def _uses_mma(dtype: torch.dtype, capability: tuple[int, int]) -> bool:
    """Whether tl.dot runs on tensor cores (MMA). Otherwise (fp32 in IEEE precision, and everything
    on sm_75) Triton multiplies on the FMA units, keeping whole operand rows in each thread's
    registers, which takes far smaller tiles to stay clear of spills."""
    return capability >= MMA_CAPABILITY and (dtype != torch.float32 or _precision(dtype) == "tf32")


# Tiles (block_m, block_n, num_warps) by kernel and head-dim tile: the largest that compile with no
# more than 2 spilled registers (tools.kernel_matrix.SPILL_BOUND_MMA) with attention dropout on (its
# Philox numbers take registers), measured with `python -m tools.kernel_matrix`; among equal areas,
# more queries per forward and dQ program and more keys per dK/dV program (the operand each program
# keeps). fp16 and bf16 on tensor cores:
_HALF_TILES = {
    "forward": {16: (128, 64, 4), 32: (128, 64, 4), 64: (128, 64, 4), 128: (64, 64, 4)},
    "dkdv": {16: (64, 32, 4), 32: (64, 32, 4), 64: (64, 32, 4), 128: (32, 64, 8)},
    "dq": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 4), 128: (64, 64, 4)},
}
# fp32 (and all of sm_75): FMA dots, whose registers grow with tile x head dim; dK/dV at head dims
# above 64 spills some even at 16 x 16 (tools.kernel_matrix.SPILL_BOUND_FMA).
_FP32_TILES = {
    "forward": {16: (64, 32, 8), 32: (64, 64, 8), 64: (32, 64, 8), 128: (32, 32, 8)},
    "dkdv": {16: (32, 64, 4), 32: (32, 32, 8), 64: (16, 16, 8), 128: (16, 16, 8)},
    "dq": {16: (64, 32, 4), 32: (64, 64, 8), 64: (64, 32, 8), 128: (64, 16, 8)},
}
# Triton's default pipelining depth: two tiles in flight while one is used.
NUM_STAGES = 3


def _block(length: int, cap: int) -> int:
    """Power-of-two tile, at least 16 (tl.dot's minimum), no larger than needed for short inputs."""
    return min(cap, max(16, triton.next_power_of_2(max(length, 1))))


def launch_config(kernel: str, dtype: torch.dtype, head_dim: int, lq: int, max_len: int,
                  limits: DeviceLimits) -> LaunchConfig | None:
    """The configuration the wrapper launches `kernel` (one of KERNELS) with, for lq queries and
    sources of at most max_len keys on a GPU with `limits`: the measured tiles for its dtype and head
    dim, cut down to short inputs, then made smaller (fewer pipeline stages first, then halved
    tiles) until their estimated shared memory fits the GPU. None where nothing fits: bf16 before
    sm_80, or not even 16 x 16 tiles."""
    if dtype == torch.bfloat16 and limits.capability < MMA_CAPABILITY:
        return None
    block_d = max(16, triton.next_power_of_2(head_dim))
    half = dtype != torch.float32 and limits.capability >= MMA_CAPABILITY
    block_m, block_n, num_warps = (_HALF_TILES if half else _FP32_TILES)[kernel][block_d]
    config = LaunchConfig(_block(lq, block_m), _block(max_len, block_n), block_d, num_warps, NUM_STAGES)
    if not half and dtype != torch.float32:   # 16-bit inputs to FMA dots (sm_75) take registers to convert
        config = _halved(config) or config
    while config is not None and shared_memory_estimate(kernel, config, dtype, limits) > limits.shared_memory:
        config = _smaller(config)
    return config


def shared_memory_estimate(kernel: str, config: LaunchConfig, dtype: torch.dtype, limits: DeviceLimits) -> int:
    """Bytes of shared memory Triton allocates for `kernel` under `config`: the tiles the loop
    streams (K and V for the forward and dQ, Q and dO for dK/dV), one buffer per pipeline stage
    ahead of the one in use; the tiles each program loads once; one queries x keys tile, the second
    dot's operand; and the per-stage rows of statistics and key masks. FMA dots stage their operands
    as fp32 whatever the dtype; Hopper's wgmma also stages its register operands, so there the
    once-loaded and queries x keys tiles count twice. At or above what Triton 3.9 allocates for every
    configuration the compile matrix launches (tests/modeling/test_kernels_attention.py)."""
    m, n, d = config.block_m, config.block_n, config.block_d
    streamed, resident = {"forward": (2 * n * d, m * d), "dq": (2 * n * d, 2 * m * d),
                          "dkdv": (2 * m * d, 2 * n * d)}[kernel]
    mma = _uses_mma(dtype, limits.capability)
    copies = 2 if mma and limits.capability >= (9, 0) else 1
    tiles = (config.num_stages - 1) * streamed + copies * (resident + m * n)
    return tiles * (dtype.itemsize if mma else 4) + (config.num_stages - 1) * 8 * max(m, n)


def _halved(config: LaunchConfig) -> LaunchConfig | None:
    """config with its larger tile halved (the query tile on a tie), or None at 16 x 16."""
    if max(config.block_m, config.block_n) <= 16:
        return None
    if config.block_m >= config.block_n:
        return config._replace(block_m=config.block_m // 2)
    return config._replace(block_n=config.block_n // 2)


def _smaller(config: LaunchConfig) -> LaunchConfig | None:
    """The next configuration to try where `config` does not fit: one pipeline stage fewer (down to
    two), else the larger tile halved; None at 16 x 16."""
    return config._replace(num_stages=config.num_stages - 1) if config.num_stages > 2 else _halved(config)


def _launch(kernel, grid: Callable[[LaunchConfig], tuple], args: tuple, config: LaunchConfig, name: str,
            **constexprs) -> None:
    """kernel[grid(config)](*args) with config's tiles, warps and stages. Last resort where the
    shared-memory estimate misjudged a GPU: while Triton finds the kernel needs more shared memory
    or registers than the GPU has (OutOfResources, raised before it runs), retry with a smaller
    tile (the results do not depend on the tiles)."""
    while True:
        try:
            kernel[grid(config)](*args, BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_D=config.block_d,
                                 num_warps=config.num_warps, num_stages=config.num_stages, **constexprs)
            return
        except OutOfResources as err:
            smaller = _smaller(config)
            if smaller is None:
                raise DoesNotFit(f"the fused attention {name} kernel does not fit this GPU even with 16 x 16 "
                                 f"tiles ({err}); use attention_backend=sdpa") from err
            config = smaller


def _upcast(dtype: torch.dtype) -> bool:
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"


class _MultiSourceAttention(torch.autograd.Function):
    """q (S, B, H, Lq, D) (any strides); k, v (B, H, Ltot, D) packed sources; mask int8 (B, Ltot);
    seg int32 (S + 1,) segment starts; returns the sum (B, H, Lq, D) or the parts (S, B, H, Lq, D)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, seg, max_len: int, reduce_sum: bool, dropout_p: float, seed: int,
                limits: DeviceLimits):
        n_src, batch, heads, lq, d = q.shape
        # Every kernel this step will launch gets its configuration now, so that a GPU too small
        # for one of them turns the whole call to SDPA before anything ran.
        training = any(ctx.needs_input_grad[:3])
        configs = {name: launch_config(name, q.dtype, d, lq, max_len, limits)
                   for name in (KERNELS if training else KERNELS[:1])}
        misfits = [name for name, config in configs.items() if config is None]
        if misfits:
            raise DoesNotFit(f"no launch configuration of the fused attention {'/'.join(misfits)} kernel fits "
                             f"sm_{limits.capability[0]}{limits.capability[1]} for {q.dtype}, head dim {d}")
        store_parts = not reduce_sum or training
        lse = torch.empty((n_src, batch, heads, lq), device=q.device, dtype=torch.float32)
        parts = torch.empty((n_src, batch, heads, lq, d), device=q.device, dtype=q.dtype) if store_parts else lse
        out = torch.empty((batch, heads, lq, d), device=q.device, dtype=q.dtype) if reduce_sum else lse
        sm_scale = 1.0 / math.sqrt(d)
        _launch(_forward_kernel, lambda c: (batch * heads, triton.cdiv(lq, c.block_m)),
                (q, k, v, mask, seg, parts, out, lse, *q.stride(), *k.stride(), *v.stride(), *mask.stride(),
                 heads, lq, d, k.shape[2], sm_scale * LOG2E, seed, dropout_p),
                configs["forward"], "forward",
                S=n_src, STORE_PARTS=store_parts, STORE_SUM=reduce_sum, PRECISION=_precision(q.dtype),
                UPCAST=_upcast(q.dtype), DROPOUT=dropout_p > 0.0)
        ctx.save_for_backward(q, k, v, mask, seg, parts if store_parts else None, lse)
        ctx.max_len, ctx.reduce_sum, ctx.dropout_p, ctx.seed = max_len, reduce_sum, dropout_p, seed
        ctx.configs = configs
        return out if reduce_sum else parts

    @staticmethod
    def backward(ctx, grad):
        q, k, v, mask, seg, parts, lse = ctx.saved_tensors
        n_src, batch, heads, lq, d = q.shape
        grad = grad.to(q.dtype)
        # With a sum every source receives the same output gradient: a stride-0 view, no copy.
        do = grad.unsqueeze(0).expand(n_src, *grad.shape) if ctx.reduce_sum else grad
        delta = (do.float() * parts.float()).sum(-1).contiguous()          # (S, B, H, Lq)
        dq = torch.empty((n_src, batch, heads, lq, d), device=q.device, dtype=q.dtype)
        dk = torch.empty((batch, heads, k.shape[2], d), device=q.device, dtype=k.dtype)
        dv = torch.empty((batch, heads, v.shape[2], d), device=q.device, dtype=v.dtype)
        sm_scale = 1.0 / math.sqrt(d)
        common = (*q.stride(), *k.stride(), *v.stride(), *mask.stride(), *do.stride(),
                  heads, lq, d, k.shape[2], sm_scale * LOG2E, sm_scale, ctx.seed, ctx.dropout_p)
        constexprs = dict(PRECISION=_precision(q.dtype), UPCAST=_upcast(q.dtype), DROPOUT=ctx.dropout_p > 0.0)
        _launch(_backward_dkdv_kernel, lambda c: (batch * heads, triton.cdiv(ctx.max_len, c.block_n), n_src),
                (q, k, v, mask, seg, do, lse, delta, dk, dv, *common), ctx.configs["dkdv"], "dkdv", **constexprs)
        _launch(_backward_dq_kernel, lambda c: (batch * heads, triton.cdiv(lq, c.block_m), n_src),
                (q, k, v, mask, seg, do, lse, delta, dq, *common), ctx.configs["dq"], "dq", **constexprs)
        return dq, dk, dv, None, None, None, None, None, None, None


def _check(q: torch.Tensor, sources: Sequence[tuple], queries: list[torch.Tensor]) -> None:
    if not sources:
        raise ValueError("fused attention needs at least one (k, v, key_mask) source")
    if q.dtype not in DTYPES:
        raise TypeError(f"fused attention supports {DTYPES}, got {q.dtype}")
    batch, heads, _, d = q.shape
    if not MIN_HEAD_DIM <= d <= MAX_HEAD_DIM:
        raise ValueError(f"fused attention supports head dims {MIN_HEAD_DIM}..{MAX_HEAD_DIM}, got {d}; use backend='sdpa'")
    for qs in queries:
        if qs.shape != q.shape or qs.dtype != q.dtype or qs.device != q.device:
            raise ValueError(f"all queries must share shape/dtype/device, got {tuple(qs.shape)} {qs.dtype} and "
                             f"{tuple(q.shape)} {q.dtype}")
    for i, (k, v, key_mask) in enumerate(sources):
        if k.shape != v.shape or k.shape[:2] != (batch, heads) or k.shape[3] != d:
            raise ValueError(f"source {i}: k {tuple(k.shape)} and v {tuple(v.shape)} must be (B={batch}, H={heads}, Lk, D={d})")
        if k.dtype != q.dtype or v.dtype != q.dtype or k.device != q.device:
            raise ValueError(f"source {i}: k/v must have the query's dtype {q.dtype} and device {q.device}")
        if key_mask is not None and tuple(key_mask.shape) != (batch, k.shape[2]):
            raise ValueError(f"source {i}: key_mask {tuple(key_mask.shape)} must be (B={batch}, Lk={k.shape[2]})")


def fused_multi_source_attention(
    q: torch.Tensor | Sequence[torch.Tensor],
    sources: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    reduce: str = "sum",
    dropout_p: float = 0.0,
    seed: int | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Attention of queries over S sources in one kernel launch.

    q: (B, H, Lq, D) shared by all sources, or a sequence of S such tensors (one per source, e.g.
    each source's own query projection). sources: [(k (B, H, Lk_s, D), v (B, H, Lk_s, D),
    key_mask (B, Lk_s) bool, True = real key, or None)]. reduce="sum" returns the (B, H, Lq, D) sum
    of the S outputs; "none" returns the list of S outputs. Rows without a real key give zeros.
    dropout_p drops attention probabilities after each source's softmax (as `F.dropout` on them
    would), with a Philox mask from `seed` (default: drawn from torch's CPU generator) that the
    backward regenerates; `dropout_keep_mask(seed, ...)` returns that mask.
    """
    if reduce not in ("sum", "none"):
        raise ValueError(f"reduce must be 'sum' or 'none', got {reduce!r}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if dropout_p > 0.0 else 0
    queries = list(q) if isinstance(q, (list, tuple)) else []
    if queries and len(queries) != len(sources):
        raise ValueError(f"got {len(queries)} query tensors for {len(sources)} sources")
    first = queries[0] if queries else q
    _check(first, sources, queries)
    limits = device_limits(first.device)
    n_src = len(sources)
    q_all = torch.stack(queries) if queries else first.unsqueeze(0).expand(n_src, *first.shape)
    lengths = [k.shape[2] for k, _, _ in sources]
    masks = [torch.ones(first.shape[0], n, dtype=torch.bool, device=first.device) if m is None else m.bool()
             for (_, _, m), n in zip(sources, lengths)]
    if n_src == 1:
        k_all, v_all = sources[0][0], sources[0][1]
    else:
        k_all = torch.cat([k for k, _, _ in sources], dim=2)
        v_all = torch.cat([v for _, v, _ in sources], dim=2)
    mask = torch.cat(masks, dim=1).to(torch.int8)
    seg = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=first.device)
    reduce_sum = reduce == "sum" and n_src > 1    # one source: its output is the sum
    out = _MultiSourceAttention.apply(q_all, k_all, v_all, mask, seg, max(max(lengths), 1), reduce_sum,
                                      float(dropout_p), seed, limits)
    if reduce_sum:
        return out
    parts = list(out.unbind(0))
    return parts[0] if reduce == "sum" else parts


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None,
                    dropout_p: float = 0.0, seed: int | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v over the real keys; q (B, H, Lq, D), k/v (B, H, Lk, D), key_mask (B, Lk)."""
    return fused_multi_source_attention(q, [(k, v, key_mask)], "none", dropout_p, seed)[0]


@triton.jit
def _keep_mask_kernel(OUT, seed, rate, LQ, LK_TOTAL, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_bh, pid_m = tl.program_id(0).to(tl.int64), tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < LQ
    for n0 in range(0, LK_TOTAL, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        keep = _keep(seed, rate, pid_bh, LQ, LK_TOTAL, offs_m, offs_n)
        ptrs = OUT + (pid_bh * LQ + offs_m)[:, None] * LK_TOTAL + offs_n[None, :]
        tl.store(ptrs, keep.to(tl.int8), mask=m_ok[:, None] & (offs_n < LK_TOTAL)[None, :])


def dropout_keep_mask(seed: int, dropout_p: float, batch: int, heads: int, lq: int, lk_total: int,
                      device: torch.device | str = "cuda") -> torch.Tensor:
    """The keep mask (B, H, Lq, Lk_total) bool that the kernels draw for `seed` (keys of all
    sources packed in order): for tests and for checking a run against eager attention."""
    out = torch.empty((batch, heads, lq, lk_total), dtype=torch.int8, device=device)
    _keep_mask_kernel[(batch * heads, triton.cdiv(lq, 16))](out, seed, dropout_p, lq, lk_total,
                                                           BLOCK_M=16, BLOCK_N=16)
    return out.bool()
