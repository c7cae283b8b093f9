"""KIT-ML converter: MMM joints (21, mm, 12.5 fps) in the released layout -> 22-joint 263-d shards at 20 fps."""
import numpy as np
import pytest

from shards.converters.common import write_dataset
from shards.converters.kitml import KIT_JOINT_NAMES, kit_to_smpl22, kitml_samples
from motion.importers.common import MotionImportError
from motion.features import features_to_joints
from shards.reader import iter_decoded
from motion.skeleton import JOINT_NAMES
from tools import convert_kitml

# The MMM joint order as published with KIT-ML (language2pose's joint list): written out here, not
# taken from the converter, so that a wrong order there fails these tests.
PUBLISHED_ORDER = ("root", "BP", "BT", "BLN", "BUN", "LS", "LE", "LW", "RS", "RE", "RW",
                   "LH", "LK", "LA", "LMrot", "LF", "RH", "RK", "RA", "RMrot", "RF")
# An MMM T-pose in millimetres, Y up, facing +Z: the left side at +X.
REST = {"root": (0, 1000, 0), "BP": (0, 1100, 0), "BT": (0, 1250, 0), "BLN": (0, 1450, 0), "BUN": (0, 1600, 0),
        "RS": (-180, 1420, 0), "RE": (-450, 1420, 0), "RW": (-700, 1420, 0),
        "LS": (180, 1420, 0), "LE": (450, 1420, 0), "LW": (700, 1420, 0),
        "RH": (-90, 950, 0), "RK": (-90, 520, 0), "RA": (-90, 90, 0), "RMrot": (-90, 30, 110), "RF": (-90, 20, 170),
        "LH": (90, 950, 0), "LK": (90, 520, 0), "LA": (90, 90, 0), "LMrot": (90, 30, 110), "LF": (90, 20, 170)}


def kit_walk(n_frames: int, seed: int = 0) -> np.ndarray:
    """(T, 21, 3) mm: the T-pose moving forward at 1 m/s (12.5 fps) with bending knees."""
    rng = np.random.default_rng(seed)
    rest = np.array([REST[n] for n in PUBLISHED_ORDER], dtype=np.float64)
    t = np.arange(n_frames) / 12.5
    out = np.repeat(rest[None], n_frames, axis=0)
    out[:, :, 2] += 1000.0 * t[:, None]
    for knee, sign in ((12, 1), (17, -1)):
        out[:, knee, 2] += sign * 60.0 * np.sin(2 * np.pi * t)
    return out + rng.normal(0, 1.0, out.shape)


