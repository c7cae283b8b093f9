"""Writer: shard sizes, deterministic bytes with parallel conversion, index counts and stats."""
import hashlib
import json
import os
import tarfile

import numpy as np
import pytest

from motion.features import FeatureStats
from shards.reader import iter_decoded
from shards.schema import ShardError
from shards.writer import write_shards
from test_shards_common import make_sample


def convert(i):  # module level: picklable for the worker pool
    return None if i == 5 else make_sample(i)


def digest(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))
            if name.endswith(".tar")}


def test_counts_order_and_stats(tmp_path):
    samples = [make_sample(i) for i in range(23)]
    index = write_shards(samples, str(tmp_path), maxcount=5, command="write-test")
    assert [e.count for e in index.shards] == [5, 5, 5, 5, 3]
    assert [e.frames for e in index.shards] == [sum(len(s["motion"]) for s in samples[i:i + 5]) for i in range(0, 23, 5)]
    on_disk = json.loads((tmp_path / "shards.json").read_text())
    assert on_disk["total"] == 23 and on_disk["command"] == "write-test"
    assert [e["bytes"] for e in on_disk["shards"]] == [os.path.getsize(tmp_path / e["name"]) for e in on_disk["shards"]]
    # order inside the shards is the input order, members are exactly the schema's
    with tarfile.open(tmp_path / "shard-000001.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    # one 512-byte header per member: no pax extension header (it costs the reader a header and a
    # read per member), which tarfile would write for a float mtime
    assert all(m.pax_headers == {} and m.mtime == 0 and m.offset_data - m.offset == 512 for m in members)
    assert names[:4] == ["toy/00005.joints.npy", "toy/00005.meta.json", "toy/00005.motion.npy", "toy/00006.joints.npy"]
    back = list(iter_decoded([str(tmp_path / e.name) for e in index.shards]))
    assert [s["key"] for s in back] == [s["key"] for s in samples]
    for a, b in zip(back, samples):
        np.testing.assert_array_equal(a["motion"], b["motion"])
    # stats stored inline equal a direct computation over the same arrays
    direct = FeatureStats.compute([s["motion"] for s in samples], convention="per_dim")
    stored = index.stats()
    np.testing.assert_allclose(stored.mean, direct.mean, rtol=1e-12)
    np.testing.assert_allclose(stored.std, direct.std, rtol=1e-12)
    assert stored.count == sum(len(s["motion"]) for s in samples) and stored.convention == "per_dim"
    frames = np.concatenate([s["motion"] for s in samples]).astype(np.float64)
    np.testing.assert_allclose(stored.mean, frames.mean(0), atol=1e-12)


def test_parallel_conversion_gives_identical_bytes(tmp_path):
    serial = write_shards(range(14), str(tmp_path / "a"), convert=convert, maxcount=4, num_workers=0)
    parallel = write_shards(range(14), str(tmp_path / "b"), convert=convert, maxcount=4, num_workers=2)
    assert serial.total == 13 and [e.count for e in serial.shards] == [4, 4, 4, 1]
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert serial.feature_stats == parallel.feature_stats


def test_maxsize_closes_shards(tmp_path):
    samples = [make_sample(i, frames=50, joints=False) for i in range(6)]
    one = len(samples[0]["motion"].tobytes())
    index = write_shards(samples, str(tmp_path), maxcount=100, maxsize=2.5 * one)
    assert [e.count for e in index.shards] == [3, 3]


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ShardError, match="twice"):
        write_shards([make_sample(1), make_sample(1)], str(tmp_path / "dup"))
    bad = make_sample(2)
    bad["motion"][0, 0] = np.nan
    with pytest.raises(ShardError, match="toy/00002"):
        write_shards([bad], str(tmp_path / "nan"))
    with pytest.raises(ShardError, match="no samples"):
        write_shards([], str(tmp_path / "empty"))
