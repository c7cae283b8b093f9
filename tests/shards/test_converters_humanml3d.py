"""HumanML3D converter: a tiny folder in the released layout -> per-split shard sets, checked by hand."""
import numpy as np
import pytest

from shards.converters.common import LengthFilter, clean_key, mirrored_key, write_dataset
from shards.converters.humanml3d import humanml3d_samples
from motion.features import FeatureStats
from shards.reader import ShardDataset, iter_decoded, load_index
from fixtures.mocap_builders import write_humanml3d
from tools import convert_humanml3d

TEXTS = {
    "000001": "a person walks forward then turns left.#a/DET person/NOUN walk/VERB forward/ADV then/ADV "
              "turn/VERB left/ADV#0.0#0.0\nsomeone strolls ahead#someone/PRON stroll/VERB ahead/ADV#nan#nan\n",
    # HumanML3D ships the mirrored captions already swapped
    "M000001": "a person walks forward then turns right.#a/DET person/NOUN walk/VERB forward/ADV then/ADV "
               "turn/VERB right/ADV#0.0#0.0\n",
    "000002": "a person jumps#a/DET person/NOUN jump/VERB#0.0#0.0\n",  # 29 frames: too short for train
    "000003": ("a person waves with the left hand#a/DET person/NOUN wave/VERB#0.0#0.0\n"  # whole: 249 > 200
               "a person kicks#a/DET person/NOUN kick/VERB#1.0#4.0\n"  # frames 20..80: kept
               "a person bows#a/DET person/NOUN bow/VERB#0.0#1.5\n"),  # 30 frames: dropped
    "000004": "a person sits down#a/DET person/NOUN sit/VERB down/ADP#0.0#0.0\n",  # short, but test keeps all
    "000005": "a person runs in a circle#a/DET person/NOUN run/VERB#0.0#0.0\n",
}
FRAMES = {"000001": 60, "M000001": 60, "000002": 30, "000003": 250, "000004": 30, "000005": 80}
SPLITS = {"train": ["000001", "M000001", "000002", "000003"], "val": ["000005"], "test": ["000004"]}


@pytest.fixture
def h3d(tmp_path):
    return write_humanml3d(tmp_path / "HumanML3D", FRAMES, TEXTS, SPLITS)


def by_key(folder):
    return {s["key"]: s for s in iter_decoded(sorted(str(p) for p in folder.glob("*.tar")))}


def test_convert_writes_filtered_splits_with_train_stats(h3d, tmp_path):
    out = tmp_path / "shards"
    reports = write_dataset({s: humanml3d_samples(h3d, s, with_joints=True) for s in SPLITS}, str(out),
                            dataset="humanml3d", length_filter=LengthFilter(40, 200, ("train", "val")))
    assert {s: r.converted for s, r in reports.items()} == {"train": 3, "val": 1, "test": 1}
    indices = {s: load_index(str(out / s)) for s in SPLITS}
    # 000002: its only caption (29 frames) is too short; 000003: two of three captions dropped
    assert indices["train"].extra["dropped"] == {"caption_length": 3, "no_caption_left": 1}

    train = by_key(out / "train")
    assert sorted(train) == ["humanml3d/000001", "humanml3d/000003", "humanml3d/M000001"]
    feats = {i: np.load(h3d / "new_joint_vecs" / f"{i}.npy") for i in FRAMES}
    joints = np.load(h3d / "new_joints" / "000001.npy")
    s1 = train["humanml3d/000001"]
    np.testing.assert_array_equal(s1["motion"], feats["000001"])
    np.testing.assert_array_equal(s1["joints"], joints)
    assert s1["meta"]["texts"] == [
        {"text": "a person walks forward then turns left.", "events": ["a person walks forward", "a person turns left"],
         "start": None, "end": None},
        {"text": "someone strolls ahead", "events": ["someone strolls ahead"], "start": None, "end": None}]
    assert (s1["meta"]["duration"], s1["meta"]["fps"], s1["meta"]["mirrored"]) == (59 / 20, 20.0, False)
    m1 = train["humanml3d/M000001"]["meta"]
    assert m1["mirrored"] is True and m1["source"] == "000001"
    assert m1["texts"][0]["text"].endswith("turns right.") and m1["texts"][0]["events"][-1] == "a person turns right"
    assert train["humanml3d/000003"]["meta"]["texts"] == [
        {"text": "a person kicks", "events": ["a person kicks"], "start": 1.0, "end": 4.0}]
    assert by_key(out / "test")["humanml3d/000004"]["meta"]["split"] == "test"

    # statistics: plain per-dim mean/std over the kept train clips' frames only, stored in every split
    frames = np.concatenate([feats["000001"], feats["M000001"], feats["000003"]]).astype(np.float64)
    stats = indices["train"].stats()
    np.testing.assert_allclose(stats.mean, frames.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats.std, frames.std(0), atol=1e-5)
    assert stats.count == len(frames) and isinstance(stats, FeatureStats)
    assert indices["test"].feature_stats == indices["train"].feature_stats

    # the reader crops 000003 to its remaining caption: frames 20..80
    ds = ShardDataset(str(out / "train"), training=False, shuffle_buffer=0)
    crops = {s["key"]: s for s in ds}
    np.testing.assert_array_equal(crops["humanml3d/000003"]["motion"], feats["000003"][20:80])


