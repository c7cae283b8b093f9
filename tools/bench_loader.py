"""Benchmark: a per-file loader against the shard reader, from local disk and over loopback HTTP.

    python -m tools.bench_loader [--samples 2000] [--frames 100] [--workers 2] [--batch 64]
                                 [--epochs 2] [--dir /tmp/bench] [--out report.json]

Writes the same synthetic samples twice: one file pair per sample (`<key>.npy` motion and
`<key>.json` meta, the HumanML3D-style layout) and as shards. Then reads full epochs with
(1) a map-style per-file Dataset through a shuffling DataLoader, (2) ShardLoader on the local
shards, (3) the per-file loader over HTTP from a loopback server (two GETs per sample),
(4) ShardLoader over HTTP (webdataset's gopen/curl streams whole shards). Reports samples/s of
the last epoch (earlier ones warm the page cache) and checks that every loader delivered the
same samples. Motion only: video decoding costs the same in every layout.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shards.reader import ShardDataset, ShardLoader, collate_samples
from shards.writer import write_shards


class PerFileDataset(Dataset):
    """The classic layout: one motion .npy and one meta .json per sample, read by key."""

    def __init__(self, root: str, keys: list[str]):
        self.root, self.keys = root, keys

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, name: str) -> bytes:
        if self.root.startswith("http"):
            with urllib.request.urlopen(f"{self.root}/{name}") as response:
                return response.read()
        with open(os.path.join(self.root, name), "rb") as f:
            return f.read()

    def __getitem__(self, i: int) -> dict:
        key = self.keys[i]
        motion = np.load(io.BytesIO(self._read(key + ".npy")), allow_pickle=False)
        meta = json.loads(self._read(key + ".json"))
        text = meta["texts"][0]
        return {"key": key, "motion": motion.astype(np.float32), "text": text["text"], "events": text["events"],
                "moments": [], "span": (0, len(motion)), "meta": meta}


def synthetic(n: int, frames: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"key": f"bench/{i:06d}", "motion": rng.standard_normal((frames, 263)).astype(np.float32),
             "meta": {"dataset": "bench", "split": "train", "fps": 20.0, "duration": frames / 20, "mirrored": False,
                      "source": str(i), "texts": [{"text": f"a person moves {i}", "events": None,
                                                    "start": None, "end": None}]}}
            for i in range(n)]


def timed_epochs(make_batches: Callable, epochs: int) -> tuple[float, list[str]]:
    for epoch in range(epochs):
        start = time.perf_counter()
        keys = [k for batch in make_batches(epoch) for k in batch["key"]]
        seconds = time.perf_counter() - start
    return seconds, keys


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per GET would drown the report
        pass


def serve(folder: str) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run(samples: int, frames: int, workers: int, batch: int, epochs: int, folder: str) -> dict:
    data = synthetic(samples, frames)
    files = os.path.join(folder, "files")
    os.makedirs(os.path.join(files, "bench"), exist_ok=True)
    for s in data:
        np.save(os.path.join(files, s["key"] + ".npy"), s["motion"], allow_pickle=False)
        with open(os.path.join(files, s["key"] + ".json"), "w") as f:
            json.dump(s["meta"], f)
    shard_dir = os.path.join(folder, "shards")
    index = write_shards(data, shard_dir, maxcount=max(1, samples // 8), stats_convention=None, command="bench")
    keys = [s["key"] for s in data]

    def per_file(root: str) -> Callable:
        def batches(epoch: int):
            generator = torch.Generator().manual_seed(epoch)
            return DataLoader(PerFileDataset(root, keys), batch_size=batch, shuffle=True, num_workers=workers,
                              collate_fn=collate_samples, generator=generator)
        return batches

    def sharded(index_url: str) -> Callable:
        loader = ShardLoader(ShardDataset(index_url, training=True, min_frames=None, max_frames=None),
                             batch_size=batch, num_workers=workers)
        return lambda epoch: loader

    server = serve(folder)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    results = {}
    try:
        for name, batches in [("per_file_local", per_file(files)), ("shards_local", sharded(index.location)),
                              ("per_file_http", per_file(f"{base}/files")),
                              ("shards_http", sharded(f"{base}/shards/shards.json"))]:
            seconds, got = timed_epochs(batches, epochs)
            results[name] = {"seconds": seconds, "samples_per_s": len(got) / seconds, "keys": sorted(got)}
    finally:
        server.shutdown()
    same = all(r.pop("keys") == sorted(keys) for r in results.values())
    megabytes = sum(e.bytes for e in index.shards) / 1e6
    return {"samples": samples, "frames": frames, "workers": workers, "batch": batch, "shard_mb": megabytes,
            "shards": len(index.shards), "same_samples": same, "loaders": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=100, help="motion frames per sample")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per loader; the last one is timed")
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--out", help="write the JSON report here too")
    args = ap.parse_args(argv)
    folder = args.dir or tempfile.mkdtemp(prefix="trimo-bench-")
    try:
        report = run(args.samples, args.frames, args.workers, args.batch, args.epochs, folder)
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if report["same_samples"] else 1


if __name__ == "__main__":
    sys.exit(main())
