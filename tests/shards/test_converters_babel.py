"""BABEL converter: release json files + AMASS npz (synthetic SMPL-H) -> localization shards, checked by hand."""
import json

import numpy as np
import pytest

from shards.converters.babel import babel_items, babel_samples, moments_of
from shards.converters.common import amass_motion, write_dataset
from motion.importers.common import MotionImportError
from shards.reader import iter_decoded
from fixtures.mocap_builders import write_amass_npz, write_smplh_model
from tools import convert_babel


def label(raw, start=None, end=None, proc=None):
    out = {"raw_label": raw, "proc_label": proc or raw, "seg_id": "x", "act_cat": [proc or raw]}
    if start is not None:
        out.update(start_t=start, end_t=end)
    return out


def entry(sid, feat_p, dur, frame_labels):
    return {"babel_sid": int(sid), "url": f"https://example.org/{sid}.mp4", "feat_p": feat_p, "dur": dur,
            "seq_ann": {"babel_lid": "a", "anntr_id": "b", "mul_act": True, "labels": [label("walk")]},
            "frame_ann": None if frame_labels is None else
            {"babel_lid": "c", "anntr_id": "d", "mul_act": True, "labels": frame_labels}}


@pytest.fixture(scope="module")
def babel(tmp_path_factory):
    root = tmp_path_factory.mktemp("babel")
    models = root / "body_models"
    models.mkdir()
    write_smplh_model(models / "SMPLH_NEUTRAL.npz")
    amass = root / "amass"
    for i, rel in enumerate(["CMU/01/01_01_poses.npz", "CMU/01/01_02_poses.npz", "KIT/3/walk_poses.npz",
                             "KIT/3/run_poses.npz"]):
        (amass / rel).parent.mkdir(parents=True, exist_ok=True)
        write_amass_npz(amass / rel, n_frames=120, fps=60.0, seed=i)  # 2 s -> 40 frames -> 39 feature frames
    rel = root / "babel_v1.0_release"
    rel.mkdir()
    train = {
        "11": entry("11", "CMU/CMU/01/01_01_poses.npz", 2.0,  # feat_p starts with the archive name
                    [label("walk forward", 0.0, 1.0), label("transition", 1.0, 1.2),
                     label("turn left", 1.2, 5.0), label("stand", 1.5, 1.5)]),
        "12": entry("12", "CMU/CMU/01/01_02_poses.npz", 2.0, None),  # sequence-level labels only
        "13": entry("13", "KIT/KIT/3/walk_poses.npz", 2.0, [label("jog lightly", 0.25, 0.75, proc="jog")]),
    }
    extra_train = {"11": dict(train["11"], frame_ann=None, frame_anns=[
        {"babel_lid": "e", "anntr_id": "f", "mul_act": True,
         "labels": [label("wave", 0.5, 1.5), label("walk forward", 0.0, 1.0), label("t", 0, 1, proc="transition")]}])}
    val = {"21": entry("21", "KIT/KIT/3/run_poses.npz", 2.0, [label("run", 0.0, 1.9)])}
    for name, data in [("train.json", train), ("extra_train.json", extra_train), ("val.json", val)]:
        (rel / name).write_text(json.dumps(data))
    return {"release": rel, "amass": amass, "models": models}


def test_items_merge_extra_labels_and_hold_out_val(babel):
    items = babel_items(babel["release"], val_fraction=0.5, seed=0)
    assert sorted(items) == ["test", "train", "val"]
    assert [sid for _, sid, _ in items["test"]] == ["21"]  # BABEL val is the test split (MLP)
    held = [sid for _, sid, _ in items["train"] + items["val"]]
    assert sorted(held) == ["11", "13"] and len(items["val"]) == 1  # 12 has no frame labels
    assert babel_items(babel["release"], val_fraction=0.5, seed=0) == items  # seeded
    labels = next(e for _, sid, e in items["train"] + items["val"] if sid == "11")["labels"]
    assert len(labels) == 7  # 4 main + 3 extra, filtered later by moments_of


def test_moments_drop_transitions_clip_and_dedupe():
    labels = [label("walk forward", 0.0, 1.0), label("transition", 1.0, 1.2), label("turn left", 1.2, 5.0),
              label("stand", 1.5, 1.5), label("wave", 0.5, 1.5), label("walk forward", 0.0, 1.0),
              label("t", 0, 1, proc="transition"), label("  ", 0, 1)]
    assert moments_of(labels, 1.95, "seq") == [
        {"text": "walk forward", "start": 0.0, "end": 1.0}, {"text": "turn left", "start": 1.2, "end": 1.95},
        {"text": "wave", "start": 0.5, "end": 1.5}]
    with pytest.raises(MotionImportError, match="seq: frame label 'x' lacks numeric start_t/end_t"):
        moments_of([label("x")], 2.0, "seq")


def test_convert_writes_localization_samples(babel, tmp_path):
    items = babel_items(babel["release"], val_fraction=0.0)
    out = tmp_path / "out"
    indices = write_dataset({s: babel_samples(v, babel["amass"], babel["models"], mirror=True)
                             for s, v in items.items()}, str(out), dataset="babel")
    assert {s: i.total for s, i in indices.items()} == {"train": 4, "test": 2}  # with mirrored copies
    samples = {s["key"]: s for s in iter_decoded(sorted(str(p) for p in out.glob("*/*.tar")))}
    s11 = samples["babel/11"]
    features, _ = amass_motion(babel["amass"] / "CMU/01/01_01_poses.npz", babel["models"])
    np.testing.assert_allclose(s11["motion"], features, atol=1e-6)
    assert s11["motion"].shape == (39, 263) and s11["meta"]["duration"] == pytest.approx(1.95)
    assert s11["meta"]["texts"] == [] and s11["meta"]["split"] == "train"
    assert [m["text"] for m in s11["meta"]["moments"]] == ["walk forward", "turn left", "wave"]
    assert s11["meta"]["moments"][1] == {"text": "turn left", "start": 1.2, "end": 1.95}
    assert [m["text"] for m in samples["babel/M11"]["meta"]["moments"]] == ["walk forward", "turn right", "wave"]
    assert samples["babel/21"]["meta"]["split"] == "test" and "babel/12" not in samples


def test_cli_reports_missing_amass_file(babel, tmp_path, capsys):
    code = convert_babel.main([str(babel["release"]), "--amass-root", str(tmp_path / "nowhere"),
                               "--body-model-dir", str(babel["models"]), "-o", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert "AMASS sequence not found" in err and "--amass-root" in err
