"""Streaming reader: rank/worker split, epoch shuffles, uneven counts, captions, crops, URLs."""
import functools
import http.server
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from shards.reader import ShardDataset, ShardLoader, collate_samples, expand_urls
from shards.schema import ShardError, ShardIndex
from shards.writer import write_shards
from test_shards_common import keys_of, make_sample, make_set


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def set40(tmp_path_factory):
    return make_set(tmp_path_factory.mktemp("set40"), 40, maxcount=7)  # shards of 7,7,7,7,7,5


def rank_loaders(index, world=2, workers=2, batch=4, **kw):
    return [ShardLoader(ShardDataset(index, rank=r, world_size=world, **kw), batch_size=batch, num_workers=workers)
            for r in range(world)]


def epoch_keys(loaders, epoch):
    out = []
    for loader in loaders:
        loader.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        out.append([k for b in batches for k in b["key"]])
    return out


def test_two_ranks_two_workers_each_sample_once_per_epoch(set40):
    all_keys = sorted(f"toy/{i:05d}" for i in range(40))
    loaders = rank_loaders(set40, seed=7)
    e0, e1 = epoch_keys(loaders, 0), epoch_keys(loaders, 1)
    for per_rank in (e0, e1):
        assert sorted(per_rank[0] + per_rank[1]) == all_keys
        assert len(per_rank[0]) == len(per_rank[1]) == 20
    assert e0 != e1 and e0[0] != e1[0]  # a different order (and split) each epoch
    again = epoch_keys(rank_loaders(set40, seed=7), 1)
    assert again == e1  # same seed, same epoch: same order on every rank
    other_seed = epoch_keys(rank_loaders(set40, seed=8), 1)
    assert other_seed != e1


def test_samples_are_decoded_faithfully(set40):
    loader = ShardLoader(ShardDataset(set40, training=False), batch_size=8)
    seen = 0
    for batch in loader:
        for i, key in enumerate(batch["key"]):
            source = make_sample(int(key.split("/")[1]))
            n = len(source["motion"])
            assert batch["length"][i] == n and batch["mask"][i].sum() == n and not batch["mask"][i, n:].any()
            assert torch.equal(batch["motion"][i, :n], torch.from_numpy(source["motion"]))
            assert torch.equal(batch["joints"][i, : n + 1], torch.from_numpy(source["joints"]))
            assert batch["text"][i] == source["meta"]["texts"][0]["text"]  # evaluation: first caption
            seen += 1
    assert seen == 40


@pytest.mark.parametrize("n, world, workers, uneven", [(37, 2, 2, "pad"), (37, 2, 2, "drop"), (5, 3, 2, "pad"),
                                                       (23, 2, 1, "pad")])
def test_uneven_counts_give_equal_batches(tmp_path, n, world, workers, uneven):
    index = make_set(tmp_path, n, maxcount=5)
    loaders = rank_loaders(index, world=world, workers=workers, batch=4, uneven=uneven, seed=1)
    per_rank_batches, fresh, repeats = [], [], 0
    for loader in loaders:
        batches = list(loader)
        per_rank_batches.append(len(batches))
        for b in batches:
            fresh += [k for k, r in zip(b["key"], b["repeat"]) if not r]
            repeats += int(b["repeat"].sum())
    assert len(set(per_rank_batches)) == 1 and per_rank_batches[0] == len(loaders[0])
    slots = world * workers
    if uneven == "pad":
        assert sorted(fresh) == sorted(f"toy/{i:05d}" for i in range(n))  # every sample once, plus repeats
        assert repeats == -n % slots
    else:
        assert len(fresh) == len(set(fresh)) == n - n % slots and repeats == 0


def test_caption_choice_crop_and_length_filter(tmp_path):
    texts = [{"text": "walks in place", "events": ["walks"], "start": 0.5, "end": 2.75},
             {"text": "the whole clip", "events": None, "start": None, "end": None}]
    samples = [make_sample(i, frames=80, texts=texts) for i in range(6)]
    from shards.writer import write_shards
    index = write_shards(samples, str(tmp_path), maxcount=3).location

    first = next(iter(ShardDataset(index, training=False)))
    src = samples[0]
    assert first["text"] == "walks in place" and first["span"] == (10, 55) and first["events"] == ["walks"]
    np.testing.assert_array_equal(first["motion"], src["motion"][10:55])
    np.testing.assert_array_equal(first["joints"], src["joints"][10:56])

    chosen = set()
    loader = ShardLoader(ShardDataset(index, training=True, seed=0), batch_size=3)
    for epoch in range(3):
        loader.set_epoch(epoch)
        chosen |= {t for b in loader for t in b["text"]}
    assert chosen == {"walks in place", "the whole clip"}  # random caption in training

    only_whole = ShardDataset(index, training=True, min_frames=50)  # the 45-frame crop is too short
    assert {s["text"] for s in only_whole} == {"the whole clip"}

    none_fit = ShardDataset(index, training=False, min_frames=100, fill_skipped=False)
    loader = ShardLoader(none_fit, batch_size=2)
    assert keys_of(loader) == [] and loader.skipped == {"filtered_length": 6}
    with pytest.raises(ShardError, match="no valid sample"):
        list(ShardDataset(index, training=False, min_frames=100))


