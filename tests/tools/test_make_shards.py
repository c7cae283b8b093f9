"""trimo-make-shards: one's own mocap folder + a captions table -> one shard set, no glue."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from fixtures.mocap_builders import walking_bvh
from fixtures.synthetic_motion import synthetic_clip
from shards.reader import ShardDataset, iter_decoded, load_index
from shards.video_io import decode_mp4
from tools import make_shards

FIXTURES = Path(__file__).parents[1] / "fixtures"


def library(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "mocap"
    (root / "cmu").mkdir(parents=True)
    for ext in ("asf", "amc"):
        shutil.copy(FIXTURES / f"cmu_walk_60fps.{ext}", root / "cmu" / f"walk.{ext}")
    walking_bvh(root / "MyJump.bvh", n_frames=90, fps=30.0)          # an id starting with M: not a mirror
    np.save(root / "turn.npy", synthetic_clip(80, seed=3).astype(np.float32))
    rows = [
        {"path": "cmu/walk.amc", "text": "a person walks forward", "start": "0.0", "end": "1.5", "id": "walk_a"},
        {"path": "cmu/walk.amc", "text": "someone keeps walking", "start": "1.0", "end": "1.9", "id": "walk_b"},
        {"path": "MyJump.bvh", "text": "a person walks then stops", "split": "train"},
        {"path": "turn.npy", "text": "a person turns while walking", "split": "test"},
        {"path": "turn.npy", "text": "", "split": "test"},                                  # empty caption
        {"path": "nowhere.bvh", "text": "a person waves"},                                  # unknown path
        {"path": "cmu/walk.amc", "text": "a person runs", "start": "3.0", "end": "99.0"},   # span outside the take
        {"path": "cmu/walk.amc", "text": "a person sits", "start": "2.0", "end": "1.0"},    # empty span
        {"path": "turn.npy", "text": "a person spins", "split": "holdout"},                 # unknown split
        {"path": "turn.npy", "text": "a person turns left", "split": "train"},              # take is in test
        {"path": "MyJump.bvh", "text": "a person jumps", "id": "walk_a"},                    # duplicate id
    ]
    table = tmp_path / "captions.csv"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "text", "start", "end", "split", "id"])
        writer.writeheader()
        writer.writerows(rows)
    return root, table


def test_table_and_folder_to_one_shard_set(tmp_path, capsys):
    root, table = library(tmp_path)
    out = tmp_path / "shards"
    args = ["--captions", str(table), "--root", str(root), "-o", str(out), "--val", "0", "--test", "0"]
    assert make_shards.main([*args, "--dry-run"]) == 0
    assert not out.exists() and "would write 3 samples from 3 takes" in capsys.readouterr().out
    assert make_shards.main([*args, "--video", "--dataset", "studio"]) == 0
    captured = capsys.readouterr()
    for line in ("captions.csv:6: empty caption", "captions.csv:7: 'nowhere.bvh' is not a file",
                 "captions.csv:9: span 2.0..1.0", "captions.csv:10: split 'holdout'",
                 "captions.csv:11: turn.npy is in split 'test'", "captions.csv:12: id 'walk_a' is used",
                 "captions.csv:8: span 3.0..99.0 s ends after cmu/walk.amc"):
        assert line in captured.err, line
    index = load_index(str(out))
    assert index.total == 3 and index.motion_features == "trimo" and index.feature_stats is not None
    assert index.extra["skipped"] == {"empty_caption": 1, "unknown_path": 1, "bad_span": 1, "bad_split": 1,
                                      "split_conflict": 1, "duplicate_id": 1, "span_outside_take": 1}
    samples = {s["key"]: s for s in iter_decoded(sorted(str(p) for p in out.glob("*.tar")))}
    assert sorted(samples) == ["studio/MyJump", "studio/cmu/walk", "studio/turn"]
    jump = samples["studio/MyJump"]["meta"]
    assert jump["mirrored"] is False and jump["source"] == "MyJump.bvh" and jump["dataset"] == "studio"
    walk = samples["studio/cmu/walk"]
    assert [(t["text"], t["start"], t["end"]) for t in walk["meta"]["texts"]] == [
        ("a person walks forward", 0.0, 1.5), ("someone keeps walking", 1.0, 1.9)]
    assert walk["meta"]["texts"][0]["events"] == ["a person walks forward"]
    assert {s["meta"]["split"] for s in samples.values()} == {"train", "test"}
    for s in samples.values():
        assert decode_mp4(s["video"], 4, 32).shape == (4, 32, 32, 3) and s["joints"].shape[1:] == (22, 3)
    # the reader crops the walk to each caption's span
    crops = [s for s in ShardDataset(str(out), training=False, split="train", min_frames=None, max_frames=None)]
    assert sorted(len(s["motion"]) for s in crops) == [30, len(samples["studio/MyJump"]["motion"])]


def test_nothing_usable_fails_and_says_why(tmp_path, capsys):
    table = tmp_path / "captions.csv"
    table.write_text("path,text\nnowhere.bvh,a person waves\n")
    assert make_shards.main(["--captions", str(table), "--root", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "unknown_path" in err and "nothing to write" in err
    table.write_text("file,caption\n")
    assert make_shards.main(["--captions", str(table), "--root", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    assert "columns ['path', 'text'] missing" in capsys.readouterr().err


def test_own_shards_train_from_the_template_config_and_video_is_checked(tmp_path, capsys):
    """No script in between: trimo-make-shards -> training from configs/own_data.yaml -> export.
    Turning video on for shards without videos stops at start with a message naming both."""
    from configs.loading import load_run_config
    from configs.schema import ExperimentConfig
    from launch.train import main as train

    root, table = library(tmp_path)
    out = tmp_path / "shards"
    assert make_shards.main(["--captions", str(table), "--root", str(root), "-o", str(out), "--val", "0",
                             "--test", "0"]) == 0
    repo = Path(__file__).resolve().parents[2]
    args = ["--config", str(repo / "configs" / "own_data.yaml"), f"data.retrieval.index={out}",
            "data.retrieval.batch_size=2", "data.num_workers=0", "run.max_steps=2", "validation.every=0",
            "logging.wandb=false", "checkpoint.every=2"]
    assert train([*args, f"run.output_dir={tmp_path / 'run'}"]) == 0
    exported = load_run_config(ExperimentConfig, tmp_path / "run" / "export")
    assert exported.run.name == "own_data" and exported.model.motion_features == "trimo"
    assert exported.data.retrieval.index == str(out)
    assert train([*args, f"run.output_dir={tmp_path / 'video'}", "model.retrieval.use_video=true"]) == 2
    err = capsys.readouterr().err
    assert "has no video.mp4 in its first 16 samples, but model.retrieval.use_video is on" in err
