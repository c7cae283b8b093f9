"""Exact mid-epoch resume: k batches, state_dict, a NEW process continues; the rest must match."""
import hashlib
import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shards.reader import ShardDataset, ShardLoader
from shards.schema import encode_sample
from test_shards_common import make_sample, write_raw_set

SETTINGS = dict(training=True, seed=11, video_size=16, shuffle_buffer=6)
LOADER = dict(batch_size=3, num_workers=2)


def fingerprint(batch) -> list:
    """Keys plus a hash of every tensor in the batch: equal fingerprints = identical batches."""
    digest = hashlib.sha256()
    for name in ("motion", "mask", "joints", "video", "span"):
        if name in batch:
            digest.update(batch[name].numpy().tobytes())
    digest.update(json.dumps([batch["text"], batch["events"]]).encode())
    return [batch["key"], digest.hexdigest()]


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    raws = [encode_sample(make_sample(i, video=i % 3 == 0)) for i in range(45)]
    raws[11]["motion.npy"] = raws[11]["motion.npy"][:60]   # truncated npy: skipped, counted
    raws[30]["meta.json"] = b"{broken"                      # bad json: skipped, counted
    return write_raw_set(tmp_path_factory.mktemp("resume"), raws, maxcount=7)


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[4])
    from shards.reader import ShardDataset, ShardLoader
    from test_shards_resume import fingerprint
    index, settings, state = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    loader = ShardLoader(ShardDataset(index, **settings["dataset"]), **settings["loader"])
    loader.load_state_dict(state)
    rest = [fingerprint(b) for b in loader]          # the rest of the interrupted epoch
    skipped = dict(loader.skipped)
    following = [fingerprint(b) for b in loader]     # and the whole next epoch
    print(json.dumps({"rest": rest, "skipped": skipped, "next": following, "epoch": loader.epoch}))
""")


@pytest.mark.parametrize("rank, world_size, stop_after", [(0, 1, 4), (1, 2, 5)])
def test_resume_in_new_process_matches_uninterrupted_epoch(shard_set, rank, world_size, stop_after):
    settings = {**SETTINGS, "rank": rank, "world_size": world_size}
    full = ShardLoader(ShardDataset(shard_set, **settings), **LOADER)
    epoch0 = [fingerprint(b) for b in full]
    skipped0 = dict(full.skipped)
    epoch1 = [fingerprint(b) for b in full]
    assert len(epoch0) == len(epoch1) == len(full)
    assert epoch0 != epoch1
    if world_size == 1:  # both bad samples are in this rank's epoch: met once each and counted
        assert skipped0 == {"bad_npy": 1, "bad_json": 1}

    partial = ShardLoader(ShardDataset(shard_set, **settings), **LOADER)
    head = [fingerprint(batch) for batch in itertools.islice(partial, stop_after)]
    state = json.loads(json.dumps(partial.state_dict()))  # what a checkpoint stores
    assert state["epoch"] == 0 and sum(state["consumed"]) == sum(len(k) for k, _ in head)

    args = {"dataset": settings, "loader": LOADER}
    out = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, shard_set, json.dumps(args), json.dumps(state),
                          str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    assert head + resumed["rest"] == epoch0
    assert resumed["skipped"] == skipped0
    assert resumed["next"] == epoch1 and resumed["epoch"] == 2


def test_state_from_another_setup_is_refused(shard_set):
    loader = ShardLoader(ShardDataset(shard_set, **SETTINGS), **LOADER)
    state = loader.state_dict()
    other = ShardLoader(ShardDataset(shard_set, **SETTINGS), batch_size=3, num_workers=1)
    with pytest.raises(ValueError, match="num_workers"):
        other.load_state_dict(state)
    other_seed = ShardLoader(ShardDataset(shard_set, **{**SETTINGS, "seed": 12}), **LOADER)
    with pytest.raises(ValueError, match="seed"):
        other_seed.load_state_dict(state)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("drop_last", [False, True])
def test_resume_at_every_kind_of_stop_point(shard_set, drop_last):
    """Three workers (the DataLoader's rotation must restart at the right one), several stops."""
    settings = {**SETTINGS, "training": True}
    loader_args = dict(batch_size=4, num_workers=3, drop_last=drop_last)
    full = [fingerprint(b) for b in ShardLoader(ShardDataset(shard_set, **settings), **loader_args)]
    assert len(full) == len(ShardLoader(ShardDataset(shard_set, **settings), **loader_args))
    for stop in (1, 2, 4, len(full) - 1):
        partial = ShardLoader(ShardDataset(shard_set, **settings), **loader_args)
        head = [fingerprint(b) for b in itertools.islice(partial, stop)]
        resumed = ShardLoader(ShardDataset(shard_set, **settings), **loader_args)
        resumed.load_state_dict(json.loads(json.dumps(partial.state_dict())))
        assert head + [fingerprint(b) for b in resumed] == full, stop