def test_video_frames_and_collate(tmp_path):
    index = make_set(tmp_path, 6, maxcount=3, video=True, joints=False)
    loader = ShardLoader(ShardDataset(index, training=False, video_size=16, num_video_frames=4), batch_size=6)
    (batch,) = list(loader)
    assert batch["video"].shape == (6, 4, 3, 16, 16) and batch["video"].dtype == torch.uint8
    assert batch["has_video"].all() and "joints" not in batch
    # ramp video: frame t has brightness 8t+16; 4 uniform frames of 8 are 1, 3, 5, 7
    levels = batch["video"].float().mean(dim=(2, 3, 4))
    assert torch.allclose(levels, torch.tensor([24.0, 40, 56, 72]).expand(6, 4), atol=2)

    mixed = collate_samples([{**make_sample(0), "video": np.ones((4, 3, 8, 8), np.uint8), "text": "a", "events": None,
                              "moments": [], "span": (0, 5)},
                             {**make_sample(1, joints=False), "text": "b", "events": None, "moments": [], "span": (0, 5)}])
    assert mixed["has_video"].tolist() == [True, False] and mixed["video"][1].sum() == 0
    assert mixed["has_joints"].tolist() == [True, False]
    assert mixed["motion"].shape[1] == max(len(make_sample(0)["motion"]), len(make_sample(1)["motion"]))


def test_url_forms_read_the_same_samples(tmp_path, set40):
    folder = os.path.dirname(set40)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".tar"))
    plain = keys_of(ShardLoader(ShardDataset(set40, training=False), batch_size=16))
    forms = {
        "brace": f"{folder}/shard-{{000000..000005}}.tar",
        "glob": f"{folder}/shard-*.tar",
        "pipe": [f"pipe:cat {folder}/{n}" for n in names],
        "file": [f"file://{folder}/{n}" for n in names],
    }
    assert len(expand_urls(forms["brace"])) == 6 and expand_urls(forms["glob"]) == [f"{folder}/{n}" for n in names]
    for name, urls in forms.items():
        keys = keys_of(ShardLoader(ShardDataset(set40, urls, training=False), batch_size=16))
        assert keys == plain, name
    # http through webdataset's gopen (curl) from a loopback server
    if shutil.which("curl"):
        handler = functools.partial(QuietHandler, directory=folder)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            keys = keys_of(ShardLoader(ShardDataset(f"{base}/shards.json", training=False), batch_size=16))
        finally:
            server.shutdown()
        assert keys == plain
    # an fsspec filesystem (in-memory here; s3://, gs://, ... work the same through fsspec)
    import fsspec
    fs = fsspec.filesystem("memory")
    for n in names + ["shards.json"]:
        fs.pipe(f"/set40/{n}", open(os.path.join(folder, n), "rb").read())
    keys = keys_of(ShardLoader(ShardDataset("memory://set40/shards.json", training=False), batch_size=16))
    assert keys == plain
    with pytest.raises(ShardError, match="matches no shard"):
        ShardDataset(set40, f"{folder}/nothing-*.tar")


