"""Bad and corrupted shards: samples are skipped and counted, the reader never dies, and no
member is ever unpickled."""
import io
import json
import os
import pickle
import random
import shutil
from collections import Counter

import numpy as np

from shards.reader import IGNORED_MEMBER, ShardDataset, ShardLoader
from shards.schema import encode_sample
from test_shards_common import make_sample, write_raw_set


class CreatesFile:
    """Unpickling this runs open(path, 'w'): the file appears iff something unpickled it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def bad_set(folder, marker):
    """30 samples; the damaged ones and the reason the reader must count for each."""
    raws = [encode_sample(make_sample(i, video=i % 4 == 0)) for i in range(30)]
    expected = {}

    def damage(i, reason, **members):
        raws[i].update(members)
        expected[reason] = expected.get(reason, 0) + 1

    damage(1, "bad_npy", **{"motion.npy": raws[1]["motion.npy"][:90]})          # truncated array
    damage(2, "bad_npy", **{"motion.npy": npy_bytes(np.array([CreatesFile(marker)], dtype=object), True)})
    nan = make_sample(3)["motion"]
    nan[5, 9] = np.nan
    damage(3, "nonfinite", **{"motion.npy": npy_bytes(nan)})
    inf = make_sample(5)["joints"]
    inf[0, 0, 0] = np.inf
    damage(5, "nonfinite", **{"joints.npy": npy_bytes(inf)})
    damage(6, "bad_json", **{"meta.json": b"{'single': 'quotes'}"})
    damage(7, "bad_json", **{"meta.json": pickle.dumps(CreatesFile(marker))})
    damage(8, "bad_video", **{"video.mp4": os.urandom(400)})
    damage(9, "bad_shape", **{"motion.npy": npy_bytes(np.zeros((20, 251), np.float32))})
    meta = make_sample(10)["meta"]
    meta["texts"] = [{"text": "   ", "events": None, "start": None, "end": None}]
    damage(10, "empty_caption", **{"meta.json": json.dumps(meta).encode()})
    del raws[11]["meta.json"]
    expected["missing_field"] = 1
    # pickles in members nobody asked for: ignored, never decoded; their samples stay usable
    raws[12]["extra.pyd"] = pickle.dumps(CreatesFile(marker))
    raws[13]["data.pickle"] = pickle.dumps(CreatesFile(marker))
    bad_keys = {f"toy/{i:05d}" for i in (1, 2, 3, 5, 6, 7, 8, 9, 10, 11)}
    return write_raw_set(folder, raws, maxcount=7), expected, bad_keys


def test_bad_samples_are_skipped_counted_and_pickles_never_run(tmp_path):
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(CreatesFile(tmp_path / "payload_works")))  # the payload is live ...
    assert (tmp_path / "payload_works").exists()
    index, expected, bad_keys = bad_set(tmp_path / "set", marker)

    # 2 ranks x 2 workers, evaluation order, no refill: every sample met once in some own range
    skipped, fresh = {}, []
    for rank in range(2):
        loader = ShardLoader(ShardDataset(index, training=False, rank=rank, world_size=2, fill_skipped=False,
                                          video_size=16), batch_size=4, num_workers=2)
        for batch in loader:
            fresh += [k for k, r in zip(batch["key"], batch["repeat"]) if not r]
            assert np.isfinite(batch["motion"].numpy()).all()
        for reason, n in loader.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    assert skipped == {**expected, IGNORED_MEMBER: 2}
    assert sorted(fresh) == sorted({f"toy/{i:05d}" for i in range(30)} - bad_keys)
    assert not marker.exists()  # ... and the reader never ran it

    # with refill (the default), every rank still yields exactly its quota of good samples
    counts = []
    for rank in range(2):
        loader = ShardLoader(ShardDataset(index, training=True, rank=rank, world_size=2, video_size=16),
                             batch_size=4, num_workers=2)
        batches = list(loader)
        counts.append(len(batches))
        assert sum(len(b["key"]) for b in batches) == 2 * loader.dataset.quota(2)
        assert not bad_keys & {k for b in batches for k in b["key"]}
    assert counts == [len(loader)] * 2
    assert not marker.exists()


def corrupt(path, rng):
    data = bytearray(open(path, "rb").read())
    kind = rng.choice(["flip", "truncate", "zero"])
    if kind == "flip":
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    else:
        start = rng.randrange(len(data))
        data[start:start + rng.randint(1, 2048)] = bytes(min(2048, len(data) - start))[: len(data[start:start + 2048])]
    open(path, "wb").write(bytes(data))


def test_random_corruption_never_crashes_and_counts_add_up(tmp_path):
    n = 12
    clean = write_raw_set(tmp_path / "clean", [encode_sample(make_sample(i, frames=20 + i, video=i % 3 == 0))
                                               for i in range(n)], maxcount=4)
    rng = random.Random(1234)
    reasons = Counter()
    for trial in range(12):
        folder = tmp_path / f"trial{trial}"
        shutil.copytree(os.path.dirname(clean), folder)
        for name in rng.sample(sorted(f for f in os.listdir(folder) if f.endswith(".tar")), rng.randint(1, 3)):
            corrupt(folder / name, rng)
        index = str(folder / "shards.json")
        loader = ShardLoader(ShardDataset(index, training=False, fill_skipped=False, min_frames=None,
                                          video_size=16), batch_size=5)
        keys = []
        for batch in loader:
            keys += batch["key"]
            assert np.isfinite(batch["motion"].numpy()).all() and batch["motion"].shape[-1] == 263
        skipped = sum(v for k, v in loader.skipped.items() if k != IGNORED_MEMBER)
        assert len(keys) + skipped == n, (trial, loader.skipped)  # every position: yielded or counted
        reasons.update(loader.skipped)
        assert len(set(keys)) == len(keys) and set(keys) <= {f"toy/{i:05d}" for i in range(n)}

        # two ranks with refill: equal batch counts whatever broke (unless nothing is left at all)
        if len(keys):
            per_rank = [len(list(ShardLoader(ShardDataset(index, training=True, rank=r, world_size=2, min_frames=None,
                                                          video_size=16), batch_size=2))) for r in range(2)]
            assert per_rank[0] == per_rank[1]
    # the trials did break things in several ways (this seed: tar errors, npy, json and video damage)
    assert reasons["tar_error"] > 0 and len(reasons) >= 3, reasons
