"""BABEL converter: release json files + AMASS npz (synthetic SMPL-H) -> localization shards, checked by hand."""
import json

import numpy as np
import pytest

from shards.converters.babel import babel_items, babel_samples, moments_of
from shards.converters.common import amass_motion, write_dataset
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
    # extra_*.json as released: lists of annotations (seq_anns, frame_anns) per sequence, and
    # sequences that are only there (14)
    extra_train = {
        "11": {k: v for k, v in train["11"].items() if k not in ("seq_ann", "frame_ann")} | {
            "seq_anns": [train["11"]["seq_ann"]],
            "frame_anns": [{"babel_lid": "e", "anntr_id": "f", "mul_act": True,
                            "labels": [label("wave", 0.5, 1.5), label("walk forward", 0.0, 1.0),
                                       label("t", 0, 1, proc="transition")]}]},
        "14": {"babel_sid": 14, "url": "https://example.org/14.mp4", "feat_p": "KIT/KIT/3/walk_poses.npz",
               "dur": 2.0, "seq_anns": [], "frame_anns": [
                   {"babel_lid": "g", "anntr_id": "h", "mul_act": False, "labels": [label("kick", 0.2, 0.9)]},
                   {"babel_lid": "i", "anntr_id": "j", "mul_act": False, "labels": [label("kick high", 0.3, 1.0)]}]},
    }
    val = {"21": entry("21", "KIT/KIT/3/run_poses.npz", 2.0, [label("run", 0.0, 1.9)])}
    for name, data in [("train.json", train), ("extra_train.json", extra_train), ("val.json", val)]:
        (rel / name).write_text(json.dumps(data))
    return {"release": rel, "amass": amass, "models": models}


def test_items_merge_extra_labels_and_hold_out_val(babel):
    items = babel_items(babel["release"], val_fraction=0.5, seed=0)
    assert sorted(items) == ["test", "train", "val"]
    assert [sid for _, sid, _ in items["test"]] == ["21"]  # BABEL val is the test split (MLP)
    held = [sid for _, sid, _ in items["train"] + items["val"]]
    assert sorted(held) == ["11", "13", "14"] and len(items["val"]) == 2  # 12 has no frame labels
    only_extra = next(e for _, sid, e in items["train"] + items["val"] if sid == "14")
    assert only_extra["feat_p"] == "KIT/KIT/3/walk_poses.npz" and len(only_extra["labels"]) == 2   # both annotators
    without_extras = babel_items(babel["release"], val_fraction=0.0, extra=False)
    assert [sid for _, sid, _ in without_extras["train"]] == ["11", "13"]
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
    bad: list[str] = []
    assert moments_of([label("x"), label("y", 0.0, 1.0)], 2.0, "seq", bad) == [{"text": "y", "start": 0.0, "end": 1.0}]
    assert bad == ["seq: frame label 'x' lacks numeric start_t/end_t"]


def test_convert_writes_localization_samples(babel, tmp_path):
    items = babel_items(babel["release"], val_fraction=0.0)
    out = tmp_path / "out"
    reports = write_dataset({s: babel_samples(v, babel["amass"], babel["models"], mirror=True)
                             for s, v in items.items()}, str(out), dataset="babel")
    assert {s: r.converted for s, r in reports.items()} == {"train": 6, "test": 2}  # with mirrored copies
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
    assert [m["text"] for m in samples["babel/14"]["meta"]["moments"]] == ["kick", "kick high"]


def test_cli_reports_missing_amass_file(babel, tmp_path, capsys):
    code = convert_babel.main([str(babel["release"]), "--amass-root", str(tmp_path / "nowhere"),
                               "--body-model-dir", str(babel["models"]), "-o", str(tmp_path / "o")])
    assert code == 1                                    # every sequence skipped: nothing converted
    captured = capsys.readouterr()
    assert "AMASS sequence not found" in captured.err and "--amass-root" in captured.err
    assert "skipped {'amass_file_missing': 3}" in captured.out and "nothing converted" in captured.err


def test_dry_run_reads_the_release_without_the_body_model(babel, tmp_path, capsys):
    """--dry-run: no body model (a folder that does not exist), nothing written, the counts that a
    real run gives (4 train/val sequences and the test one, a broken AMASS file skipped)."""
    broken = babel["amass"] / "KIT/3/broken_poses.npz"
    np.savez(broken, betas=np.zeros(16))                 # a shape.npz-like file: no poses
    release = tmp_path / "release"
    release.mkdir()
    for f in babel["release"].iterdir():
        (release / f.name).write_text(f.read_text())
    val = json.loads((release / "val.json").read_text())
    val["22"] = entry("22", "KIT/KIT/3/broken_poses.npz", 2.0, [label("run", 0.0, 1.0)])
    (release / "val.json").write_text(json.dumps(val))
    out = tmp_path / "dry"
    assert convert_babel.main([str(release), "--amass-root", str(babel["amass"]), "--body-model-dir",
                               str(tmp_path / "no_models"), "-o", str(out), "--dry-run", "--val-fraction", "0"]) == 0
    printed = capsys.readouterr().out
    assert "train: would convert 3 samples" in printed
    assert "test: would convert 1 samples; skipped {'not_a_sequence': 1}" in printed
    assert not out.exists()
