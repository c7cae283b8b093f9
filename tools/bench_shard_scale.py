"""Benchmark: the shard reader on a million-sample set, per rank: start-up, plan memory, state size, resume.

    python -m tools.bench_shard_scale [--samples 1000000] [--layout 1000x1000 ...] [--worlds 1,8]
                                      [--workers 2] [--batch 64] [--dir DIR] [--out report.json]

A layout is `COUNTxSHARDS` groups joined by `+` (`1000x1000`: 1,000 shards of 1,000 samples;
`10000x99+1x10000`: 99 shards of 10,000 samples and 10,000 of one sample, interleaved). The
sets are synthesized cheaply: one real shard per distinct count is written with
shards.writer (tiny motions, two captions per sample, every 97th sample with caption spans too
short for the reader's length filter, so skips and refills happen), every shard of the layout is
a hard link to the template of its count, and `shards.json` is a shards.schema.ShardIndex with
the per-shard counts, bytes, frames, splits and feature statistics the writer records. The same
sample keys therefore recur in every shard of one count; the reader does not care.

For each world size W and each measured rank r (the first and the last) of each layout:
- start-up: build ShardDataset + ShardLoader (rank r of W) and receive the first batch;
- plan memory: tracemalloc of building the dataset (index, URLs, per-shard counts) and of one
  epoch's plan (ShardDataset.epoch_plan: shard order and cumulative counts);
- state: ShardLoader.state_dict() at a random batch of the epoch, as torch.save bytes (and JSON);
- resume: a new dataset + loader, load_state_dict, time to the first batch, and whether the next
  `--check` batches equal those of the uninterrupted run (keys, motion, mask, span, text) and
  the skip counts agree.
Targets (issue #17): start-up <= 10 s (fresh and resumed), state <= 64 KB per rank. The JSON
report is printed, then a markdown table.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone

import numpy as np
import torch

from shards.reader import ShardDataset, ShardLoader
from shards.schema import INDEX_NAME, ShardEntry, ShardIndex
from shards.writer import write_shards

STARTUP_TARGET_S = 10.0
STATE_TARGET_BYTES = 64 * 1024
SHORT_EVERY = 97  # every 97th sample only has captions shorter than min_frames: skipped by the reader


def parse_layout(spec: str) -> list[tuple[int, int]]:
    """`1000x1000` or `10000x99+1x10000` -> [(samples per shard, shards), ...]."""
    groups = []
    for part in spec.split("+"):
        count, _, shards = part.partition("x")
        groups.append((int(count), int(shards)))
    if not groups or any(c <= 0 or n <= 0 for c, n in groups):
        raise ValueError(f"layout {spec!r}: use COUNTxSHARDS groups joined by '+', e.g. 10000x99+1x10000")
    return groups


def interleaved_counts(groups: list[tuple[int, int]]) -> list[int]:
    """Per-shard counts with the groups spread evenly over the index order."""
    slots = [((j + 0.5) / n, g, count) for g, (count, n) in enumerate(groups) for j in range(n)]
    return [count for _, _, count in sorted(slots)]


def synthetic_samples(count: int, frames: int):
    for i in range(count):
        rng = np.random.default_rng([count, i])
        short = i % SHORT_EVERY == SHORT_EVERY - 1
        span = {"start": 0.0, "end": 0.5} if short else {"start": None, "end": None}
        yield {"key": f"syn/c{count}/{i:06d}", "motion": rng.standard_normal((frames, 263)).astype(np.float32),
               "meta": {"dataset": "synthetic", "split": "train", "fps": 20.0, "duration": frames / 20,
                        "mirrored": False, "source": f"syn{i}",
                        "texts": [{"text": f"a person does motion {i}", "events": None, **span},
                                  {"text": f"someone moves, take {i}", "events": None, **span}]}}


def synthesize(root: str, layout: str, frames: int) -> str:
    """Write (or reuse) the layout's shard set under root; returns the index path."""
    groups = parse_layout(layout)
    out = os.path.join(root, layout)
    index_path = os.path.join(out, INDEX_NAME)
    counts = interleaved_counts(groups)
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as f:
            old = json.load(f)
        if [s["count"] for s in old["shards"]] == counts and old.get("extra", {}).get("frames") == frames:
            return index_path
        shutil.rmtree(out)
    templates: dict[int, ShardIndex] = {}
    for count in sorted(set(counts)):
        where = os.path.join(root, "templates", f"f{frames}-c{count}")
        path = os.path.join(where, INDEX_NAME)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                templates[count] = ShardIndex.from_json(json.load(f), location=path)
        else:
            templates[count] = write_shards(synthetic_samples(count, frames), where, maxcount=count,
                                            command="synthetic")
        assert len(templates[count].shards) == 1
    os.makedirs(out, exist_ok=True)
    entries = []
    for n, count in enumerate(counts):
        template = templates[count]
        name = f"shard-{n:07d}.tar"
        source = os.path.join(os.path.dirname(template.location), template.shards[0].name)
        try:
            os.link(source, os.path.join(out, name))
        except OSError:  # no hard links here (another file system): a symbolic link reads the same
            os.symlink(os.path.abspath(source), os.path.join(out, name))
        t = template.shards[0]
        entries.append(ShardEntry(name=name, count=t.count, bytes=t.bytes, frames=t.frames, splits=dict(t.splits)))
    largest = templates[max(templates)]
    index = ShardIndex(shards=entries, command="python -m tools.bench_shard_scale (synthetic)",
                       feature_stats=largest.feature_stats,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       motion_features=largest.motion_features,
                       extra={"synthetic": "hard links to one template shard per sample count", "frames": frames})
    index.save(index_path)
    return index_path


