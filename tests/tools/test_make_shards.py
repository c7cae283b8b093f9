"""trimo-make-shards: one's own mocap folder + a captions table -> one shard set, no glue."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

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
    assert make_shards.main([*args, "--dry-run", "--localization"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists() and "would write 3 samples from 3 takes" in printed
    assert "would write 1 localization samples" in printed
    assert make_shards.main([*args, "--video", "--localization", "--dataset", "studio"]) == 0
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
    # the walk, cut into two spans, is also an untrimmed localization sample; one take, one split
    located = list(iter_decoded(sorted(str(p) for p in (out / "localization").glob("*.tar"))))
    assert load_index(str(out / "localization")).motion_features == "trimo"
    assert [s["key"] for s in located] == ["studio/cmu/walk"]
    assert located[0]["meta"]["texts"] == [] and located[0]["meta"]["split"] == walk["meta"]["split"]
    assert located[0]["meta"]["moments"] == [{"text": "a person walks forward", "start": 0.0, "end": 1.5},
                                             {"text": "someone keeps walking", "start": 1.0, "end": 1.9}]
    np.testing.assert_array_equal(located[0]["motion"], walk["motion"])
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


# The real clips' README labels them only "mixed walking" (CMU) and "locomotion and varied actions"
# (LAFAN1), so their captions say no more than that.
REAL_ROWS = [("cmu/cmu_clip_a.amc", "train", [(0, 6, "a person walks"), (6, 12, "a person walks on"),
                                              (12, 20, "a person keeps walking")]),
             ("lafan1/lafan1_clip_a.bvh", "train", [(0, 8, "a person moves around"), (20, 30, "a person walks"),
                                                    (150, 160, "a person moves about")]),
             ("lafan1/lafan1_clip_b.bvh", "test", [(0, 8, "a person moves around"), (10, 18, "a person walks")])]


@pytest.mark.slow
@pytest.mark.parametrize("real", [False, True], ids=["synthetic", "real-mocap"])
def test_table_to_two_rank_training_and_evaluation(tmp_path, request, real):
    """The README's own-data path, no script in between: a captions table over a mocap folder ->
    trimo-make-shards with spans, --video and --localization -> 2-rank training from
    configs/own_data.yaml with video and the localization head -> trimo-evaluate on the test split.
    With the real CMU and LAFAN1 clips, a 4-minute take trains as windows, not filtered out."""
    from configs.loading import load_run_config
    from configs.schema import ExperimentConfig
    from fixtures import trainer_fixtures
    from launch import evaluate

    root = tmp_path / "mocap"
    root.mkdir()
    for ext in ("asf", "amc"):
        shutil.copy(FIXTURES / f"cmu_walk_60fps.{ext}", root / f"walk.{ext}")
    walking_bvh(root / "jump.bvh", n_frames=90, fps=30.0)
    for name, seed in (("turn", 3), ("step", 5)):
        np.save(root / f"{name}.npy", synthetic_clip(120, seed=seed).astype(np.float32))
    takes = [("walk.amc", "train", [(0, 1.2, "a person walks forward"), (0.8, 1.9, "a person keeps walking")]),
             ("jump.bvh", "train", [(0, 1.5, "a person walks"), (1.5, 2.9, "a person walks then stops")]),
             ("turn.npy", "test", [(0, 3, "a person turns"), (3, 5.9, "a person turns while walking")]),
             ("step.npy", "test", [(0, 3, "a person steps"), (3, 5.9, "a person steps to the side")])]
    if real:
        mocap = request.getfixturevalue("shared_mocap")
        for path, _, _ in REAL_ROWS:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            for src in (mocap / path).parent.glob(Path(path).stem + ".*"):
                shutil.copy(src, root / path.rsplit("/", 1)[0] / src.name)
        takes += REAL_ROWS
    table = tmp_path / "captions.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "split", "start", "end", "text"])
        writer.writerows((path, split, *span) for path, split, spans in takes for span in spans)
    shards = tmp_path / "shards"
    assert make_shards.main(["--captions", str(table), "--root", str(root), "-o", str(shards),
                             "--video", "--localization"]) == 0
    n_train = sum(split == "train" for _, split, _ in takes)
    for index in (load_index(str(shards)), load_index(str(shards / "localization"))):
        assert sum(e.splits.get("train", 0) for e in index.shards) == n_train
        assert sum(e.splits.get("test", 0) for e in index.shards) == len(takes) - n_train

    run_dir = tmp_path / "run"
    env = trainer_fixtures.launch_env(tmp_path)
    trainer_fixtures.run([trainer_fixtures.ACCELERATE, "launch", *trainer_fixtures.LAUNCHERS["zero2"],
                          "--num_processes", "2", "--main_process_port", str(trainer_fixtures.free_port()),
                          "-m", "launch.train", "--config", "configs/own_data.yaml",
                          f"data.retrieval.index={shards}", f"data.localization.index={shards / 'localization'}",
                          "model.retrieval.use_video=true", "model.use_localization=true",
                          "data.retrieval.batch_size=1", "data.localization.batch_size=1", "data.num_workers=0",
                          "run.max_steps=3", "validation.every=0", "checkpoint.every=3", "logging.wandb=false",
                          f"run.output_dir={run_dir}"], env)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert np.isfinite([r["retrieval/align_mv"], r["localization/loss"]]).all()
        assert r["reader_skips"] == {"retrieval": {}, "localization": {}}   # the long take is windowed
    exported = load_run_config(ExperimentConfig, run_dir / "export")
    assert exported.run.name == "own_data" and exported.data.localization.index == str(shards / "localization")

    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(run_dir / "export"), "--shards", str(shards), "--localization-shards",
                          str(shards / "localization"), "--split", "test", "--out", str(out), "--no-corpus"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    n_test, n_spans = len(takes) - n_train, sum(len(spans) for _, split, spans in takes if split == "test")
    assert report["retrieval"]["n_items"] == n_test and report["retrieval"]["n_video_items"] == n_test
    assert report["localization"]["n_queries"] == n_spans and report["localization"]["n_motions"] == n_test
    assert 0.0 <= report["localization"]["model"]["normal"]["mIoU"] <= 100.0


def test_one_feature_definition_from_released_humanml3d_to_own_bvh(tmp_path, capsys, caplog):
    """A model trained on a HumanML3D release converted with --features released evaluates a BVH
    library made with trimo-make-shards --features humanml3d (both indexes say "humanml3d") without
    a warning; the same library made with trimo's features is refused, naming both and the fix."""
    from configs.loading import load_run_config
    from configs.schema import ExperimentConfig
    from fixtures.mocap_builders import write_humanml3d
    from fixtures.trainer_fixtures import write_text_backbone
    from launch import evaluate
    from launch.train import main as train
    from tools import convert_humanml3d

    ids = [f"{i:06d}" for i in range(8)]
    h3d = write_humanml3d(tmp_path / "HumanML3D", dict.fromkeys(ids, 60),
                          {i: f"a person walks {i}#a/DET#0.0#0.0\n" for i in ids},
                          {"train": ids[:6], "test": ids[6:]})
    assert convert_humanml3d.main([str(h3d), "-o", str(tmp_path / "h3d"), "--splits", "train,test",
                                   "--features", "released"]) == 0
    assert load_index(str(tmp_path / "h3d" / "train")).motion_features == "humanml3d"
    repo = Path(__file__).resolve().parents[2]
    assert train(["--config", str(repo / "configs" / "tiny_test.yaml"), f"run.output_dir={tmp_path / 'run'}",
                  f"data.retrieval.index={tmp_path / 'h3d' / 'train'}", "model.use_localization=false",
                  "model.retrieval.use_video=false", f"model.retrieval.text.backbone={write_text_backbone(tmp_path / 'bert')}",
                  "data.retrieval.batch_size=2", "data.num_workers=0", "run.max_steps=1", "validation.every=0",
                  "logging.wandb=false"]) == 0
    export = tmp_path / "run" / "export"
    assert load_run_config(ExperimentConfig, export).model.motion_features == "humanml3d"

    root = tmp_path / "mocap"
    root.mkdir()
    for i in range(3):
        walking_bvh(root / f"take{i}.bvh", n_frames=60 + 15 * i, fps=30.0)
    table = tmp_path / "captions.csv"
    table.write_text("path,text,split\n" + "".join(f"take{i}.bvh,a person walks {i},test\n" for i in range(3)))
    for features in ("humanml3d", "trimo"):
        assert make_shards.main(["--captions", str(table), "--root", str(root), "-o", str(tmp_path / features),
                                 "--features", features]) == 0
        assert load_index(str(tmp_path / features)).motion_features == features
    caplog.clear()
    assert evaluate.main(["--model", str(export), "--shards", str(tmp_path / "humanml3d"), "--no-pyramid",
                          "--no-corpus", "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["retrieval"]["n_items"] == 3
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "feature" in r.getMessage()]
    # search computes the library's features in the model's definition, and takes the humanml3d set
    from search.library import Searcher

    index, skipped = Searcher(export, progress=False).build_index([root, tmp_path / "humanml3d"])
    assert index.motion_features == "humanml3d" and len(index) == 6 and not skipped
    _, refused = Searcher(export, progress=False).build_index([tmp_path / "trimo"])
    assert [reason for _, reason, _ in refused] == ["motion_features"]
    with pytest.raises(SystemExit, match="holds 'trimo' motion features but the model reads 'humanml3d' ones; "
                                         rf"convert the set \(trimo-convert-features {tmp_path / 'trimo'} -o OUT "
                                         "--to humanml3d\\)"):
        evaluate.main(["--model", str(export), "--shards", str(tmp_path / "trimo"), "--out", str(tmp_path / "e2")])
