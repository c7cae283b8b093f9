"""Search at library scale: index save / load time and the time of one query over N motions,
and (with --build) the time and memory of indexing N real motions.

    python -m tools.bench_search [--motions 100000] [--dim 128] [--model EXPORT] [--out DIR]
    python -m tools.bench_search --build data/demo-default/retrieval/shards.json --model EXPORT [--motions 100000]

Builds a synthetic index (random unit chunk embeddings; motions of 2-20 s cut into the search's
10 s chunks with a 5 s hop), saves and loads it, and times a
query (the 5 motions whose best chunk scores highest) with the numpy backend and, when faiss-cpu
is installed, the faiss one, against a baseline measured in the same run: the plain per-motion
loop. Features are stored as 2 frames per motion (loading and
querying never read them; on disk a real library takes frames x 263 x 4 bytes more). With
--model, the text encoder's time for one query is measured too.

--build: the index build itself (`Searcher.build_index`, what `trimo-search index` runs) over a
shard set repeated until it holds --motions samples (links to its shards under new names), then
the save; prints the rate and the peak RSS above the RSS after loading the model.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evaluation.protocols import chunk_windows
from search.library import CHUNK_OVERLAP, FPS, FeatureStore, MotionIndex, Searcher, rank_motions


def synthetic_index(n: int, dim: int, seed: int = 0) -> MotionIndex:
    rng = np.random.default_rng(seed)
    frames = rng.integers(int(2 * FPS), int(20 * FPS), size=n)
    counts = np.array([len(chunk_windows(int(f), FPS, overlap=CHUNK_OVERLAP)) for f in frames])
    emb = rng.standard_normal((int(counts.sum()), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    spans = np.concatenate([chunk_windows(int(f), FPS, overlap=CHUNK_OVERLAP) for f in frames])
    entries = [{"id": f"m{i:07d}", "path": f"/library/m{i:07d}.bvh", "key": "", "fps": FPS, "frames": int(f),
                "duration_s": float(f) / FPS, "size": 0, "mtime": 0} for i, f in enumerate(frames)]
    return MotionIndex(model="synthetic", fingerprint="synthetic", motion_features="trimo", entries=entries,
                       features=FeatureStore([np.zeros((2, 263), np.float32)] * n), chunk_emb=emb,
                       chunk_owner=np.repeat(np.arange(n), counts), chunk_span=spans.astype(np.int64))


def loop_scores(index: MotionIndex, query: np.ndarray) -> np.ndarray:
    """Baseline: each motion's best chunk by a loop over motions."""
    first = np.searchsorted(index.chunk_owner, np.arange(len(index) + 1))
    return np.array([float((index.chunk_emb[a:b] @ query).max()) for a, b in zip(first[:-1], first[1:])])


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def repeated_shard_set(spec: str, motions: int, folder: Path) -> Path:
    """A shards.json in `folder` listing the set's shards (as links) until it holds >= `motions` samples."""
    source = Path(spec)
    index = json.loads(source.read_text())
    per_pass = sum(e["count"] for e in index["shards"])
    entries = []
    for rep in range(-(-motions // per_pass)):
        for e in index["shards"]:
            name = f"rep{rep:03d}-{e['name']}"
            os.symlink((source.parent / e["name"]).resolve(), folder / name)
            entries.append({**e, "name": name})
    index["shards"], index["total"] = entries, per_pass * (len(entries) // len(index["shards"]))
    (folder / "shards.json").write_text(json.dumps(index))
    return folder / "shards.json"


def build_benchmark(args) -> int:
    import torch

    searcher = Searcher(args.model, progress=True)
    base = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        spec = repeated_shard_set(args.build, args.motions, Path(tmp))
        start = time.perf_counter()
        index, skipped = searcher.build_index([spec])
        build_s = time.perf_counter() - start
        save_s, written = timed(lambda: index.save(Path(args.out or tmp) / "bench"), 1)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        size = sum(f.stat().st_size for f in written) / 2**30
    print(f"indexed {len(index):,} motions ({len(index.chunk_emb):,} chunks, {len(skipped)} skipped) in {build_s:.0f} s: "
          f"{len(index) / build_s:.0f} motions/s; save {save_s:.0f} s ({size:.1f} GiB); peak RSS {peak:.0f} MiB "
          f"above the loaded model, {torch.get_num_threads()} threads")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--motions", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128, help="embedding size (the quickstart model: 128)")
    p.add_argument("--model", default=None, help="an export, to time the text encoder for one query")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default=None, help="folder for the index (default: a temporary one)")
    p.add_argument("--build", default=None, metavar="SHARDS_JSON",
                   help="time indexing --motions real motions (this shard set, repeated) with --model")
    args = p.parse_args(argv)
    if args.build:
        if not args.model:
            p.error("--build needs --model EXPORT")
        return build_benchmark(args)
    index = synthetic_index(args.motions, args.dim)
    print(f"{args.motions:,} motions, {len(index.chunk_emb):,} chunks of {args.dim} dims")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.out or tmp) / "bench"
        save_s, written = timed(lambda: index.save(path), 1)
        size = sum(f.stat().st_size for f in written) / 2**20
        load_s, loaded = timed(lambda: MotionIndex.load(path), 3)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        query = loaded.chunk_emb[0] + 0.1
        query /= np.linalg.norm(query)
        numpy_s, ranked = timed(lambda: rank_motions(loaded, query, 5), args.repeats)
        loop_s, baseline = timed(lambda: loop_scores(loaded, query), max(1, args.repeats // 10))
        # the same top 5 motions and scores (up to float32 rounding of the two matrix products)
        best = np.argsort(-baseline, kind="stable")[:5]
        assert [m for m, _, _ in ranked] == list(best) and np.allclose([r for _, r, _ in ranked], baseline[best])
        print(f"save {save_s:.2f} s ({size:.0f} MiB), load {load_s:.3f} s (median of 3), peak RSS {rss:.0f} MiB")
        print(f"query, top 5 motions: numpy {numpy_s * 1e3:.1f} ms (median of {args.repeats}); per-motion loop "
              f"{loop_s * 1e3:.0f} ms: {loop_s / numpy_s:.0f}x faster, same top 5")
        try:
            loaded.faiss()
        except Exception as err:  # the optional extra is not installed
            print(f"faiss: not measured ({err})")
        else:
            faiss_s, by_faiss = timed(lambda: rank_motions(loaded, query, 5, "faiss"), args.repeats)
            assert [m for m, _, _ in by_faiss] == [m for m, _, _ in ranked]
            print(f"faiss (IndexFlatIP, exact): {faiss_s * 1e3:.1f} ms, {numpy_s / faiss_s:.2f}x numpy, same top 5")
        if args.model:
            searcher = Searcher(args.model, progress=False)
            text_s, _ = timed(lambda: searcher.embed_texts(["a person walks forward and turns"]), args.repeats)
            print(f"text encoder, one query: {text_s * 1e3:.1f} ms; a text query in all: "
                  f"{(text_s + numpy_s) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
