"""Benchmark: a per-file loader against the shard reader, on local disk and over loopback HTTP.

    trimo-bench-loader [--samples 2000] [--video-samples 500] [--frames 100] [--workers 2]
                                 [--batch 64] [--epochs 4] [--dir /tmp/bench] [--out report.json]

The same synthetic samples are written twice: per file, the way TMR and MLP load data (one
`<key>.npy` motion and one `<key>.txt` caption file in HumanML3D's `caption#tokens#start#end`
lines, plus `<key>.mp4` with video), and as shards. Two settings are read: motion+text, and
motion+text+video (8 frames decoded per clip, 64 x 64, with shards.video_io on both sides).
Each is read in full epochs by (1) a map-style per-file Dataset through a shuffling DataLoader
and (2) ShardLoader (default shuffle buffer, 1000), both with the same workers and batch size,
taking turns epoch by epoch (the median epoch after a warm-up one, so the page cache is warm),
from local disk and over HTTP from a server on 127.0.0.1 in its own process (standing in for
object storage: one GET per file against one GET per shard). Both sides decode
.npy with shards.schema.load_npy_bytes and collate with shards.reader.collate_samples; the shard
side also validates every sample. Every loader must deliver the same samples (`same_samples`).
With video, a last line times shards.video_io's decoder against PyAV's default RGB conversion
(one process; the frames must be equal).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shards.reader import ShardDataset, ShardLoader, collate_samples, pack_small_tensors, unpack_small_tensors
from shards.schema import load_npy_bytes
from shards.video_io import decode_mp4, encode_mp4, uniform_indices
from shards.writer import write_shards

VIDEO_FRAMES, VIDEO_SIZE = 8, 64


class PerFileDataset(Dataset):
    """The classic layout: `<key>.npy` motion, `<key>.txt` captions (and `<key>.mp4`), read by key."""

    def __init__(self, root: str, keys: list[str], video: bool = False):
        self.root, self.keys, self.video = root, keys, video

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
        motion = load_npy_bytes(self._read(key + ".npy"), key)
        texts = parse_texts(self._read(key + ".txt").decode("utf-8"))
        out = {"key": key, "motion": motion.astype(np.float32, copy=False), "text": texts[0]["text"],
               "events": None, "moments": [], "span": (0, len(motion)), "meta": {"texts": texts}}
        if self.video:
            frames = decode_mp4(self._read(key + ".mp4"), VIDEO_FRAMES, VIDEO_SIZE, where=key)
            out["video"] = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
        return out


def parse_texts(text: str) -> list[dict]:
    """HumanML3D caption lines `caption#tokens#start#end` (0.0#0.0 = whole clip)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            caption, _, start, end = line.rsplit("#", 3)
            s, e = float(start), float(end)
            out.append({"text": caption, "start": None if s == e == 0 else s, "end": None if s == e == 0 else e})
    return out


def synthetic(n: int, frames: int, video: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)
    clips = [encode_mp4(rng.integers(0, 255, (16, VIDEO_SIZE, VIDEO_SIZE, 3), dtype=np.uint8)) for _ in range(8)] \
        if video else []
    samples = []
    for i in range(n):
        sample = {"key": f"bench/{i:06d}", "motion": rng.standard_normal((frames, 263)).astype(np.float32),
                  "meta": {"dataset": "bench", "split": "train", "fps": 20.0, "duration": frames / 20,
                           "mirrored": False, "source": str(i),
                           "texts": [{"text": f"a person moves {i}", "events": None, "start": None, "end": None}]}}
        if video:
            sample["video"] = clips[i % len(clips)]
        samples.append(sample)
    return samples


def write_per_file(data: list[dict], folder: str) -> None:
    os.makedirs(os.path.join(folder, "bench"), exist_ok=True)
    for s in data:
        base = os.path.join(folder, s["key"])
        np.save(base + ".npy", s["motion"], allow_pickle=False)
        with open(base + ".txt", "w", encoding="utf-8") as f:
            f.writelines(f"{t['text']}#a/DET person/NOUN move/VERB#0.0#0.0\n" for t in s["meta"]["texts"])
        if "video" in s:
            with open(base + ".mp4", "wb") as f:
                f.write(s["video"])


def collate_packed(samples: list[dict]) -> dict:
    return pack_small_tensors(collate_samples(samples))


def timed_epochs(loaders: dict[str, Callable], epochs: int) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Median seconds per epoch of each loader over epochs 1.. (epoch 0 warms up), and the keys of
    its last epoch. Loaders take turns epoch by epoch, so a slow spell of a shared machine hits all."""
    seconds: dict[str, list[float]] = {name: [] for name in loaders}
    keys: dict[str, list[str]] = {}
    for epoch in range(epochs):
        for name, make_batches in loaders.items():
            start = time.perf_counter()
            keys[name] = [k for batch in make_batches(epoch) for k in batch["key"]]
            if epoch > 0 or epochs == 1:
                seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(s)) for name, s in seconds.items()}, keys


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per GET would drown the report
        pass

    def copyfile(self, source, outputfile) -> None:
        """Send file bodies with sendfile(2), as a real object store would not copy them through
        Python: the server then takes less of the CPU the loaders share (both layouts alike)."""
        try:
            self.connection.sendfile(source)
        except (BrokenPipeError, ConnectionResetError):  # a reader that stops early closes its stream
            pass


def _serve(folder: str, port_queue) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=folder))
    port_queue.put(server.server_address[1])
    server.serve_forever()


def start_server(folder: str) -> tuple[multiprocessing.Process, str]:
    """A static file server on 127.0.0.1 in its own process (so it never competes for our GIL)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    process = ctx.Process(target=_serve, args=(folder, queue), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{queue.get(timeout=30)}"


def bench_setting(data: list[dict], folder: str, workers: int, batch: int, epochs: int, video: bool) -> dict:
    files, shard_dir = os.path.join(folder, "files"), os.path.join(folder, "shards")
    write_per_file(data, files)
    index = write_shards(data, shard_dir, maxcount=max(1, len(data) // 8), stats_convention=None, command="bench")
    keys = [s["key"] for s in data]

    def per_file(root: str) -> Callable:
        def batches(epoch: int):
            generator = torch.Generator().manual_seed(epoch)
            loader = DataLoader(PerFileDataset(root, keys, video), batch_size=batch, shuffle=True,
                                num_workers=workers, collate_fn=collate_packed, generator=generator)
            return (unpack_small_tensors(b) for b in loader)  # the same batch transport as ShardLoader
        return batches

    def sharded(index_url: str) -> Callable:
        loader = ShardLoader(ShardDataset(index_url, training=True, min_frames=None, max_frames=None,
                                          load_video=video, num_video_frames=VIDEO_FRAMES, video_size=VIDEO_SIZE),
                             batch_size=batch, num_workers=workers)
        return lambda epoch: loader

    server, base = start_server(folder)
    results: dict = {}
    same = True
    try:
        for place, file_root, index_url in [("local", files, index.location),
                                            ("http", f"{base}/files", f"{base}/shards/shards.json")]:
            seconds, got = timed_epochs({"per_file": per_file(file_root), "shards": sharded(index_url)}, epochs)
            same &= all(sorted(k) == sorted(keys) for k in got.values())
            row = {layout: round(len(keys) / sec, 1) for layout, sec in seconds.items()}
            row["ratio"] = round(row["shards"] / row["per_file"], 2)
            results[place] = row
    finally:
        server.terminate()
        server.join()
    megabytes = round(sum(e.bytes for e in index.shards) / 1e6, 1)
    return {"samples": len(data), "shards": len(index.shards), "shard_mb": megabytes, "same_samples": same, **results}


def decode_default_conversion(data: bytes) -> np.ndarray:
    """The baseline decoder: shards.video_io's PyAV path with PyAV's default RGB conversion."""
    import av

    with av.open(io.BytesIO(data)) as container:
        decoded = list(container.decode(video=0))
    return np.stack([decoded[i].to_ndarray(format="rgb24") for i in uniform_indices(len(decoded), VIDEO_FRAMES)])


def bench_decode(clips: list[bytes], repeats: int = 5) -> dict:
    """Clips/s of decoding l_v frames (one process, no resize): the baseline against
    shards.video_io.decode_mp4, taking turns (median of `repeats`); their frames must be equal."""
    decoders = {"default_conversion": decode_default_conversion,
                "single_thread_conversion": lambda c: decode_mp4(c, VIDEO_FRAMES, None)}
    same = all(np.array_equal(*(decode(c) for decode in decoders.values())) for c in clips)
    seconds: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(repeats):
        for name, decode in decoders.items():
            start = time.perf_counter()
            for c in clips:
                decode(c)
            seconds[name].append(time.perf_counter() - start)
    row = {name: round(len(clips) / float(np.median(sec)), 1) for name, sec in seconds.items()}
    return {**row, "ratio": round(row["single_thread_conversion"] / row["default_conversion"], 2), "same_frames": same}


def run(samples: int, video_samples: int, frames: int, workers: int, batch: int, epochs: int, folder: str) -> dict:
    report = {"frames": frames, "workers": workers, "batch": batch, "epochs": epochs, "settings": {}}
    for name, n, video in (("motion+text", samples, False), ("motion+text+video", video_samples, True)):
        if n > 0:
            sub = os.path.join(folder, name.replace("+", "_"))
            report["settings"][name] = bench_setting(synthetic(n, frames, video), sub, workers, batch, epochs, video)
    if video_samples > 0:
        report["video_decode"] = bench_decode([s["video"] for s in synthetic(8, 1, video=True)])
    report["same_samples"] = all(s["same_samples"] for s in report["settings"].values()) and \
        report.get("video_decode", {}).get("same_frames", True)
    return report


def table(report: dict) -> str:
    lines = ["| setting | place | per-file samples/s | shards samples/s | shards / per-file |", "|---|---|---|---|---|"]
    for name, result in report["settings"].items():
        for place in ("local", "http"):
            r = result[place]
            lines.append(f"| {name} ({result['samples']} samples) | {place} | {r['per_file']:,.0f} | "
                         f"{r['shards']:,.0f} | {r['ratio']:.2f}x |")
    if "video_decode" in report:
        d = report["video_decode"]
        lines += ["", f"video decode, {VIDEO_FRAMES} frames per clip, 1 process: default RGB conversion "
                      f"{d['default_conversion']:,.0f} clips/s, single-thread conversion (shards.video_io) "
                      f"{d['single_thread_conversion']:,.0f} clips/s: {d['ratio']:.2f}x"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2000, help="samples of the motion+text setting")
    ap.add_argument("--video-samples", type=int, default=500, help="samples of the motion+text+video setting (0: skip)")
    ap.add_argument("--frames", type=int, default=100, help="motion frames per sample")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (both loaders)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4,
                    help="epochs per loader, taking turns; the median of all but the first is reported")
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--out", help="write the JSON report here too")
    args = ap.parse_args(argv)
    folder = args.dir or tempfile.mkdtemp(prefix="trimo-bench-")
    try:
        report = run(args.samples, args.video_samples, args.frames, args.workers, args.batch, args.epochs, folder)
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    print(table(report))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if report["same_samples"] else 1


if __name__ == "__main__":
    sys.exit(main())
