"""Compile the fused attention kernels for NVIDIA GPUs, without one, and tabulate where they run.

For each architecture, dtype and head dim this runs one training step of the real wrapper
(`fused_attention` forward with attention dropout, then backward) on CPU tensors, with every kernel
launch replaced by a compile for that architecture with the ptxas in Triton's wheel. So what is
compiled is what a GPU run launches: the configuration from `launch_config`, and the argument
specialisation Triton's launcher derives at run time (integers equal to 1 become constants,
pointers and integers divisible by 16 are marked so), taken from Triton's own binder. Reported per
kernel: tiles, warps, stages, shared memory against the architecture's limit, registers, and the
local memory that spilled registers take (bytes per thread, the stack frame in the cubin; Triton's
`n_spills` is this / 4).

    python -m tools.kernel_matrix                       # the README's table (all architectures)
    python -m tools.kernel_matrix --arch sm_90 --dtype bf16 --head-dim 64 --json

The workload is the encoders' self-attention: batch 2, 4 heads, 196 queries and keys (HumanML3D's
longest motion), q/k/v as head views of (B, L, H * D) projections.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ARCHS = {"sm_75": (7, 5), "sm_80": (8, 0), "sm_86": (8, 6), "sm_89": (8, 9), "sm_90": (9, 0)}
DTYPES = ("fp16", "bf16", "fp32")
HEAD_DIMS = (16, 32, 48, 64, 80, 128)
BATCH, HEADS, LENGTH, DROPOUT = 2, 4, 196, 0.1
# The most local memory a kernel may spill registers to, bytes per thread. Tensor-core kernels (fp16
# and bf16 from sm_80 on) spill nothing or 8 bytes (2 registers that ptxas parks across the loop).
# FMA dots (fp32, and everything on sm_75, where Triton 3.9 has no tensor-core dots) keep whole
# operand rows per thread; their tiles stay within a few registers except at head dims above 64 in
# dK/dV (fp32: 272-288 bytes even at 16 x 16 tiles) and in dQ on sm_75 in fp16 (224 bytes).
SPILL_BOUND_MMA, SPILL_BOUND_FMA = 32, 320


def _torch_dtype(name: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _compile(kernel, args: tuple, kwargs: dict, capability: tuple[int, int]):
    """What `kernel[grid](*args, **kwargs)` would compile on a GPU of `capability`: Triton's own
    binder gives the signature, constants and divisibility attributes (JITFunction.run's path)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", capability[0] * 10 + capability[1], 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)


def _registers_and_spills(cubin: bytes) -> tuple[int, int]:
    """(registers, local-memory bytes per thread) of a cubin, from the wheel's cuobjdump."""
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([knobs.nvidia.cuobjdump.path, "-res-usage", f.name], capture_output=True,
                               text=True, check=True).stdout
    regs, stack = re.search(r"REG:(\d+) STACK:(\d+)", usage).groups()
    return int(regs), int(stack)


def compile_step(arch: str, dtype: str, head_dim: int) -> dict:
    """Compile what one training step launches on `arch`; {"kernels": [...]} or {"sdpa": reason}."""
    import torch

    import modeling.kernels.triton_attention as fa

    capability, torch_dtype = ARCHS[arch], _torch_dtype(dtype)
    limits = fa.DeviceLimits(capability, fa.SHARED_MEMORY_PER_BLOCK[capability])
    names = {fa._forward_kernel: "forward", fa._backward_dkdv_kernel: "dkdv", fa._backward_dq_kernel: "dq"}
    compiled: list[dict] = []

    class CompileInsteadOfLaunch:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def compile_(*args, **kwargs):
                start = time.perf_counter()
                binary = _compile(self.kernel, args, kwargs, capability)
                regs, spills = _registers_and_spills(binary.asm["cubin"])
                config = fa.LaunchConfig(kwargs["BLOCK_M"], kwargs["BLOCK_N"], kwargs["BLOCK_D"], kwargs["num_warps"],
                                         kwargs["num_stages"])
                compiled.append(dict(
                    kernel=names[self.kernel], **config._asdict(), shared=binary.metadata.shared,
                    shared_estimate=fa.shared_memory_estimate(names[self.kernel], config, torch_dtype, limits),
                    shared_limit=limits.shared_memory, registers=regs, spill_bytes=spills,
                    seconds=round(time.perf_counter() - start, 1)))
            return compile_

    saved = {name: getattr(fa, name) for name in ("device_limits", *(k.__name__ for k in names))}
    fa.device_limits = lambda device: limits
    for kernel in names:
        setattr(fa, kernel.__name__, CompileInsteadOfLaunch(kernel))
    try:
        g = torch.Generator().manual_seed(0)
        projections = [torch.randn(BATCH, LENGTH, HEADS * head_dim, generator=g).to(torch_dtype)
                       for _ in range(3)]
        q, k, v = (x.view(BATCH, LENGTH, HEADS, head_dim).transpose(1, 2).requires_grad_() for x in projections)
        mask = torch.arange(LENGTH)[None] < torch.tensor([[LENGTH], [LENGTH - 37]])
        out = fa.fused_attention(q, k, v, mask, dropout_p=DROPOUT)
        out.backward(torch.ones_like(out))
    except fa.DoesNotFit as err:
        return {"sdpa": str(err)}
    finally:
        for name, value in saved.items():
            setattr(fa, name, value)
    return {"kernels": compiled}


def spill_bound(arch: str, dtype: str) -> int:
    return SPILL_BOUND_MMA if dtype != "fp32" and ARCHS[arch] >= (8, 0) else SPILL_BOUND_FMA


def _tiles(kernel: dict) -> str:
    return f"{kernel['block_m']}x{kernel['block_n']} w{kernel['num_warps']} s{kernel['num_stages']}"


def _merge(rows: list[dict], field: str, same: tuple[str, ...]) -> list[dict]:
    """Rows equal in `same` become one, `field` listing each one's; shared memory and spills: the largest."""
    merged: list[dict] = []
    for row in rows:
        twin = next((m for m in merged if all(m[key] == row[key] for key in same)), None)
        if twin is None:
            merged.append(dict(row))
        else:
            twin[field] = twin[field] + row[field]
            twin["shared"], twin["spills"] = max(twin["shared"], row["shared"]), max(twin["spills"], row["spills"])
    return merged


def print_table(results: list[dict]) -> None:
    """The README's table: each kernel's tiles (queries x keys, warps, stages); rows whose kernels get
    the same tiles share a row (head dims, then dtypes, then architectures), with the largest shared
    memory and spills among them."""
    rows = [dict(archs=[r["arch"]], dtypes=[r["dtype"]], head_dims=[str(r["head_dim"])],
                 tiles=("SDPA",) * 3 if "sdpa" in r else tuple(_tiles(k) for k in r["kernels"]),
                 shared=max((k["shared"] for k in r.get("kernels", ())), default=0),
                 spills=max((k["spill_bytes"] for k in r.get("kernels", ())), default=0)) for r in results]
    rows = _merge(rows, "head_dims", ("archs", "dtypes", "tiles"))
    rows = _merge(rows, "dtypes", ("archs", "head_dims", "tiles"))
    rows = _merge(rows, "archs", ("dtypes", "head_dims", "tiles"))
    print("| arch | dtype | head dims | forward | dK/dV | dQ | shared memory (KB) | spills (B/thread) |")
    print("|---|---|---|---|---|---|---:|---:|")
    for row in rows:
        sizes = ["-", "-"] if row["tiles"][0] == "SDPA" else [f"{row['shared'] / 1024:.0f}", str(row["spills"])]
        names = [", ".join(row[key]) for key in ("archs", "dtypes", "head_dims")]
        print("| " + " | ".join([*names, *row["tiles"], *sizes]) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--dtype", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--head-dim", nargs="+", type=int, default=list(HEAD_DIMS))
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("unset TRITON_INTERPRET: the interpreter replaces the kernels that this compiles")
    results = []
    for arch in args.arch:
        for dtype in args.dtype:
            for head_dim in args.head_dim:
                result = dict(arch=arch, dtype=dtype, head_dim=head_dim, **compile_step(arch, dtype, head_dim))
                if args.json:
                    print(json.dumps(result), flush=True)
                results.append(result)
    if not args.json:
        print_table(results)


if __name__ == "__main__":
    main()
