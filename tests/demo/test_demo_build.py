"""The demo build: tools/build_demo.py writes readable, deterministic retrieval and localization shard sets.

Builds with video run as subprocesses: the renderer's EGL context cannot be opened in a process
forked from one that already holds a context, which the pytest process may (other render tests).
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demo.build import build_demo
from demo.corpus import SPLITS, CorpusSize
from motion.features import FeatureStats, features_to_joints
from shards.reader import ShardDataset, ShardLoader, iter_decoded, load_index
from shards.schema import validate_sample
from shards.video_io import decode_mp4
REPO = Path(__file__).resolve().parents[2]


def build_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "tools/build_demo.py", "--size", "tiny", "--quiet", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "seed0"
    summary = build_cli("--out", str(out), "--workers", "2")
    assert "retrieval: 24 clips" in summary and "localization: 4 clips" in summary
    return out


def _samples(out, name):
    index = load_index(str(out / name / "shards.json"))
    return index, list(iter_decoded([str(out / name / e.name) for e in index.shards]))


def test_same_seed_gives_byte_identical_shards_for_any_worker_count(tiny, tmp_path):
    build_cli("--out", str(tmp_path), "--workers", "0")
    for name in ("retrieval", "localization"):
        first, again = sorted((tiny / name).glob("*.tar")), sorted((tmp_path / name).glob("*.tar"))
        assert [p.name for p in first] == [p.name for p in again] and first
        for a, b in zip(first, again):
            assert a.read_bytes() == b.read_bytes(), f"{name}/{a.name} differs between builds"
        stats_a = json.loads((tiny / name / "shards.json").read_text())["feature_stats"]
        stats_b = json.loads((tmp_path / name / "shards.json").read_text())["feature_stats"]
        assert stats_a == stats_b


def test_another_seed_gives_another_corpus(tmp_path):
    size = CorpusSize(6, 1, (10.0, 11.0))
    build_demo(str(tmp_path / "a"), size, seed=0, video=False, workers=0, progress=False)
    build_demo(str(tmp_path / "b"), size, seed=1, video=False, workers=0, progress=False)
    _, a = _samples(tmp_path / "a", "retrieval")
    _, b = _samples(tmp_path / "b", "retrieval")
    assert [s["key"] for s in a] == [s["key"] for s in b]  # same clip ids ...
    assert all(not np.array_equal(x["motion"][:5], y["motion"][:5]) for x, y in zip(a, b))  # ... other motions
    assert [s["meta"]["texts"] for s in a] != [s["meta"]["texts"] for s in b]
    assert all("video" not in s for s in a)


def test_retrieval_samples_are_complete_and_consistent(tiny):
    index, samples = _samples(tiny, "retrieval")
    assert len(samples) == index.total == 24 and len(index.shards) == 3
    splits = {s["meta"]["split"] for s in samples}
    assert splits <= set(SPLITS) and "train" in splits
    for s in samples:
        validate_sample(s)
        meta = s["meta"]
        assert meta["dataset"] == "trimo-demo" and meta["fps"] == 20.0 and not meta["mirrored"]
        assert 40 <= len(s["motion"]) <= 196 and len(s["joints"]) == len(s["motion"]) + 1
        assert meta["duration"] == pytest.approx(len(s["motion"]) / 20.0)
        assert 3 <= len(meta["texts"]) <= 5 or meta["split"] != "train"
        for text in meta["texts"]:
            assert text["start"] is None and len(text["events"]) == len(meta["actions"])
        np.testing.assert_allclose(features_to_joints(s["motion"]), s["joints"][:-1], atol=1e-3)
        frames = decode_mp4(s["video"], num_frames=8, size=None)
        assert frames.shape == (8, 128, 128, 3) and frames.std() > 1.0  # a picture, not a blank
    train = [s["motion"] for s in samples if s["meta"]["split"] == "train"]
    expected = FeatureStats.compute(train, convention="per_dim")
    np.testing.assert_allclose(index.stats().mean, expected.mean, rtol=1e-4, atol=1e-5)
    assert index.stats().count == expected.count  # stats come from the train split only


def test_localization_samples_have_moments_inside_long_motions(tiny):
    index, samples = _samples(tiny, "localization")
    assert len(samples) == 4
    for s in samples:
        validate_sample(s)
        meta = s["meta"]
        assert meta["duration"] >= 10.0
        assert meta["moments"] and "video" not in s
        times = [(m["start"], m["end"]) for m in meta["moments"]]
        assert all(0 <= a < b <= meta["duration"] for a, b in times)
        assert {(t["start"], t["end"]) for t in meta["texts"]} == set(times)
        actions = meta["actions"]
        assert actions[0]["start"] == 0 and all(x["end"] == y["start"] for x, y in zip(actions, actions[1:]))
        assert meta["generator"]["moments"] == "context"
        assert {m["kind"] for m in meta["moments"]} <= {"plain", "compound", "neighbour", "ordinal"}
    assert index.extra["moments"] == "context"   # what launch/setup_env.sh's ensure_demo checks


def test_the_generator_version_is_recorded_from_2_on(tiny, tmp_path):
    build_cli("--out", str(tmp_path), "--workers", "0", "--no-video", "--generator", "1")
    for name in ("retrieval", "localization"):
        assert load_index(str(tiny / name / "shards.json")).extra["generator"] == 2   # what ensure_demo checks
        assert "generator" not in load_index(str(tmp_path / name / "shards.json")).extra   # generator 1: as before
    whole_body = {"cartwheel", "backflip", "roll", "crawl", "get_up", "dance"}
    for out, version in ((tiny, 2), (tmp_path, 1)):
        _, samples = _samples(out, "retrieval")
        assert {s["meta"]["generator"]["version"] for s in samples} == {version}
        names = {a["name"] for s in samples for a in s["meta"]["actions"]}
        assert bool(names & whole_body) == (version == 2), names


def test_the_reader_batches_demo_clips_with_video(tiny):
    dataset = ShardDataset(str(tiny / "retrieval" / "shards.json"), training=False, rank=0, world_size=1,
                           video_size=64)
    batch = next(iter(ShardLoader(dataset, batch_size=4)))
    assert batch["motion"].shape[0] == 4 and batch["motion"].shape[-1] == 263
    assert batch["video"].shape[:3] == (4, 8, 3) and all(isinstance(t, str) and t for t in batch["text"])
