"""Shard sets with many shards: exact resume at random points without rereading the epoch, and a
reader state whose size does not depend on the samples per shard (issue #17; the full-size
numbers come from tools/bench_shard_scale.py)."""
import io
import itertools
import json
import os
import random

import numpy as np
import pytest
import torch
import webdataset as wds

from shards.reader import ShardDataset, ShardLoader
from shards.schema import ShardEntry, ShardIndex, encode_sample
from test_shards_resume import fingerprint
from tools import bench_shard_scale

NUM_SHARDS = 1200


def tiny_sample(i: int) -> dict:
    """A 4..7-frame motion with two captions (the reader runs with min_frames=None)."""
    rng = np.random.default_rng(i)
    frames = 4 + i % 4
    return {"key": f"tiny/{i:05d}", "motion": rng.standard_normal((frames, 263)).astype(np.float32),
            "meta": {"dataset": "tiny", "split": "train", "fps": 20.0, "duration": frames / 20, "mirrored": False,
                     "source": f"s{i}", "texts": [{"text": f"a person moves {i}", "events": None, "start": None,
                                                   "end": None},
                                                  {"text": f"someone walks {i}", "events": None, "start": None,
                                                   "end": None}]}}


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    """1,200 shards of 1 to 4 distinct samples (2,987 in all), a few of them bad, and its index."""
    path = tmp_path_factory.mktemp("many_shards")
    counts = np.random.default_rng(0).integers(1, 5, NUM_SHARDS).tolist()
    entries, i = [], 0
    for n, count in enumerate(counts):
        name = f"shard-{n:06d}.tar"
        with wds.TarWriter(str(path / name), encoder=False, mtime=0) as tar:
            for _ in range(count):
                raw = encode_sample(tiny_sample(i))
                if i % 211 == 7:
                    raw["motion.npy"] = raw["motion.npy"][:60]   # truncated: skipped and counted
                elif i % 307 == 11:
                    raw["meta.json"] = b"{broken"                 # not JSON: skipped and counted
                tar.write(raw)
                i += 1
        entries.append(ShardEntry(name=name, count=count, bytes=os.path.getsize(path / name), splits={"train": count}))
    ShardIndex(shards=entries, command="test").save(str(path / "shards.json"))
    return str(path / "shards.json")


SETTINGS = dict(training=True, seed=5, min_frames=None, max_frames=None, load_video=False, shuffle_buffer=100)


def loader(index, rank=0, world=1, workers=2, batch=16, **kw) -> ShardLoader:
    return ShardLoader(ShardDataset(index, rank=rank, world_size=world, **{**SETTINGS, **kw}), batch_size=batch,
                       num_workers=workers, drop_last=True)


@pytest.mark.parametrize("rank, world, workers", [(0, 1, 2), (2, 3, 2), (1, 2, 0)])
def test_resume_at_random_points_of_many_shards_matches_uninterrupted(many_shards, rank, world, workers):
    full = loader(many_shards, rank, world, workers)
    epoch0 = [fingerprint(b) for b in full]
    skipped0 = dict(full.skipped)
    epoch1 = [fingerprint(b) for b in full]
    assert len(epoch0) == len(full) > 20 and epoch0 != epoch1
    if world == 1:
        assert skipped0 == {"bad_npy": 15, "bad_json": 10}
    for stop in sorted(random.Random(rank * 10 + world).sample(range(1, len(epoch0)), 3)):
        partial = loader(many_shards, rank, world, workers)
        head = [fingerprint(b) for b in itertools.islice(partial, stop)]
        state = json.loads(json.dumps(partial.state_dict()))
        resumed = loader(many_shards, rank, world, workers)
        resumed.load_state_dict(state)
        assert head + [fingerprint(b) for b in resumed] == epoch0, stop
        assert dict(resumed.skipped) == skipped0
        assert [fingerprint(b) for b in resumed] == epoch1


def test_resume_reads_only_what_is_left(many_shards, monkeypatch):
    """A resumed worker decodes the samples after its cursor only, not the part of the epoch
    already done (which cost time proportional to it)."""
    prepared = []
    original = ShardDataset._prepare

    def counting(self, raw, pick, counter):
        prepared.append(raw.get("__key__"))
        return original(self, raw, pick, counter)

    monkeypatch.setattr(ShardDataset, "_prepare", counting)
    full = [fingerprint(b) for b in loader(many_shards, workers=0)]
    everything = list(prepared)
    stop = len(full) * 4 // 5
    prepared.clear()
    partial = loader(many_shards, workers=0)
    head = [fingerprint(b) for b in itertools.islice(partial, stop)]
    before = len(prepared)
    prepared.clear()
    resumed = loader(many_shards, workers=0)
    resumed.load_state_dict(partial.state_dict())
    assert head + [fingerprint(b) for b in resumed] == full
    assert prepared == everything[before:]
    # a state from before cursors existed still resumes exactly, by replaying the stream
    legacy = {k: v for k, v in partial.state_dict().items() if k != "cursors"}
    prepared.clear()
    replayed = loader(many_shards, workers=0)
    replayed.load_state_dict(legacy)
    assert head + [fingerprint(b) for b in replayed] == full
    assert prepared == everything


