"""One command on a CUDA node that says whether trimo's GPU paths work there, and how fast:

  bash launch/gpu_check.sh            # prints one table; the details go to runs/gpu_check/

1. the Triton kernels compiled on this device against the eager reference (forward + backward,
   fp32 / bf16 / fp16, head dims 16, 64, 128, three ragged sources, with and without dropout's mask
   reproduced by the eager side);
2. fused multi-source attention vs eager vs SDPA timings (`trimo-bench-kernels attention --dtype bf16`,
   TFLOP/s and the share of the device's measured bf16 matmul rate);
3. the contrastive loss at a global batch of 65,536 (default config: tiles), peak GPU memory and time;
4. a 1-GPU DeepSpeed bf16 run of the quickstart config: samples/s and step time (median after warm-up);
5. the quickstart itself (`bash launch/quickstart.sh`) on the GPU: wall time and its evaluation.

On a machine without CUDA it prints which rows it cannot measure and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kernels_against_eager() -> str:
    import torch

    from modeling.kernels import fused_multi_source_attention
    from modeling.kernels.triton_attention import DoesNotFit, dropout_keep_mask

    worst, routed = {}, []
    for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)):
        for d in (16, 64, 128):
            for dropout in (0.0, 0.1):
                name = f"{str(dtype).split('.')[-1]} D={d}{' dropout' if dropout else ''}"
                g = torch.Generator(device="cuda").manual_seed(d)
                b, h, lq, lks = 3, 4, 77, (130, 9, 64)
                q = torch.randn(b, h, lq, d, device="cuda", dtype=dtype, generator=g, requires_grad=True)
                srcs = []
                for lk in lks:
                    k, v = (torch.randn(b, h, lk, d, device="cuda", dtype=dtype, generator=g, requires_grad=True)
                            for _ in range(2))
                    mask = torch.arange(lk, device="cuda")[None] < torch.tensor([lk, lk // 2, 1], device="cuda")[:, None]
                    srcs.append((k, v, mask))
                grad = torch.randn(b, h, lq, d, device="cuda", dtype=dtype, generator=g)
                leaves = [q, *[t for k, v, _ in srcs for t in (k, v)]]
                try:
                    fused = fused_multi_source_attention(q, srcs, dropout_p=dropout, seed=7)
                except DoesNotFit:   # this GPU runs such calls on SDPA (modeling.attention routes them)
                    routed.append(name)
                    continue
                got = [fused, *torch.autograd.grad(fused, leaves, grad)]
                # eager with the kernel's own dropout mask: per source, keep / (1 - p) on the probabilities
                keep = dropout_keep_mask(7, dropout, b, h, lq, sum(lks), device="cuda") if dropout else None
                ref, start = 0, 0
                for k, v, mask in srcs:
                    qf, kf, vf = (t.float() for t in (q, k, v))
                    scores = (qf @ kf.transpose(-1, -2)) / d**0.5
                    probs = scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1).nan_to_num(0.0)
                    if keep is not None:
                        probs = probs * keep[..., start:start + k.shape[2]] / (1 - dropout)
                    ref = ref + probs @ vf
                    start += k.shape[2]
                want = [ref, *torch.autograd.grad(ref, leaves, grad.float())]
                err = max(((a.float() - w).norm() / w.norm().clamp_min(1e-12)).item() for a, w in zip(got, want))
                worst[name] = (err, tol)
    failed = [f"{n} ({e:.1e} > {t:.0e})" for n, (e, t) in worst.items() if not e <= t]
    summary = f"{len(worst)} cases fused, largest relative error {max((e for e, _ in worst.values()), default=0):.1e}"
    if routed:
        summary += f"; on SDPA here (no configuration fits): {', '.join(routed)}"
    return ("FAIL: " + ", ".join(failed)) if failed else f"ok: {summary}"


def contrastive_at_scale(batch: int = 65536) -> str:
    import torch

    from configs.schema import ContrastiveLossConfig
    from modeling.contrastive import ContrastiveAlignment

    g = torch.Generator(device="cuda").manual_seed(0)
    emb = {m: torch.randn(batch, 512, device="cuda", generator=g, requires_grad=True) for m in ("motion", "text")}
    captions = torch.randn(batch, 384, device="cuda", generator=g)
    module = ContrastiveAlignment(ContrastiveLossConfig(gather="none")).cuda()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    module(emb, caption_emb=captions)["align"].backward()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return f"B={batch:,}, d=512: peak {peak:,.0f} MB above the inputs, forward+backward {seconds:.1f} s"


def _run(cmd: list[str], log: Path, env: dict | None = None) -> tuple[int, float]:
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}).returncode
    return code, time.perf_counter() - start


def deepspeed_bf16_run(out: Path, steps: int) -> str:
    data = ROOT / "data" / "demo-small-v2"   # the quickstart's corpus
    run = out / "ds-bf16"
    cmd = ["accelerate", "launch", "--config_file", "accelerate_config.yaml", "--num_processes", "1",
           "-m", "launch.train", "--config", "configs/quickstart.yaml", f"run.output_dir={run}",
           f"run.max_steps={steps}", "optim.mixed_precision=bf16", "validation.every=0",
           f"data.retrieval.index={data}/retrieval/shards.json",
           f"data.localization.index={data}/localization/shards.json",
           f"data.caption_cache={data}/caption_embeddings.safetensors"]
    code, seconds = _run(cmd, out / "ds-bf16.log")
    if code:
        return f"FAIL (exit {code}, see {out / 'ds-bf16.log'})"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r][len(records) // 5:]   # after warm-up
    finite = all(r.get("loss") is None or r["loss"] == r["loss"] for r in records)
    return (f"ok: {steps} steps, median {statistics.median(rates):.1f} samples/s, loss finite: {finite}, "
            f"{seconds:.0f} s with start-up" if finite else f"FAIL: non-finite loss, see {run}/metrics.jsonl")


def quickstart(out: Path) -> str:
    code, seconds = _run(["bash", "launch/quickstart.sh"], out / "quickstart.log")
    if code:
        return f"FAIL (exit {code}, see {out / 'quickstart.log'})"
    metrics = ROOT / "runs" / "quickstart" / "eval" / "metrics.json"
    return f"ok: {seconds:.0f} s end to end; evaluation in {metrics}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/gpu_check", help="logs and runs (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="steps of the DeepSpeed bf16 run")
    parser.add_argument("--skip-quickstart", action="store_true", help="leave out row 5 (the longest)")
    args = parser.parse_args(argv)
    import torch

    rows = ["Triton kernels vs eager (on this device)", "fused vs eager vs SDPA attention (bf16)",
            "contrastive loss at B = 65,536", "DeepSpeed bf16, 1 GPU, quickstart config", "quickstart on the GPU"]
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing below can be measured on this machine:")
        for row in rows:
            print(f"  - {row}")
        print("run `bash launch/gpu_check.sh` on a GPU node (the CPU tests cover correctness, not speed)")
        return 2
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    device = f"{torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))})"
    results = {}

    def attempt(name, fn, *a):
        try:
            results[name] = fn(*a)
        except Exception as err:   # one failing row must not hide the others
            results[name] = f"FAIL: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        print(f"[gpu_check] {name}: {results[name]}", flush=True)

    attempt(rows[0], kernels_against_eager)
    code, _ = _run([sys.executable, "-m", "tools.bench_kernels", "attention", "--dtype", "bf16"], out / "attention.md")
    results[rows[1]] = f"see the table below ({out / 'attention.md'})" if code == 0 else f"FAIL (exit {code})"
    attempt(rows[2], contrastive_at_scale)
    subprocess.run(["bash", "-c", "source launch/setup_env.sh && ensure_demo data/demo-small-v2 small"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    attempt(rows[3], deepspeed_bf16_run, out, args.steps)
    results[rows[4]] = "skipped (--skip-quickstart)" if args.skip_quickstart else None
    if not args.skip_quickstart:
        attempt(rows[4], quickstart, out)
    print(f"\n### trimo GPU check on {device}, torch {torch.__version__}\n")
    print("| check | result |\n|---|---|")
    for row in rows:
        print(f"| {row} | {results[row]} |")
    print()
    print((out / "attention.md").read_text())
    return 1 if any(str(v).startswith("FAIL") for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
