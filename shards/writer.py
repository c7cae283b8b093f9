"""Write a shard set: samples -> WebDataset tar shards (webdataset.ShardWriter) + `shards.json`.

- Order: samples are written in the order the input iterable gives them; conversion may run in
  `num_workers` processes (an ordered `Pool.imap`), so the shards are the same for any worker
  count. Member mtimes, owner and mode are fixed, so the same input gives byte-identical shards.
  The mtime is the integer 0: for a float tarfile writes a pax header before every member,
  which doubles the headers the reader parses.
- A shard is closed when it reaches `maxcount` samples or `maxsize` bytes (webdataset's rule:
  checked before each write).
- Every sample is checked with shards.schema.validate_sample before it is written; duplicate
  keys are an error. A convert function may return None to leave a source item out.
- After writing, feature statistics are computed by streaming motion.npy back from the shards
  (motion.features.FeatureStats, `stats_convention`) and stored inline in the index.
"""
from __future__ import annotations

import multiprocessing
import os
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import webdataset as wds

from shards.schema import INDEX_NAME, MOTION_FEATURES, ShardEntry, ShardError, ShardIndex, encode_sample, stats_to_json


def write_shards(items: Iterable[Any], out_dir: str, *, convert: Callable[[Any], dict | None] | None = None,
                 num_workers: int = 0, maxcount: int = 1000, maxsize: float = 1e9,
                 pattern: str = "shard-%06d.tar", stats_convention: str | None = "per_dim",
                 stats_name: str = "", command: str | None = None, extra: dict | None = None,
                 motion_features: str = "trimo") -> ShardIndex:
    """Write `items` (sample dicts, or anything `convert` turns into one) as shards in `out_dir`.

    A sample dict is {key, motion (T, 263), meta, joints? (T, 22, 3), video? (mp4 bytes)}.
    `convert` must be picklable (a module-level function) when `num_workers > 0`.
    `motion_features` names the 263-d definition the motions follow (motion.features.MOTION_FEATURES).
    Returns the index, also saved as `out_dir/shards.json`.
    """
    if motion_features not in MOTION_FEATURES:
        raise ShardError(f"motion_features={motion_features!r} must be one of {MOTION_FEATURES}")
    if "%" not in pattern or "/" in pattern:
        raise ShardError(f"shard pattern {pattern!r} must be a file name with a %d-style field, e.g. 'shard-%06d.tar'")
    os.makedirs(out_dir, exist_ok=True)
    entries: list[ShardEntry] = []
    seen: set[str] = set()
    frames = 0
    splits: Counter = Counter()

    def close_shard(fname: str) -> None:
        nonlocal frames
        entries.append(ShardEntry(name=os.path.basename(fname), count=writer.count, bytes=os.path.getsize(fname),
                                  frames=frames, splits=dict(sorted(splits.items()))))
        frames = 0
        splits.clear()

    writer = None
    try:
        for sample in _converted(items, convert, num_workers):
            if sample is None:
                continue
            encoded = encode_sample(sample)
            if sample["key"] in seen:
                raise ShardError(f"sample key {sample['key']!r} occurs twice; keys must be unique in a shard set")
            seen.add(sample["key"])
            if writer is None:  # ShardWriter opens its first file at once; wait for a sample
                writer = wds.ShardWriter(os.path.join(out_dir, pattern), maxcount=maxcount, maxsize=maxsize,
                                         post=close_shard, verbose=0, mtime=0, user="trimo", group="trimo")
            if writer.count >= maxcount or writer.size >= maxsize:
                writer.next_stream()  # close now so this shard's frame total stays separate
            writer.write(encoded)
            frames += len(sample["motion"])
            splits[sample["meta"]["split"]] += 1
    finally:
        if writer is not None:  # on an error the shards so far stay on disk, without an index
            writer.close()
    if writer is None:
        raise ShardError(f"no samples to write to {out_dir}; check the converter's input")

    index = ShardIndex(shards=entries, command=command if command is not None else _this_command(),
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"), motion_features=motion_features, extra=dict(extra or {}))
    if stats_convention is not None:
        index.feature_stats = stats_to_json(compute_feature_stats(
            [os.path.join(out_dir, e.name) for e in entries], convention=stats_convention, name=stats_name))
    index.save(os.path.join(out_dir, INDEX_NAME))
    index.location = os.path.join(out_dir, INDEX_NAME)
    return index


def compute_feature_stats(urls: list[str], convention: str = "per_dim", name: str = "",
                          split: str | None = None):
    """FeatureStats over motion.npy of every sample in `urls` (optionally only meta.split == split)."""
    from motion.features import FeatureStats
    from shards.reader import iter_decoded

    def motions() -> Iterator:
        for sample in iter_decoded(urls, members=("motion.npy", "meta.json")):
            if split is None or sample["meta"].get("split") == split:
                yield sample["motion"]

    return FeatureStats.compute(motions(), convention=convention, name=name)


def _converted(items: Iterable[Any], convert: Callable | None, num_workers: int) -> Iterator:
    if convert is None:
        yield from items
        return
    if num_workers <= 0:
        yield from map(convert, items)
        return
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        yield from pool.imap(convert, items, chunksize=4)


def _this_command() -> str:
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv])