def test_cli_and_clear_errors(h3d, tmp_path, capsys):
    out = tmp_path / "cli"
    assert convert_humanml3d.main([str(h3d), "-o", str(out), "--splits", "train,test", "--min-frames", "none",
                                   "--max-frames", "none"]) == 0
    printed = capsys.readouterr().out
    assert "train: converted 4 samples" in printed and "test: converted 1 samples" in printed
    assert not (out / "val").exists()
    (h3d / "new_joint_vecs" / "000004.npy").unlink()
    assert convert_humanml3d.main([str(h3d), "-o", str(tmp_path / "bad"), "--splits", "test"]) == 1
    err = capsys.readouterr().err
    assert "000004.npy: missing features for id 000004" in err and "nothing converted" in err


def test_broken_samples_and_caption_lines_are_skipped_and_counted(h3d, tmp_path, capsys):
    """What the released files get wrong ends one sample or one caption line, never the run: a
    sample with NaN features (as 007975 is reported to be), a missing caption file, an empty caption
    span; each is counted by reason in the index and the report, and --dry-run says the same."""
    feats = np.load(h3d / "new_joint_vecs" / "000001.npy")
    feats[3, 7] = np.nan
    np.save(h3d / "new_joint_vecs" / "000001.npy", feats)
    (h3d / "texts" / "000005.txt").unlink()
    with open(h3d / "texts" / "M000001.txt", "a") as f:
        f.write("an empty span#a/DET#3.0#3.0\n")
    args = [str(h3d), "--min-frames", "none", "--max-frames", "none"]
    assert convert_humanml3d.main([*args, "-o", str(tmp_path / "dry"), "--dry-run"]) == 0
    dry = capsys.readouterr()
    assert not (tmp_path / "dry").exists()
    assert convert_humanml3d.main([*args, "-o", str(tmp_path / "out")]) == 0
    real = capsys.readouterr()
    for printed, verb in ((dry.out, "would convert"), (real.out, "converted")):
        lines = {line.split(":")[0]: line for line in printed.splitlines()}
        assert lines["train"].startswith(f"train: {verb} 3 samples")
        assert lines["train"].endswith("skipped {'nonfinite_motion': 1, 'caption_line': 1}")
        assert lines["val"] == f"val: {verb} 0 samples; skipped {{'no_captions': 1}}"
    assert "000001.npy: features contains NaN/inf" in real.err and "M000001.txt:2: empty time span" in real.err
    train = load_index(str(tmp_path / "out" / "train"))
    assert train.total == 3 and train.extra["skipped"] == {"nonfinite_motion": 1, "caption_line": 1}
    assert any("000001.npy" in line for line in train.extra["skip_lines"])


def test_keys_are_cleaned_to_the_schema_charset():
    assert clean_key("humanml3d_restore", "./pose_data/KIT/3/kick high.left02_poses") == \
        "humanml3d_restore/pose_data/KIT/3/kick_high_left02_poses"
    assert mirrored_key("babel/KIT/3/x") == "babel/KIT/3/Mx" and mirrored_key("x") == "Mx"
    with pytest.raises(ValueError, match="no letters or digits"):
        clean_key("..", "/")


def test_features_released_or_recomputed_and_recorded(h3d, tmp_path):
    """--features released keeps new_joint_vecs and records "humanml3d"; --features trimo recomputes
    them from new_joints like every trimo source and records "trimo"."""
    from motion.features import joints_to_features
    from motion.importers.common import ImportedMotion

    for choice, recorded in (("released", "humanml3d"), ("trimo", "trimo")):
        out = tmp_path / choice
        assert convert_humanml3d.main([str(h3d), "-o", str(out), "--splits", "test", "--features", choice]) == 0
        assert load_index(str(out / "test")).motion_features == recorded
        (sample,) = by_key(out / "test").values()
        if choice == "released":
            np.testing.assert_array_equal(sample["motion"], np.load(h3d / "new_joint_vecs" / "000004.npy"))
        else:
            joints = ImportedMotion(np.load(h3d / "new_joints" / "000004.npy"), 20.0, "x").to_canonical()
            np.testing.assert_allclose(sample["motion"], joints_to_features(joints), atol=1e-6)
    (h3d / "new_joints" / "000004.npy").unlink()
    assert convert_humanml3d.main([str(h3d), "-o", str(tmp_path / "no_joints"), "--splits", "test",
                                   "--features", "trimo"]) == 1          # skipped (no_joints): nothing converted


def test_with_joints_needs_new_joints_and_the_mirror_rule_is_recorded(h3d, tmp_path, capsys):
    (h3d / "new_joints" / "000004.npy").unlink()
    out = tmp_path / "out"
    assert convert_humanml3d.main([str(h3d), "-o", str(out), "--splits", "test", "--with-joints"]) == 1
    assert "000004.npy: missing, and --with-joints stores it" in capsys.readouterr().err
    assert convert_humanml3d.main([str(h3d), "-o", str(out), "--splits", "train", "--dataset", "h3d_v2"]) == 0
    index = load_index(str(out / "train"))
    assert "M prefix" in index.extra["mirrored_ids"]
    assert sorted(by_key(out / "train")) == ["h3d_v2/000001", "h3d_v2/000003", "h3d_v2/M000001"]   # 000002: too short