def test_reads_rank_and_world_from_torch_distributed(tmp_path, set40):
    script = textwrap.dedent(f"""
        import sys, torch.distributed as dist
        from shards.reader import ShardDataset, ShardLoader
        rank = int(sys.argv[1])
        dist.init_process_group("gloo", init_method="file://{tmp_path}/rendezvous", rank=rank, world_size=2)
        loader = ShardLoader(ShardDataset({set40!r}, training=True, seed=3), batch_size=4, num_workers=1)
        keys = [k for b in loader for k in b["key"]]
        print(loader.dataset.rank, loader.dataset.world_size, len(loader), ",".join(keys))
        dist.destroy_process_group()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(r)], stdout=subprocess.PIPE, text=True)
             for r in range(2)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o[:3] for o in outs] == [["0", "2", "5"], ["1", "2", "5"]]
    keys = [o[3].split(",") for o in outs]
    assert sorted(keys[0] + keys[1]) == sorted(f"toy/{i:05d}" for i in range(40))
    explicit = [keys_of(loader) for loader in rank_loaders(set40, world=2, workers=1, seed=3)]
    assert keys == explicit


def test_localization_readers_keep_the_whole_untrimmed_motion(tmp_path):
    """A sample with per-moment captions is cropped for retrieval but not for localization."""
    import numpy as np

    from shards.reader import ShardDataset
    from shards.writer import write_shards

    motion = np.random.default_rng(0).normal(size=(100, 263)).astype(np.float32)
    meta = {"dataset": "t", "split": "test", "fps": 20.0, "duration": 5.0, "mirrored": False, "source": "s",
            "texts": [{"text": "a person waves", "events": None, "start": 1.0, "end": 2.0}],
            "moments": [{"text": "a person waves", "start": 1.0, "end": 2.0}]}
    index = write_shards([{"key": "x", "motion": motion, "meta": meta}], tmp_path)
    cropped = next(iter(ShardDataset(index, training=False, rank=0, world_size=1, min_frames=1, max_frames=None)))
    whole = next(iter(ShardDataset(index, training=False, rank=0, world_size=1, min_frames=1, max_frames=None,
                                   crop_to_caption=False)))
    assert cropped["span"] == (20, 40) and len(cropped["motion"]) == 20
    assert whole["span"] == (0, 100) and np.array_equal(whole["motion"], motion)
    assert whole["moments"] == meta["moments"] and whole["text"] == "a person waves"


def test_a_long_untrimmed_motion_comes_as_a_window_around_a_moment(tmp_path):
    """Longer than max_frames: a max_frames window that holds a whole moment (random in training,
    the earliest one around the first moment in evaluation), instead of being filtered out."""
    motion = np.random.default_rng(1).normal(size=(3000, 263)).astype(np.float32)
    moments = [{"text": "a person waves", "start": 10.0, "end": 12.0},
               {"text": "a person jumps", "start": 120.0, "end": 125.0}]
    meta = {"dataset": "t", "split": "train", "fps": 20.0, "duration": 150.0, "mirrored": False, "source": "s",
            "texts": [], "moments": moments}
    index = write_shards([{"key": f"x{i}", "motion": motion, "meta": meta} for i in range(40)], tmp_path)
    read = dict(rank=0, world_size=1, min_frames=20, max_frames=400, crop_to_caption=False, load_video=False)
    first = next(iter(ShardDataset(index, training=False, **read)))
    assert first["span"] == (0, 400) and np.array_equal(first["motion"], motion[:400])
    windows = [s["span"] for s in ShardDataset(index, training=True, seed=5, **read)]
    assert all(stop - start == 400 for start, stop in windows)
    inside = [any(start <= m["start"] * 20 and m["end"] * 20 <= stop for m in moments) for start, stop in windows]
    assert all(inside)
    assert len(set(windows)) > 10 and {start < 1000 for start, _ in windows} == {True, False}


def mixed_split_set(path, n=48, maxcount=5):
    """Samples 0..n-1 with meta.split train, train, val, test, train, ... mixed inside every shard."""
    def sample(i):
        s = make_sample(i, joints=False)
        s["meta"]["split"] = ("train", "train", "val", "test")[i % 4]
        return s
    return write_shards((sample(i) for i in range(n)), str(path), maxcount=maxcount, stats_convention=None)


def test_split_plan_reads_each_sample_of_the_split_once(tmp_path, caplog):
    index = mixed_split_set(tmp_path / "mixed")
    split_of = {f"toy/{i:05d}": ("train", "train", "val", "test")[i % 4] for i in range(48)}
    # the index counts every shard's samples per split
    for e, start in zip(index.shards, range(0, 48, 5)):
        direct = [split_of[f"toy/{i:05d}"] for i in range(start, min(start + 5, 48))]
        assert e.splits == {s: direct.count(s) for s in sorted(set(direct))} and sum(e.splits.values()) == e.count
    train = sorted(k for k, s in split_of.items() if s == "train")
    for epoch in (0, 1):  # 24 train samples over 2 ranks x 2 workers: each once, none repeated
        loaders = rank_loaders(index.location, seed=3, split="train", min_frames=None, max_frames=None)
        for loader in loaders:
            loader.set_epoch(epoch)
        batches = [list(loader) for loader in loaders]
        keys = [[k for b in rank for k in b["key"]] for rank in batches]
        assert len(keys[0]) == len(keys[1]) == 12 and sorted(keys[0] + keys[1]) == train
        assert not any(b["repeat"].any() for rank in batches for b in rank)
        assert all(loader.skipped == {} for loader in loaders)
    # evaluation order is the stored order of the split's samples
    val = ShardDataset(index.location, training=False, split="val", min_frames=None, max_frames=None)
    assert [s["key"] for s in val] == sorted(k for k, s in split_of.items() if s == "val")
    with pytest.raises(ShardError, match="no samples of split 'tset'"):
        ShardDataset(index.location, split="tset")
    # an index written before splits were counted: the reader counts them by reading meta.json once
    old = ShardIndex.from_json(index.to_json(), location=index.location)
    for e in old.shards:
        e.splits = {}
    with caplog.at_level("WARNING", logger="trimo.shards"):
        fallback = ShardDataset(old, training=False, split="val", min_frames=None, max_frames=None)
    assert fallback.counts == [e.splits.get("val", 0) for e in index.shards]
    assert [s["key"] for s in fallback] == [s["key"] for s in val]
    assert "no per-split counts" in caplog.text and "--write-index" in caplog.text
