"""HumanML3D (Restore): segments grouped by AMASS source with index.csv, trims, 80% rule, mirroring, no-leak split."""
import csv
from collections import Counter

import numpy as np
import pytest

from shards.converters.common import amass_motion, write_dataset
from shards.converters.restore import assign_split, group_sources, restore_samples, trim_frames
from motion.mirror import mirror_features
from shards.reader import iter_decoded
from fixtures.mocap_builders import write_amass_npz, write_smplh_model
from tools import convert_restore

KIT = "./pose_data/KIT/3/walk_poses.npy"
HDM = "./pose_data/MPI_HDM05/dg/HDM_dg_01_poses.npy"
TOTAL = "./pose_data/TotalCapture/s1/acting1_poses.npy"
TRANS = "./pose_data/Transitions_mocap/mazen_c3d/jump_poses.npy"
SOURCES = {KIT: 600, HDM: 480, TOTAL: 300, TRANS: 240}  # frames at 60 fps
ROWS = [(KIT, 0, 60, "000000.npy"), (KIT, 100, 160, "000001.npy"), (HDM, 0, 40, "000002.npy"),
        (TOTAL, 10, 50, "000003.npy"), (KIT, 0, 180, "000004.npy"), (TRANS, 0, 20, "000005.npy"),
        ("./pose_data/humanact12/humanact12/P01G01R01F0069T0143A0101.npy", 0, 40, "000006.npy"),
        (HDM, 50, 90, "000007.npy")]
TEXTS = {"000000": "a person walks#a/DET person/NOUN walk/VERB#0.0#0.0\n",
         "000001": "a person kicks#a/DET person/NOUN kick/VERB#0.5#2.0\n"
                   "someone kicks with the left leg#someone/PRON kick/VERB#0.0#0.0\n",
         "000002": "a person waves the left hand#a/DET person/NOUN wave/VERB#0.0#0.0\n",
         "000003": "a person bows#a/DET person/NOUN bow/VERB#0.0#0.0\n",
         "000004": "a person walks for a long time#a/DET person/NOUN walk/VERB#0.0#0.0\n",
         "000005": "a person jumps to the left#a/DET person/NOUN jump/VERB#nan#nan\n",
         "000006": "a person drinks#a/DET person/NOUN drink/VERB#0.0#0.0\n",
         "000007": "a person stands#a/DET person/NOUN stand/VERB#0.0#0.0\n"}
# 000005 is in train, its mirrored twin in test: the whole Transitions source must go to test
SPLITS = {"train": ["000000", "M000000", "000002", "M000002", "000004", "000005", "000006"],
          "val": ["000003", "M000003"], "test": ["000001", "M000001", "M000005"]}


