"""tools/bench_loader.py: every loader (per-file / shards, local / HTTP) delivers the same epoch."""
import json
import shutil

import numpy as np
import pytest

from tools import bench_loader


def test_bench_loader_tiny_run(tmp_path, capsys):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed: webdataset streams http shards through curl")
    code = bench_loader.main(["--samples", "24", "--frames", "20", "--workers", "0", "--batch", "5",
                              "--epochs", "1", "--dir", str(tmp_path), "--out", str(tmp_path / "r.json")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["same_samples"] is True
    assert set(report["loaders"]) == {"per_file_local", "shards_local", "per_file_http", "shards_http"}
    for result in report["loaders"].values():
        assert result["samples_per_s"] == pytest.approx(24 / result["seconds"])
    assert json.loads((tmp_path / "r.json").read_text()) == report


def test_per_file_dataset_reads_what_was_written(tmp_path):
    data = bench_loader.synthetic(3, 10)
    (tmp_path / "bench").mkdir()
    for s in data:
        np.save(tmp_path / (s["key"] + ".npy"), s["motion"])
        (tmp_path / (s["key"] + ".json")).write_text(json.dumps(s["meta"]))
    ds = bench_loader.PerFileDataset(str(tmp_path), [s["key"] for s in data])
    assert len(ds) == 3 and (ds[1]["motion"] == data[1]["motion"]).all() and ds[2]["text"] == "a person moves 2"