def fingerprint(batch: dict) -> list:
    digest = hashlib.sha256()
    for name in ("motion", "mask", "span", "repeat"):
        digest.update(batch[name].numpy().tobytes())
    digest.update(json.dumps(batch["text"]).encode())
    return [batch["key"], digest.hexdigest()]


def measure(index_path: str, rank: int, world: int, workers: int, batch: int, seed: int, check: int,
            point_rng: random.Random) -> dict:
    settings = dict(training=True, seed=seed, rank=rank, world_size=world, load_video=False, load_joints=False)

    def build() -> ShardLoader:
        return ShardLoader(ShardDataset(index_path, **settings), batch_size=batch, num_workers=workers,
                           drop_last=True)

    # plan memory (traced on its own: tracemalloc slows allocation down)
    tracemalloc.start()
    dataset = ShardDataset(index_path, **settings)
    dataset_bytes, dataset_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    plan = dataset.epoch_plan(0)
    plan_bytes = tracemalloc.get_traced_memory()[0] - before
    plan_peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    del plan, dataset

    t0 = time.perf_counter()
    loader = build()
    batches = iter(loader)
    next(batches)
    startup = time.perf_counter() - t0

    total = len(loader)
    stop = point_rng.randint(1, max(1, total - check))  # batches before the state is taken
    t0 = time.perf_counter()
    for _ in range(stop - 1):
        next(batches)
    run_s = time.perf_counter() - t0
    state = loader.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    state_bytes, json_bytes = buf.tell(), len(json.dumps(state))
    reference = [fingerprint(next(batches)) for _ in range(min(check, total - stop))]
    reference_skips = dict(loader.skipped)
    batches.close()
    del loader, batches

    t0 = time.perf_counter()
    resumed = build()
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    again = iter(resumed)
    got = [fingerprint(next(again))] if reference else []
    resume_s = time.perf_counter() - t0
    got += [fingerprint(next(again)) for _ in range(len(reference) - len(got))]
    exact = got == reference and dict(resumed.skipped) == reference_skips
    again.close()
    return {"rank": rank, "world": world, "batches_per_epoch": total, "stop_batch": stop,
            "startup_s": round(startup, 3), "resume_startup_s": round(resume_s, 3),
            "dataset_kb": round(dataset_bytes / 1024, 1), "dataset_peak_kb": round(dataset_peak / 1024, 1),
            "plan_kb": round(plan_bytes / 1024, 1), "plan_peak_kb": round(plan_peak / 1024, 1),
            "state_bytes": state_bytes, "state_json_bytes": json_bytes, "exact_resume": exact,
            "checked_batches": len(reference),
            "samples_per_s": round((stop - 1) * batch / run_s, 1) if run_s > 0 else None}


