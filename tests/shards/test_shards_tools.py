"""tools/validate_shards.py and tools/shard_stats.py on good and damaged shard sets."""
import json
import os

import numpy as np
import pytest

from motion.features import FeatureStats
from shards.reader import load_index
from shards.schema import encode_sample
from shards.writer import write_shards
from test_shards_common import make_sample, write_raw_set
from tools import shard_stats, validate_shards


@pytest.fixture(scope="module")
def samples():
    out = [make_sample(i, video=i % 5 == 0) for i in range(12)]
    for s in out[9:]:
        s["meta"]["split"] = "test"
    return out


@pytest.fixture(scope="module")
def good_set(tmp_path_factory, samples):
    return write_shards(samples, str(tmp_path_factory.mktemp("good")), maxcount=5, command="make").location


def run_json(tool, argv, capsys):
    code = tool.main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_validate_good_set(good_set, samples, capsys):
    code, report = run_json(validate_shards, [good_set, "--decode-video"], capsys)
    assert code == 0 and report["ok"] and report["errors"] == {}
    assert [s["found"] for s in report["shards"]] == [s["index_count"] for s in report["shards"]] == [5, 5, 2]
    seconds = [len(s["motion"]) / 20 for s in samples]
    assert report["durations_s"]["min"] == min(seconds) and report["durations_s"]["max"] == max(seconds)
    assert report["durations_s"]["total_hours"] == pytest.approx(sum(seconds) / 3600)
    words = [len(t["text"].split()) for s in samples for t in s["meta"]["texts"]]
    assert report["captions"]["total"] == 24 and report["captions"]["words"]["mean"] == pytest.approx(np.mean(words))
    assert report["tally"]["split:train"] == 9 and report["tally"]["split:test"] == 3
    assert report["tally"]["with_video"] == 3 and report["tally"]["with_events"] == 12


def test_validate_damaged_set_names_the_problems(tmp_path, samples, capsys):
    raws = [encode_sample(s) for s in samples]
    raws[3]["motion.npy"] = b"garbage"
    raws[7]["meta.json"] = b"[]"
    index = write_raw_set(tmp_path, raws, maxcount=5)
    with open(tmp_path / "shard-000002.tar", "r+b") as f:  # cut the last shard in its first member
        f.truncate(700)
    code, report = run_json(validate_shards, [index, "--report", str(tmp_path / "r.json")], capsys)
    assert code == 1 and not report["ok"]
    assert report["errors"] == {"bad_npy": 1, "bad_meta": 1, "tar_error": 1, "count_mismatch": 1}
    assert any("toy/00003" in m and "motion.npy" in m for m in report["messages"])
    assert any("shard-000002.tar" in m and "index says 2" in m for m in report["messages"])
    assert json.loads((tmp_path / "r.json").read_text()) == report


def test_write_index_for_foreign_shards(tmp_path, good_set, capsys):
    folder = tmp_path / "copy"
    os.makedirs(folder)
    src = os.path.dirname(good_set)
    for name in os.listdir(src):
        if name.endswith(".tar"):
            (folder / name).write_bytes(open(os.path.join(src, name), "rb").read())
    code, _ = run_json(validate_shards, [str(folder), "--write-index"], capsys)
    assert code == 0
    written, original = load_index(str(folder)), load_index(good_set)
    assert [(e.name, e.count, e.frames, e.bytes, e.splits) for e in written.shards] == \
           [(e.name, e.count, e.frames, e.bytes, e.splits) for e in original.shards]
    assert sum(sum(e.splits.values()) for e in written.shards) == written.total
    assert "tools.validate_shards" in written.command and written.feature_stats is None
    # rewriting the index of an older trimo (no per-split counts) keeps its feature statistics
    old = original.to_json()
    for e in old["shards"]:
        del e["splits"]
    (folder / "shards.json").write_text(json.dumps(old))
    code, _ = run_json(validate_shards, [str(folder), "--write-index"], capsys)
    rewritten = load_index(str(folder))
    assert code == 0 and rewritten.feature_stats == original.feature_stats is not None
    assert [e.splits for e in rewritten.shards] == [e.splits for e in original.shards]


def test_shard_stats_matches_direct_computation(tmp_path, good_set, samples, capsys):
    out = tmp_path / "train_stats.npz"
    code, summary = run_json(shard_stats, [good_set, "--split", "train", "--convention", "humanml3d_group",
                                           "--out", str(out)], capsys)
    direct = FeatureStats.compute([s["motion"] for s in samples[:9]], convention="humanml3d_group")
    saved = FeatureStats.load(out)
    assert code == 0 and summary["frames"] == direct.count == saved.count
    np.testing.assert_allclose(saved.mean, direct.mean, rtol=1e-12)
    np.testing.assert_allclose(saved.std, direct.std, rtol=1e-12)
    assert saved.convention == "humanml3d_group" and saved.name == "train"

    copy = tmp_path / "set"
    os.makedirs(copy)
    for name in os.listdir(os.path.dirname(good_set)):
        (copy / name).write_bytes(open(os.path.join(os.path.dirname(good_set), name), "rb").read())
    assert shard_stats.main([str(copy / "shards.json"), "--update-index"]) == 0
    stored = load_index(str(copy)).stats()
    everything = FeatureStats.compute([s["motion"] for s in samples])
    np.testing.assert_allclose(stored.std, everything.std, rtol=1e-12)
    assert shard_stats.main([good_set, "--split", "nope"]) == 2


def test_validate_checks_the_per_split_counts(tmp_path, good_set, capsys):
    index = json.loads(open(good_set).read())
    first = index["shards"][0]
    assert sum(first["splits"].values()) == first["count"] == 5
    first["splits"] = {"val": 5}  # the right total, the wrong split
    path = tmp_path / "shards.json"
    path.write_text(json.dumps(index))
    code, report = run_json(validate_shards, [str(path), "--urls", os.path.dirname(good_set) + "/shard-*.tar"], capsys)
    assert code == 1 and report["errors"] == {"count_mismatch": 1}
    assert "per split" in report["messages"][0] and "shard-000000.tar" in report["messages"][0]
    assert report["shards"][0]["splits"] == json.loads(open(good_set).read())["shards"][0]["splits"]
