"""tools/bench_loader.py: per-file and shard loaders, local and over HTTP, deliver the same epochs."""
import json

import numpy as np
import pytest

import torch

from shards.reader import ShardDataset, ShardLoader, collate_samples, pack_small_tensors
from tools import bench_loader


def test_bench_loader_tiny_run(tmp_path, capsys):
    code = bench_loader.main(["--samples", "24", "--video-samples", "6", "--frames", "20", "--workers", "0",
                              "--batch", "5", "--epochs", "2", "--dir", str(tmp_path),
                              "--out", str(tmp_path / "r.json")])
    printed = capsys.readouterr().out
    report = json.loads(printed[:printed.index("\n|")])
    assert code == 0 and report["same_samples"] is True
    assert set(report["settings"]) == {"motion+text", "motion+text+video"}
    for setting in report["settings"].values():
        for place in ("local", "http"):
            row = setting[place]
            assert row["per_file"] > 0 and row["ratio"] == pytest.approx(row["shards"] / row["per_file"], abs=0.01)
    assert "| motion+text+video (6 samples) | http |" in printed
    decode = report["video_decode"]  # the baseline decoder gives the same frames as shards.video_io
    assert decode["same_frames"] is True and decode["ratio"] == pytest.approx(
        decode["single_thread_conversion"] / decode["default_conversion"], abs=0.01)
    assert json.loads((tmp_path / "r.json").read_text()) == report


def test_per_file_dataset_reads_what_was_written(tmp_path):
    data = bench_loader.synthetic(3, 10, video=True)
    bench_loader.write_per_file(data, str(tmp_path))
    ds = bench_loader.PerFileDataset(str(tmp_path), [s["key"] for s in data], video=True)
    assert len(ds) == 3 and (ds[1]["motion"] == data[1]["motion"]).all() and ds[2]["text"] == "a person moves 2"
    assert ds[0]["video"].shape == (bench_loader.VIDEO_FRAMES, 3, bench_loader.VIDEO_SIZE, bench_loader.VIDEO_SIZE)
    assert ds[0]["meta"]["texts"] == [{"text": "a person moves 0", "start": None, "end": None}]


def test_both_layouts_give_the_same_batch(tmp_path):
    data = bench_loader.synthetic(4, 12, video=True)
    bench_loader.write_per_file(data, str(tmp_path / "files"))
    from shards.writer import write_shards
    index = write_shards(data, str(tmp_path / "shards"), stats_convention=None, command="t")
    per_file = collate_samples([bench_loader.PerFileDataset(str(tmp_path / "files"), [s["key"] for s in data],
                                                            video=True)[i] for i in range(4)])
    ds = ShardDataset(index.location, training=False, min_frames=None, max_frames=None,
                      num_video_frames=bench_loader.VIDEO_FRAMES, video_size=bench_loader.VIDEO_SIZE)
    sharded = collate_samples(list(ds))
    for name in ("motion", "mask", "video"):
        assert torch_equal(per_file[name], sharded[name]), name
    # outside a worker the small-tensor transport leaves a batch as it is ...
    assert pack_small_tensors(sharded) is sharded
    # ... and through a worker process it delivers the same tensors, with their dtypes
    in_process = list(ShardLoader(ds, batch_size=3, num_workers=0))
    from_workers = list(ShardLoader(ds, batch_size=3, num_workers=1))
    assert len(in_process) == len(from_workers) == 2
    for a, b in zip(in_process, from_workers):
        for name, value in a.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == b[name].dtype and torch.equal(value, b[name]), name
            else:
                assert value == b[name], name


def torch_equal(a, b):
    return a.shape == b.shape and np.array_equal(a.numpy(), b.numpy())