@pytest.fixture(scope="module")
def restore(tmp_path_factory):
    root = tmp_path_factory.mktemp("restore")
    h3d = root / "HumanML3D"
    (h3d / "texts").mkdir(parents=True)
    for clip, text in TEXTS.items():
        (h3d / "texts" / f"{clip}.txt").write_text(text)
    for split, ids in SPLITS.items():
        (h3d / f"{split}.txt").write_text("\n".join(ids) + "\n")
    with open(h3d / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source_path", "start_frame", "end_frame", "new_name"])
        writer.writerows(ROWS)
    amass = root / "amass_data"
    for i, (path, frames) in enumerate(SOURCES.items()):
        npz = amass / path.removeprefix("./pose_data/").replace(".npy", ".npz")
        npz.parent.mkdir(parents=True, exist_ok=True)
        write_amass_npz(npz, n_frames=frames, fps=60.0, seed=i)
    models = root / "models"
    models.mkdir()
    write_smplh_model(models / "SMPLH_NEUTRAL.npz")
    return {"h3d": h3d, "amass": amass, "models": models}


def test_trim_offsets_and_split_priority():
    assert [trim_frames(p) for p in (KIT, HDM, TOTAL, TRANS)] == [0, 60, 20, 10]
    assert trim_frames("./pose_data/Eyes_Japan_Dataset/aita/walk-01-normal-aita_poses.npy") == 60
    assert trim_frames("./pose_data/MPI_Limits/03099/op2_poses.npy") == 20
    assert assign_split({"train", "test"}) == "test" and assign_split({"train", "val"}) == "val"
    assert assign_split({"train"}) == "train"


def test_grouping_gives_absolute_times_and_one_split_per_source(restore):
    counter = Counter()
    sources = {s.path: s for s in group_sources(restore["h3d"], counter=counter)}
    assert counter == {"humanact12_segment": 1, "segment_in_no_split": 1}
    assert {p: s.split for p, s in sources.items()} == {KIT: "test", HDM: "train", TOTAL: "val", TRANS: "test"}
    kit = sources[KIT]
    assert [(g.id, g.first, g.last) for g in kit.segments] == [("000000", 0, 60), ("000001", 100, 160),
                                                                ("000004", 0, 180)]
    assert kit.segments[1].captions == [{"text": "a person kicks", "start": 0.5, "end": 2.0},
                                        {"text": "someone kicks with the left leg", "start": None, "end": None}]
    # a 60 fps source: HumanML3D's frames last 1/20 s. HDM05 lost its first 3 s (60 frames) in
    # HumanML3D: frames [0, 40) are 3.0 .. 5.0 s of the source
    assert [g.span(1 / 20, 200) for g in kit.segments] == [(0.0, 3.0), (5.0, 8.0), (0.0, 9.0)]
    assert [g.span(1 / 20, 200) for g in sources[HDM].segments] == [(3.0, 5.0)]
    assert [g.span(1 / 20, 200) for g in sources[TOTAL].segments] == [(1.5, 3.5)]
    assert [g.span(1 / 20, 200) for g in sources[TRANS].segments] == [(0.5, 1.5)]


def test_convert_restore_no_leak_mirrored_and_80_percent_rule(restore, tmp_path):
    sources = group_sources(restore["h3d"])
    by_split = {s: [src for src in sources if src.split == s] for s in ("train", "val", "test")}
    out = tmp_path / "out"
    reports = write_dataset({s: restore_samples(v, restore["amass"], restore["models"]) for s, v in by_split.items()},
                            str(out), dataset="humanml3d_restore")
    assert {s: r.converted for s, r in reports.items()} == {"train": 2, "val": 2, "test": 4}
    split_of_source: dict[str, set] = {}
    samples = {}
    for split in ("train", "val", "test"):
        for s in iter_decoded(sorted(str(p) for p in (out / split).glob("*.tar"))):
            samples[s["key"]] = s
            split_of_source.setdefault(s["meta"]["source"], set()).add(split)
    assert all(len(splits) == 1 for splits in split_of_source.values())  # no source in two splits
    assert sorted(split_of_source) == sorted(SOURCES)

    kit = samples["humanml3d_restore/KIT/3/walk_poses"]
    features, _ = amass_motion(restore["amass"] / "KIT/3/walk_poses.npz", restore["models"])
    np.testing.assert_allclose(kit["motion"], features, atol=1e-6)
    assert kit["motion"].shape == (199, 263)  # the whole 10 s source at 20 fps
    # 000004 spans 9 s of 9.95 s (> 80%): its caption is dropped
    assert [(m["text"], m["start"], m["end"]) for m in kit["meta"]["moments"]] == [
        ("a person walks", 0.0, 3.0), ("a person kicks", 5.5, 7.0), ("someone kicks with the left leg", 5.0, 8.0)]
    assert kit["meta"]["moments_dropped"] == 1 and kit["meta"]["texts"] == []
    mirrored = samples["humanml3d_restore/KIT/3/Mwalk_poses"]
    np.testing.assert_allclose(mirrored["motion"], mirror_features(kit["motion"]), atol=1e-6)
    assert mirrored["meta"]["moments"][2]["text"] == "someone kicks with the right leg"
    assert mirrored["meta"]["mirrored"] is True and mirrored["meta"]["split"] == "test"
    hdm = samples["humanml3d_restore/MPI_HDM05/dg/MHDM_dg_01_poses"]["meta"]
    assert hdm["moments"][0]["text"] == "a person waves the right hand" and hdm["split"] == "train"


def test_cli_writes_splits(restore, tmp_path, capsys):
    out = tmp_path / "cli"
    assert convert_restore.main([str(restore["h3d"]), "--amass-root", str(restore["amass"]), "--body-model-dir",
                                 str(restore["models"]), "-o", str(out), "--no-mirror"]) == 0
    printed = capsys.readouterr().out
    assert "train: converted 1 samples" in printed and "val: converted 1 samples" in printed
    assert "test: converted 2 samples" in printed
    index = (out / "test" / "shards.json").read_text()
    assert '"humanact12_segment": 1' in index


# index.csv as published: its header and rows copied verbatim (HumanAct12 rows end at -1), and the
# rows of clips whose sources run at 250 fps (Eyes_Japan) and 59.99999 fps (SSM_synced)
PUBLISHED_INDEX = """source_path,start_frame,end_frame,new_name
./pose_data/humanact12/humanact12/P11G01R02F1812T1847A0402.npy,0,-1,000001.npy
./pose_data/Eyes_Japan_Dataset/hamada/walk-10-turn left-hamada_poses.npy,268,468,000650.npy
./pose_data/SSM_synced/20160330_03333/punch_kick_sync_poses.npy,0,158,000162.npy
"""


def test_published_index_rows_and_frame_timing(tmp_path):
    """The published index.csv reads unchanged (the -1 row is HumanAct12's, left out and counted),
    and clip times follow HumanML3D's int(fps / 20) striding: a 250 fps source's frames last
    0.048 s, a 59.99999 fps source's 1/30 s (frame / 20 would place them 4% and 50% too late)."""
    from shards.converters.restore import frame_seconds, read_index, source_sample

    root = tmp_path / "HumanML3D"
    (root / "texts").mkdir(parents=True)
    (root / "index.csv").write_text(PUBLISHED_INDEX)
    for clip, text in (("000650", "a person walks and turns left#a/DET#0.0#0.0\n"),
                       ("000162", "a person punches#a/DET#0.0#0.0\nthen kicks#a/DET#2.0#4.0\n")):
        (root / "texts" / f"{clip}.txt").write_text(text)
    (root / "train.txt").write_text("000001\n000650\n000162\n")
    for split in ("val", "test"):
        (root / f"{split}.txt").write_text("")
    assert read_index(root / "index.csv")["000001"][2] == -1
    counter = Counter()
    sources = {s.path.split("/")[2]: s for s in group_sources(root, counter=counter)}
    assert counter == {"humanact12_segment": 1} and sorted(sources) == ["Eyes_Japan_Dataset", "SSM_synced"]
    assert frame_seconds(250.0) == pytest.approx(0.048) and frame_seconds(59.99999) == pytest.approx(1 / 30, 1e-6)
    assert frame_seconds(120.0) == pytest.approx(1 / 20)

    eyes = source_sample(sources["Eyes_Japan_Dataset"], np.zeros((800, 263)), 250.0, 700)
    (moment,) = eyes["meta"]["moments"]
    assert (moment["start"], moment["end"]) == pytest.approx((15.744, 25.344))   # (60 + 268) * 0.048 ...
    ssm = source_sample(sources["SSM_synced"], np.zeros((200, 263)), 59.99999, 300)
    times = [t for m in ssm["meta"]["moments"] for t in (m["start"], m["end"])]
    assert times == pytest.approx([0.0, 5.2667, 1.3333, 2.6667], abs=1e-4)    # 158 frames x 1/30 s ...


def test_split_files_and_bad_rows_are_counted(restore, tmp_path):
    from shards.converters.restore import read_split_files

    lists = tmp_path / "splits"
    lists.mkdir()
    (lists / "train.txt").write_text("KIT/3/walk_poses.npz\n./pose_data/MPI_HDM05/dg/HDM_dg_01_poses.npy\n")
    (lists / "val.txt").write_text("")
    (lists / "test.txt").write_text("TotalCapture/s1/acting1_poses\n")
    index = tmp_path / "index.csv"
    rows = (restore["h3d"] / "index.csv").read_text() + "./pose_data/KIT/3/walk_poses.npy,50,20,000009.npy\n"
    index.write_text(rows)
    counter = Counter()
    sources = group_sources(restore["h3d"], index, counter=counter, split_files=read_split_files(lists))
    assert {s.path: s.split for s in sources} == {KIT: "train", HDM: "train", TOTAL: "test"}
    assert counter == {"humanact12_segment": 1, "segment_in_no_split": 1, "index_row_empty_span": 1,
                       "source_in_no_split_file": 1}