def write_kitml(root, ids: dict[str, int], texts: dict[str, str], splits: dict[str, list[str]]):
    for sub in ("new_joints", "new_joint_vecs", "texts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (sample_id, n) in enumerate(ids.items()):
        joints = kit_walk(n, seed=i)
        if sample_id.startswith("M"):  # KIT-ML ships mirrored joints: X negated, sides swapped
            joints = kit_walk(n, seed=i)[:, [0, 1, 2, 3, 4, 8, 9, 10, 5, 6, 7, 16, 17, 18, 19, 20, 11, 12, 13, 14, 15]]
            joints[..., 0] *= -1
        np.save(root / "new_joints" / f"{sample_id}.npy", joints.astype(np.float32))
        np.save(root / "new_joint_vecs" / f"{sample_id}.npy", np.zeros((n - 1, 251), np.float32))
        (root / "texts" / f"{sample_id}.txt").write_text(texts[sample_id])
    for split, members in splits.items():
        (root / f"{split}.txt").write_text("\n".join(members) + "\n")
    return root


TEXTS = {"00001": "a person walks forward#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n",
         "M00001": "a person walks forward#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n",
         "00002": "someone walks then stops#someone/PRON walk/VERB then/ADV stop/VERB#0.0#0.0\n"}


def test_mapping_takes_named_joints_and_interpolates_missing_ones():
    assert KIT_JOINT_NAMES == PUBLISHED_ORDER
    kit = np.random.default_rng(0).normal(size=(3, 21, 3))
    smpl = kit_to_smpl22(kit)
    name = {n: i for i, n in enumerate(PUBLISHED_ORDER)}
    for ours, theirs in [("pelvis", "root"), ("left_hip", "LH"), ("right_knee", "RK"), ("left_foot", "LMrot"),
                         ("neck", "BLN"), ("head", "BUN"), ("right_wrist", "RW"), ("left_shoulder", "LS")]:
        np.testing.assert_array_equal(smpl[:, JOINT_NAMES.index(ours)], kit[:, name[theirs]])
    collar = (kit[:, name["BLN"]] + kit[:, name["LS"]]) / 2
    np.testing.assert_allclose(smpl[:, JOINT_NAMES.index("left_collar")], collar)
    np.testing.assert_allclose(smpl[:, JOINT_NAMES.index("spine2")], (kit[:, name["BP"]] + kit[:, name["BT"]]) / 2)
    with pytest.raises(MotionImportError, match=r"expected \(T, 21, 3\)"):
        kit_to_smpl22(np.zeros((3, 22, 3)))


def test_convert_resamples_to_20fps_and_keeps_sides(tmp_path):
    root = write_kitml(tmp_path / "KIT-ML", {"00001": 50, "M00001": 50, "00002": 25}, TEXTS,
                       {"train": ["00001", "M00001"], "test": ["00002"]})
    out = tmp_path / "shards"
    reports = write_dataset({s: kitml_samples(root, s, with_joints=True) for s in ("train", "test")}, str(out),
                            dataset="kitml", length_filter=None)
    assert {s: r.converted for s, r in reports.items()} == {"train": 2, "test": 1}
    samples = {s["key"]: s for s in iter_decoded(sorted(str(p) for p in out.glob("*/*.tar")))}
    # 50 frames at 12.5 fps span 3.92 s -> 79 frames at 20 fps (t = 0, 0.05, ..., 3.9) -> 78 feature frames
    assert samples["kitml/00001"]["motion"].shape == (78, 263)
    assert samples["kitml/00001"]["joints"].shape == (79, 22, 3)
    assert samples["kitml/00002"]["motion"].shape == (38, 263)  # 25 frames: 1.92 s -> 39 -> 38
    meta = samples["kitml/00001"]["meta"]
    assert meta["duration"] == pytest.approx(78 / 20) and meta["skeleton_source"].startswith("kit-mmm-21")
    assert samples["kitml/M00001"]["meta"]["mirrored"] is True
    for key in ("kitml/00001", "kitml/M00001"):
        joints = features_to_joints(samples[key]["motion"])
        # facing +Z after canonicalization, SMPL's left joints are at +X: the sides were mapped right
        assert (joints[:, JOINT_NAMES.index("left_hip"), 0] > joints[:, JOINT_NAMES.index("right_hip"), 0]).all()
        assert (joints[:, JOINT_NAMES.index("left_wrist"), 0] > 0.3).all()
        # walking forward (1 m/s): the root advances along +Z; with left and right swapped the body
        # would face backwards and canonicalization would turn the walk towards -Z
        assert joints[-1, 0, 2] - joints[0, 0, 2] == pytest.approx(3.85, abs=0.4)


def test_missing_joints_names_the_251d_limitation(tmp_path, capsys):
    root = write_kitml(tmp_path / "KIT-ML", {"00001": 20}, TEXTS, {"test": ["00001"]})
    (root / "new_joints" / "00001.npy").unlink()
    assert convert_kitml.main([str(root), "-o", str(tmp_path / "out"), "--splits", "test"]) == 1
    err = capsys.readouterr().err
    assert "new_joints/00001.npy: missing" in err and "251-d" in err


def test_raising_the_left_arm_moves_the_left_wrist(tmp_path):
    """A KIT-order motion whose joint 7 (LW in the published list) rises: after conversion the
    canonical skeleton's LEFT wrist rises and the right one stays (KIT's sides as published)."""
    n = 40
    joints = kit_walk(n, seed=3)
    joints[:, :, 2] -= 1000.0 * (np.arange(n) / 12.5)[:, None]        # stand in place
    lift = np.linspace(0.0, 600.0, n)
    joints[:, 7, 1] += lift                                            # LW up, then LE half as much
    joints[:, 6, 1] += lift / 2
    root = tmp_path / "KIT-ML"
    for sub in ("new_joints", "texts"):
        (root / sub).mkdir(parents=True)
    np.save(root / "new_joints" / "00001.npy", joints.astype(np.float32))
    (root / "texts" / "00001.txt").write_text("a person raises the left arm#a/DET person/NOUN#0.0#0.0\n")
    (root / "test.txt").write_text("00001\n")
    sample = next(s for s in kitml_samples(root, "test", with_joints=True))
    canonical = sample["joints"]
    left, right = canonical[:, JOINT_NAMES.index("left_wrist")], canonical[:, JOINT_NAMES.index("right_wrist")]
    assert left[-1, 1] - left[0, 1] > 0.4                              # metres
    assert abs(right[-1, 1] - right[0, 1]) < 0.05
    assert (left[:, 0] > right[:, 0]).all()                            # canonical frame: left at +X


def test_features_option_computes_and_records_the_definition(tmp_path):
    """--features humanml3d: the released definition of the same joints, recorded in the index."""
    from motion.features import joints_to_features
    from shards.reader import load_index

    root = write_kitml(tmp_path / "KIT-ML", {"00001": 30}, TEXTS, {"test": ["00001"]})
    for definition in ("trimo", "humanml3d"):
        out = tmp_path / definition
        assert convert_kitml.main([str(root), "-o", str(out), "--splits", "test", "--with-joints",
                                   "--features", definition]) == 0
        assert load_index(str(out / "test")).motion_features == definition
        (sample,) = iter_decoded(sorted(str(p) for p in (out / "test").glob("*.tar")))
        np.testing.assert_allclose(sample["motion"], joints_to_features(sample["joints"], definition=definition),
                                   atol=1e-3)   # the stored joints are float32
