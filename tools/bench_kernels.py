"""Benchmark of trimo's fused attention kernels (the contrastive loss: `trimo-bench-contrastive`).

  trimo-bench-kernels attention            # GPU: fused vs eager vs SDPA, forward+backward

attention: times forward+backward with `triton.testing.do_bench` for the encoders' self-attention,
SGPA's two-source and LAVIMO's three-source fusion shapes, and reports TFLOP/s (dense count:
4 B H Lq Lk D forward, 2.5x that backward) next to the device's measured bf16/fp16 matmul rate.
"""
from __future__ import annotations

import argparse
import sys


def _flops(b, h, lq, lks, d):
    forward = sum(4 * b * h * lq * lk * d for lk in lks)
    return forward * 3.5   # forward + backward (2.5x forward)


def attention_bench(args) -> None:
    import torch
    import triton

    from modeling.attention import eager_attention
    from modeling.kernels import fused_multi_source_attention

    if not torch.cuda.is_available():
        sys.exit("the attention benchmark needs a CUDA GPU (Triton kernels)")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    n = 8192
    a, b_ = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    matmul_ms = triton.testing.do_bench(lambda: a @ b_)
    peak = 2 * n**3 / matmul_ms / 1e9
    print(f"device: {torch.cuda.get_device_name()}, {args.dtype} matmul {n}^3: {peak:.0f} TFLOP/s (measured)")
    cases = [  # name, B, H, Lq, [Lk per source], D
        ("encoder self-attn", 16, 8, 512, [512], 64),
        ("encoder self-attn", 8, 8, 1024, [1024], 128),
        ("SGPA self+cross (none)", 16, 8, 256, [256, 32], 64),
        ("fusion m+t+v (sum)", 256, 8, 1, [196, 32, 64], 64),
        ("fusion m+t+v, 64 queries", 64, 8, 64, [1024, 64, 256], 64),
    ]
    print("| case | B,H,Lq,Lk,D | fused ms | eager ms | SDPA ms | fused TFLOP/s | % of matmul |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, b, h, lq, lks, d in cases:
        torch.manual_seed(0)
        q = torch.randn(b, h, lq, d, device="cuda", dtype=dtype, requires_grad=True)
        srcs = []
        for lk in lks:
            k = torch.randn(b, h, lk, d, device="cuda", dtype=dtype, requires_grad=True)
            v = torch.randn(b, h, lk, d, device="cuda", dtype=dtype, requires_grad=True)
            mask = torch.arange(lk, device="cuda")[None] < torch.randint(lk // 2, lk + 1, (b, 1), device="cuda")
            srcs.append((k, v, mask))
        reduce = "none" if "none" in name else "sum"
        grad = torch.randn(b, h, lq, d, device="cuda", dtype=dtype)

        leaves = [q, *[t for k, v, _ in srcs for t in (k, v)]]

        def run(fn):
            outs = fn()
            outs = outs if isinstance(outs, list) else [outs]
            torch.autograd.grad(outs, leaves, [grad] * len(outs))

        def per_source(attn):
            outs = [attn(q, k, v, m) for k, v, m in srcs]
            return outs if reduce == "none" else sum(outs)

        def sdpa(q_, k, v, m):
            out = torch.nn.functional.scaled_dot_product_attention(q_, k, v, attn_mask=m[:, None, None, :])
            return out

        timings = [triton.testing.do_bench(lambda f=f: run(f)) for f in (
            lambda: fused_multi_source_attention(q, srcs, reduce=reduce),
            lambda: per_source(eager_attention),
            lambda: per_source(sdpa))]
        flops = _flops(b, h, lq, lks, d)
        tflops = flops / timings[0] / 1e9
        print(f"| {name} | {b},{h},{lq},{'+'.join(map(str, lks))},{d} | {timings[0]:.3f} | {timings[1]:.3f} | "
              f"{timings[2]:.3f} | {tflops:.1f} | {100 * tflops / peak:.0f}% |")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    att = sub.add_parser("attention", help="GPU timing of fused vs eager vs SDPA attention")
    att.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    args = parser.parse_args(argv)
    attention_bench(args)


if __name__ == "__main__":
    main()
