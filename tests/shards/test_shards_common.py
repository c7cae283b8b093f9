"""Tiny synthetic samples and shard sets shared by the tests of shards/ (no tests here)."""
from __future__ import annotations

import numpy as np

from shards.video_io import encode_mp4
from shards.writer import write_shards


def make_sample(i: int, frames: int | None = None, video: bool = False, joints: bool = True,
                texts: list[dict] | None = None) -> dict:
    """Sample i: motion filled from a seed of i, frame t of the video has brightness 8 * t."""
    rng = np.random.default_rng(i)
    frames = frames if frames is not None else int(rng.integers(40, 61))
    sample = {
        "key": f"toy/{i:05d}",
        "motion": rng.standard_normal((frames, 263)).astype(np.float32),
        "meta": {"dataset": "toy", "split": "train", "fps": 20.0, "duration": frames / 20, "mirrored": False,
                 "source": f"src{i}", "texts": texts if texts is not None else [
                     {"text": f"a person does thing {i}", "events": [f"does thing {i}"], "start": None, "end": None},
                     {"text": f"someone repeats {i}", "events": None, "start": None, "end": None}]},
    }
    if joints:
        sample["joints"] = rng.standard_normal((frames + 1, 22, 3)).astype(np.float32)
    if video:
        sample["video"] = ramp_video(8)
    return sample


def ramp_video(n: int, size: int = 32) -> bytes:
    frames = np.stack([np.full((size, size, 3), 8 * t + 16, np.uint8) for t in range(n)])
    return encode_mp4(frames, fps=20.0)


def make_set(path, n: int, maxcount: int = 7, **kw) -> str:
    """Write samples 0..n-1 into `path`; returns the index path."""
    index = write_shards((make_sample(i, **kw) for i in range(n)), str(path), maxcount=maxcount, command="test")
    return index.location


def write_raw_set(path, raws: list[dict], maxcount: int = 5) -> str:
    """Write raw member dicts ({__key__, 'motion.npy': bytes, ...}) unchecked, plus an index."""
    import os

    import webdataset as wds

    from shards.schema import ShardEntry, ShardIndex

    os.makedirs(path, exist_ok=True)
    entries = []
    for n, start in enumerate(range(0, len(raws), maxcount)):
        name = f"shard-{n:06d}.tar"
        with wds.TarWriter(os.path.join(path, name), encoder=False, mtime=0.0) as tar:
            for raw in raws[start:start + maxcount]:
                tar.write(raw)
        entries.append(ShardEntry(name=name, count=len(raws[start:start + maxcount])))
    index = ShardIndex(shards=entries, command="test")
    index.save(os.path.join(path, "shards.json"))
    return os.path.join(path, "shards.json")


def keys_of(loader) -> list[str]:
    return [key for batch in loader for key in batch["key"]]