def state_bytes(state: dict) -> int:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()


def test_state_size_does_not_grow_with_samples_per_shard(tmp_path):
    """Same 2,000 samples as 2,000 shards of 1, 200 of 10 and 2 of 1,000: states of the same size."""
    sizes = {}
    for layout in ("1x2000", "10x200", "1000x2"):
        index = bench_shard_scale.synthesize(str(tmp_path), layout, frames=40)
        part = loader(index, workers=2, batch=16, min_frames=40, max_frames=199, shuffle_buffer=1000)
        batches = iter(part)
        for _ in range(len(part) * 3 // 5):
            next(batches)
        state = part.state_dict()
        batches.close()
        assert all(c is not None and c["taken"] > 0 for c in state["cursors"])
        # skip counts hold one number per reason met (the 1-sample and 10-sample templates
        # hold no sample that the length filter drops): compared without them
        bare = {**state, "skips_done": {}, "skips_epoch": [], "cursors": [{**c, "skips": {}} for c in state["cursors"]]}
        sizes[layout] = (state_bytes(state), state_bytes(bare), len(json.dumps(bare)))
    assert max(whole for whole, _, _ in sizes.values()) <= 2048, sizes
    for column in (1, 2):
        values = [row[column] for row in sizes.values()]
        assert max(values) - min(values) <= 16, sizes


def test_bench_shard_scale_tiny_run(tmp_path, capsys):
    code = bench_shard_scale.main(["--samples", "2000", "--layout", "2x1000", "--layout", "1000x1+1x1000",
                                   "--worlds", "1,2", "--workers", "1", "--batch", "8", "--check", "2",
                                   "--dir", str(tmp_path), "--out", str(tmp_path / "r.json")])
    printed = capsys.readouterr().out
    report = json.loads(printed[:printed.index("\n|")])
    assert code == 0 and report == json.loads((tmp_path / "r.json").read_text())
    assert report["targets"]["exact"] and report["targets"]["state_met"] and report["targets"]["startup_met"]
    assert report["layouts"]["1000x1+1x1000"]["shards"] == 1001
    rows = [r for layout in report["layouts"].values() for r in layout["ranks"]]
    assert [(r["world"], r["rank"]) for r in rows] == [(1, 0), (2, 0), (2, 1)] * 2
    assert all(r["exact_resume"] and r["checked_batches"] == 2 and r["plan_kb"] > 0 for r in rows)
    assert "| 1000x1+1x1000 | 1,001 | 2 | 1 |" in printed
    index = ShardIndex.from_json(json.loads((tmp_path / "2x1000" / "shards.json").read_text()))
    assert index.total == 2000 and len(index.shards) == 1000 and index.feature_stats is not None
    assert index.shards[0].splits == {"train": 2} and index.shards[0].bytes > 0


def test_another_ranks_state_resumes_by_replaying(many_shards):
    """Ranks consume the same counts, so a rank may resume from another rank's state; its
    cursors belong to that rank, so they are left out and the stream is replayed."""
    ranks = [loader(many_shards, rank=r, world=2) for r in range(2)]
    stop = 40
    heads = [[fingerprint(b) for b in itertools.islice(part, stop)] for part in ranks]
    full1 = [fingerprint(b) for b in loader(many_shards, rank=1, world=2)]
    assert heads[1] == full1[:stop]
    resumed = loader(many_shards, rank=1, world=2)
    resumed.load_state_dict(json.loads(json.dumps(ranks[0].state_dict())))
    assert resumed.cursors == [None, None]
    assert heads[1] + [fingerprint(b) for b in resumed] == full1


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_a_buffer_of_tiny_shards_holds_no_open_files(many_shards):
    """Samples of 1,200 small shards in a 1,000-sample shuffle buffer: mapped shards held a file
    descriptor each (past the usual limit of 1,024, reads failed and samples were skipped)."""
    opened = []
    part = loader(many_shards, workers=0, shuffle_buffer=1000, batch=64)
    for _ in part:
        opened.append(len(os.listdir("/proc/self/fd")))
    assert max(opened) - min(opened) < 16 and "tar_error" not in part.skipped
