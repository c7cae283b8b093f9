"""Benchmarks of trimo's fused kernels.

  trimo-bench-kernels attention            # GPU: fused vs eager vs SDPA, forward+backward
  trimo-bench-kernels contrastive-memory   # any machine: peak memory, naive vs blockwise loss

attention: times forward+backward with `triton.testing.do_bench` for the encoders' self-attention,
SGPA's two-source and LAVIMO's three-source fusion shapes, and reports TFLOP/s (dense count:
4 B H Lq Lk D forward, 2.5x that backward) next to the device's measured bf16/fp16 matmul rate.

contrastive-memory: each measurement runs in a fresh subprocess: one forward+backward of the
motion-text pair loss (soft targets from 384-d caption embeddings) and its peak resident set
(ru_maxrss) minus the RSS after the imports, i.e. inputs + loss + gradients. The naive loss
(`modeling.contrastive.ContrastiveAlignment`) is measured at --naive-fit sizes and at the table's
sizes up to --naive-max; larger sizes are extrapolated with a least-squares fit a B^2 + b B + c
(marked "extrapolated": a B x B float32 matrix alone is 17 GB at B = 65,536).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure_loss(impl: str, batch: int, dim: int, caption_dim: int, kind: str, block: int) -> dict:
    """Runs in its own process: one forward+backward of the motion-text pair loss."""
    import time

    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    from configs.schema import ContrastiveLossConfig
    from modeling.contrastive import ContrastiveAlignment
    from modeling.kernels.blockwise_contrastive import blockwise_pair_loss

    base = _rss_mb()
    g = torch.Generator().manual_seed(0)
    motion = torch.randn(batch, dim, generator=g, requires_grad=True)
    text = torch.randn(batch, dim, generator=g, requires_grad=True)
    captions = torch.randn(batch, caption_dim, generator=g)
    cfg = ContrastiveLossConfig(kind=kind, gather="none")
    module = ContrastiveAlignment(cfg)
    start = time.perf_counter()
    if impl == "naive":
        loss = module({"motion": motion, "text": text}, caption_emb=captions)["align_mt"]
    else:
        loss = blockwise_pair_loss(motion, text, module.scale(), cfg, captions, block_size=block)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    return {"impl": impl, "batch": batch, "peak_mb": peak - base, "seconds": seconds, "loss": loss.item()}


def contrastive_memory(args) -> None:
    sizes = [int(b) for b in args.batches]
    results = {"naive": {}, "blockwise": {}}
    naive_sizes = sorted({int(b) for b in args.naive_fit} | {b for b in sizes if b <= args.naive_max})
    for impl, batches in (("naive", naive_sizes), ("blockwise", sizes)):
        for batch in batches:
            cmd = [sys.executable, __file__, "_measure", impl, str(batch), str(args.dim), str(args.caption_dim),
                   args.kind, str(args.block)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            results[impl][batch] = row
            print(f"  measured {impl:9s} B={batch:6d}: {row['peak_mb']:9.1f} MB in {row['seconds']:.1f} s", flush=True)
    measured = sorted(results["naive"])
    if len(measured) < 3:
        sys.exit("the naive extrapolation needs at least 3 measured sizes (see --naive-fit)")
    fit = np.polyfit(measured, [results["naive"][b]["peak_mb"] for b in measured], deg=2)
    print(f"\nPeak memory above the imports (MB), d={args.dim}, captions {args.caption_dim}-d, "
          f"kind={args.kind}, forward+backward, CPU:")
    print("| B | naive | blockwise |\n|---:|---:|---:|")
    for batch in sizes:
        if batch in results["naive"]:
            naive = f"{results['naive'][batch]['peak_mb']:.0f}"
        else:
            naive = f"{np.polyval(fit, batch):.0f} (extrapolated)"
        print(f"| {batch} | {naive} | {results['blockwise'][batch]['peak_mb']:.0f} |")


def _flops(b, h, lq, lks, d):
    forward = sum(4 * b * h * lq * lk * d for lk in lks)
    return forward * 3.5   # forward + backward (2.5x forward)


def attention_bench(args) -> None:
    import torch
    import triton

    from modeling.attention import eager_attention
    from modeling.kernels import fused_multi_source_attention

    if not torch.cuda.is_available():
        sys.exit("the attention benchmark needs a CUDA GPU (Triton kernels); run contrastive-memory on CPU")
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
    if argv and argv[0] == "_measure":
        impl, batch, dim, cap, kind, block = argv[1:]
        print(json.dumps(_measure_loss(impl, int(batch), int(dim), int(cap), kind, int(block))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    att = sub.add_parser("attention", help="GPU timing of fused vs eager vs SDPA attention")
    att.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    mem = sub.add_parser("contrastive-memory", help="peak memory of the naive vs blockwise contrastive loss")
    mem.add_argument("--batches", nargs="+", default=["4096", "8192", "16384", "32768", "65536"])
    mem.add_argument("--dim", type=int, default=512)
    mem.add_argument("--caption-dim", type=int, default=384, help="sentence-embedding width (MiniLM: 384)")
    mem.add_argument("--kind", default="soft_kl", choices=["soft_kl", "infonce"])
    mem.add_argument("--block", type=int, default=1024, help="tile size of the blockwise loss")
    mem.add_argument("--naive-max", type=int, default=8192, help="largest table B at which the naive loss is run")
    mem.add_argument("--naive-fit", nargs="+", default=["1024", "2048", "4096", "8192"],
                     help="sizes at which the naive loss is measured for the quadratic extrapolation")
    args = parser.parse_args(argv)
    attention_bench(args) if args.command == "attention" else contrastive_memory(args)


if __name__ == "__main__":
    main()
