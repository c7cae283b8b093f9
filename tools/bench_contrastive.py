"""Memory and speed of the contrastive loss (`modeling.contrastive`, `model.retrieval.loss.impl`).

  trimo-bench-contrastive memory   # peak RSS per rank, dense vs blockwise, 2 gloo ranks, global B 2,048 ... 65,536
  trimo-bench-contrastive speed    # forward+backward time, one tile vs tiles, one process

memory: every (impl, global batch) runs in fresh processes, one per rank (gloo, `gather: local`,
the default): random motion and text embeddings (B / ranks, d) and 384-d caption embeddings go
straight into `ContrastiveAlignment` (soft targets), then one forward + backward. Each rank
reports its peak resident set (ru_maxrss) minus its RSS after the imports and the process-group
start, i.e. inputs, gathers, loss and gradients; the table shows the largest rank. Dense runs up to
--dense-max (one tile is ~8 local x global float32 matrices: it stops fitting in RAM beyond); the
loss of both impls is compared where both run.

speed: one process, `gather: none`; the median of --repeats forward+backward passes per impl.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _inputs(batch: int, dim: int, caption_dim: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    motion = torch.randn(batch, dim, generator=g, requires_grad=True)
    text = torch.randn(batch, dim, generator=g, requires_grad=True)
    captions = torch.randn(batch, caption_dim, generator=g)
    return motion, text, captions


def _rank_main(impl: str, global_batch: int, dim: int, caption_dim: int, block: int) -> None:
    """One rank of a memory measurement (env: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""
    import torch
    import torch.distributed as dist

    from configs.schema import ContrastiveLossConfig
    from modeling.contrastive import ContrastiveAlignment

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    base = _rss_mb()
    motion, text, captions = _inputs(global_batch // world, dim, caption_dim, seed=rank)
    module = ContrastiveAlignment(ContrastiveLossConfig(impl=impl, block_size=block, gather="local"))
    start = time.perf_counter()
    loss = module({"motion": motion, "text": text}, caption_emb=captions)["align"]
    loss.backward()
    seconds = time.perf_counter() - start
    stats = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base, seconds])
    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
    dist.all_reduce(loss.detach())
    if rank == 0:
        print(json.dumps({"peak_mb": float(stats[0]), "seconds": float(stats[1]), "loss": loss.item() / world}))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(impl: str, global_batch: int, args) -> dict:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(args.ranks)}
    cmd = [sys.executable, "-m", "tools.bench_contrastive", "_rank", impl, str(global_batch), str(args.dim),
           str(args.caption_dim), str(args.block)]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, text=True)
             for r in range(args.ranks)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"{impl} at global batch {global_batch} failed (exit codes {[p.returncode for p in procs]})")
    return json.loads(outs[0].strip().splitlines()[-1])


def memory(args) -> None:
    print(f"{args.ranks} ranks over gloo, gather local, d={args.dim}, captions {args.caption_dim}-d, soft targets, "
          f"tiles of {args.block}; peak RSS above the imports, largest rank:", flush=True)
    rows = []
    for batch in args.batches:
        row = {"batch": batch}
        for impl in ("dense", "blockwise"):
            if impl == "dense" and batch > args.dense_max:
                continue
            row[impl] = _measure(impl, batch, args)
            print(f"  {impl:9s} global B={batch:6d}: {row[impl]['peak_mb']:8.0f} MB/rank, "
                  f"{row[impl]['seconds']:7.1f} s", flush=True)
        rows.append(row)
    print("\n| global B | per rank | dense MB/rank | blockwise MB/rank | blockwise s | loss rel. diff |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        dense, block = row.get("dense"), row["blockwise"]
        diff = f"{abs(block['loss'] - dense['loss']) / abs(dense['loss']):.1e}" if dense else "-"
        dense_mb = f"{dense['peak_mb']:.0f}" if dense else f"not run (> --dense-max {args.dense_max})"
        print(f"| {row['batch']:,} | {row['batch'] // args.ranks:,} | {dense_mb} | {block['peak_mb']:.0f} | "
              f"{block['seconds']:.1f} | {diff} |")


def speed(args) -> None:
    import torch

    from configs.schema import ContrastiveLossConfig
    from modeling.contrastive import ContrastiveAlignment

    torch.set_num_threads(args.threads)
    print(f"one process, {args.threads} threads, d={args.dim}, captions {args.caption_dim}-d, soft targets; "
          f"median of {args.repeats} forward+backward:")
    print("| B | dense ms | blockwise ms (tiles of %d) | blockwise / dense |\n|---:|---:|---:|---:|" % args.block)
    for batch in args.batches:
        motion, text, captions = _inputs(batch, args.dim, args.caption_dim, seed=0)
        ms = {}
        for impl in ("dense", "blockwise"):
            module = ContrastiveAlignment(ContrastiveLossConfig(impl=impl, block_size=args.block, gather="none"))
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                module({"motion": motion, "text": text}, caption_emb=captions)["align"].backward()
                times.append(time.perf_counter() - start)
            ms[impl] = 1000 * sorted(times)[len(times) // 2]
        print(f"| {batch:,} | {ms['dense']:.0f} | {ms['blockwise']:.0f} | {ms['blockwise'] / ms['dense']:.2f} |",
              flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_rank":
        impl, batch, dim, cap, block = argv[1:]
        return _rank_main(impl, int(batch), int(dim), int(cap), int(block))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--caption-dim", type=int, default=384, help="sentence-embedding width (MiniLM: 384)")
    parser.add_argument("--block", type=int, default=1024, help="tile edge of the blockwise loss")
    sub = parser.add_subparsers(dest="command", required=True)
    mem = sub.add_parser("memory", help="peak RSS per rank, dense vs blockwise")
    mem.add_argument("--ranks", type=int, default=2)
    mem.add_argument("--batches", type=int, nargs="+", default=[2048, 4096, 8192, 16384, 32768, 65536])
    mem.add_argument("--dense-max", type=int, default=16384, help="largest global batch the dense loss is run at")
    spd = sub.add_parser("speed", help="forward+backward time, dense vs blockwise")
    spd.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 2048, 4096, 8192])
    spd.add_argument("--threads", type=int, default=2)
    spd.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    memory(args) if args.command == "memory" else speed(args)


if __name__ == "__main__":
    main()