def table(report: dict) -> str:
    lines = ["| layout | shards | W | rank | start-up s | resume start-up s | plan KB | dataset KB | "
             "state bytes | exact resume |", "|---|---|---|---|---|---|---|---|---|---|"]
    for layout, rows in report["layouts"].items():
        for row in rows["ranks"]:
            lines.append(f"| {layout} | {rows['shards']:,} | {row['world']} | {row['rank']} | {row['startup_s']:.2f} | "
                         f"{row['resume_startup_s']:.2f} | {row['plan_kb']:,.1f} | {row['dataset_kb']:,.0f} | "
                         f"{row['state_bytes']:,} | {'yes' if row['exact_resume'] else 'NO'} "
                         f"(batch {row['stop_batch']:,} of {row['batches_per_epoch']:,}) |")
    t = report["targets"]
    lines.append("")
    lines.append(f"targets: start-up <= {t['startup_s']:.0f} s (fresh and resumed): "
                 f"{'met' if t['startup_met'] else 'MISSED'}; state <= {t['state_bytes'] // 1024} KB per rank: "
                 f"{'met' if t['state_met'] else 'MISSED'}; exact resume: {'yes' if t['exact'] else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000, help="samples per set (the layouts must add up to it)")
    ap.add_argument("--layout", action="append", help="COUNTxSHARDS[+COUNTxSHARDS...] (repeatable; default: "
                    "1000x1000, 10x100000 and 10000x99+1x10000)")
    ap.add_argument("--worlds", default="1,8", help="world sizes; the first and last rank of each are measured")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--frames", type=int, default=40, help="motion frames per sample (min_frames is 40)")
    ap.add_argument("--check", type=int, default=8, help="batches compared after the resume")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="work folder, kept for reuse (default: a temporary one, removed afterwards)")
    ap.add_argument("--out", help="write the JSON report here too")
    args = ap.parse_args(argv)
    layouts = args.layout or ["1000x1000", "10x100000", "10000x99+1x10000"]
    for layout in layouts:
        n = sum(c * k for c, k in parse_layout(layout))
        if n != args.samples:
            ap.error(f"layout {layout} holds {n:,} samples, not --samples {args.samples:,}")
    worlds = [int(w) for w in args.worlds.split(",")]
    root = args.dir or tempfile.mkdtemp(prefix="bench_shard_scale_")
    point_rng = random.Random(args.seed)
    given = argv if argv is not None else sys.argv[1:]
    report: dict = {"command": " ".join(["python -m tools.bench_shard_scale", *given]),
                    "samples": args.samples, "workers": args.workers, "batch": args.batch, "frames": args.frames,
                    "layouts": {}}
    try:
        for layout in layouts:
            t0 = time.perf_counter()
            index_path = synthesize(root, layout, args.frames)
            rows = {"shards": sum(k for _, k in parse_layout(layout)),
                    "synthesize_s": round(time.perf_counter() - t0, 1), "ranks": []}
            for world in worlds:
                for rank in sorted({0, world - 1}):
                    rows["ranks"].append(measure(index_path, rank, world, args.workers, args.batch, args.seed,
                                                 args.check, point_rng))
                    print(json.dumps({"layout": layout, **rows["ranks"][-1]}), file=sys.stderr, flush=True)
            report["layouts"][layout] = rows
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    all_rows = [r for rows in report["layouts"].values() for r in rows["ranks"]]
    report["targets"] = {
        "startup_s": STARTUP_TARGET_S, "state_bytes": STATE_TARGET_BYTES,
        "startup_met": all(max(r["startup_s"], r["resume_startup_s"]) <= STARTUP_TARGET_S for r in all_rows),
        "state_met": all(r["state_bytes"] <= STATE_TARGET_BYTES for r in all_rows),
        "exact": all(r["exact_resume"] for r in all_rows)}
    text = json.dumps(report, indent=1)
    print(text)
    print(table(report))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    t = report["targets"]
    return 0 if t["startup_met"] and t["state_met"] and t["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
