"""Mocap parsers: BVH (hand-computed FK, channel orders, units), ASF/AMC, mappings, HumanML3D folders,
and the one-line errors on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.mocap_builders import LAFAN1_REST, bvh_text, walking_bvh, write_humanml3d
from motion.importers import ImportedMotion, MotionImportError, load_motion
from motion.importers.asf_amc import load_asf_amc, parse_asf
from motion.importers.bvh import forward_kinematics, load_bvh, parse_bvh
from motion.importers.humanml3d import load_sample, read_split, read_texts
from motion.importers.mapping import JOINT_NAMES, PRESETS, resolve_mapping

FIXTURES = Path(__file__).parents[1] / "fixtures"
CMU_ASF, CMU_AMC = FIXTURES / "cmu_walk_60fps.asf", FIXTURES / "cmu_walk_60fps.amc"

# Root -> A -> B; root has 6 channels, A's rotation order is the parameter.
TINY_JOINTS = {"Root": (None, (0.0, 0.0, 0.0)), "A": ("Root", (0.0, 10.0, 0.0)), "B": ("A", (0.0, 0.0, 5.0))}


def tiny_bvh(tmp_path: Path, a_order: list[str], a_angles: dict[str, float], name: str = "tiny.bvh") -> Path:
    channels = {"Root": ["Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation"],
                "A": a_order, "B": ["Zrotation", "Xrotation", "Yrotation"]}
    motion = {"Root": [[1.0, 2.0, 3.0, 90.0, 0.0, 0.0]], "A": [[a_angles[c[0]] for c in a_order]], "B": [[0.0, 0.0, 0.0]]}
    path = tmp_path / name
    path.write_text(bvh_text(TINY_JOINTS, channels, motion))
    return path


def test_bvh_forward_kinematics_matches_hand_computation(tmp_path):
    # Root: at (1,2,3), Rz(90) maps (x, y) -> (-y, x). A = root + Rz(90) (0,10,0) = (-9, 2, 3).
    # A rotates Z=0 then X=90: Rx(90) (0,0,5) = (0,-5,0); Rz(90) of that = (5,0,0); B = (-4, 2, 3).
    clip = parse_bvh(tiny_bvh(tmp_path, ["Zrotation", "Xrotation", "Yrotation"], {"Z": 0.0, "X": 90.0, "Y": 0.0}))
    assert clip.names == ["Root", "A", "B"]
    pos = forward_kinematics(clip)
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [-9, 2, 3], [-4, 2, 3]], atol=1e-9)


def test_bvh_channel_order_is_the_written_order(tmp_path):
    angles = {"Z": 90.0, "X": 90.0, "Y": 90.0}
    # ZXY: Rz Rx Ry (0,0,5): Ry -> (5,0,0), Rx keeps it, Rz -> (0,5,0); then the root's Rz(90) -> (-5,0,0)
    zxy = forward_kinematics(parse_bvh(tiny_bvh(tmp_path, ["Zrotation", "Xrotation", "Yrotation"], angles, "zxy.bvh")))
    # XYZ: Rx Ry Rz (0,0,5): Rz keeps it, Ry -> (5,0,0), Rx keeps it; root's Rz(90) -> (0,5,0)
    xyz = forward_kinematics(parse_bvh(tiny_bvh(tmp_path, ["Xrotation", "Yrotation", "Zrotation"], angles, "xyz.bvh")))
    np.testing.assert_allclose(zxy[0, 2], np.array([-9, 2, 3]) + [-5, 0, 0], atol=1e-9)
    np.testing.assert_allclose(xyz[0, 2], np.array([-9, 2, 3]) + [0, 5, 0], atol=1e-9)


def test_load_bvh_maps_names_and_converts_centimetres(tmp_path):
    motion = load_bvh(walking_bvh(tmp_path / "walk.bvh", n_frames=30), mapping="lafan1")
    assert isinstance(motion, ImportedMotion) and motion.fps == 30.0
    assert motion.joints.shape == (30, 22, 3) and motion.joints.dtype == np.float64
    # frame 0 has zero rotations, so positions are the summed rest offsets (cm -> m)
    rest = {}
    for name, (parent, offset) in LAFAN1_REST.items():
        rest[name] = np.array(offset) + (rest[parent] if parent else 0.0)
    expected = np.stack([rest[PRESETS["lafan1"][j].name] for j in JOINT_NAMES]) / 100.0
    np.testing.assert_allclose(motion.joints[0], expected, atol=1e-6)
    assert motion.joint_names_used["left_foot"] == "LeftToe"
    # the same file in metres when asked explicitly
    np.testing.assert_allclose(load_bvh(tmp_path / "walk.bvh", units="m").joints, motion.joints * 100.0, atol=1e-9)


def test_mixamo_names_with_or_without_namespace(tmp_path):
    plain = load_bvh(walking_bvh(tmp_path / "a.bvh", n_frames=5), mapping="lafan1")
    prefixed = load_bvh(walking_bvh(tmp_path / "b.bvh", n_frames=5, prefix="mixamorig:", toe_name="ToeBase"),
                        mapping="mixamo")
    np.testing.assert_allclose(prefixed.joints, plain.joints, atol=1e-12)
    assert prefixed.joint_names_used["left_foot"] == "mixamorig:LeftToeBase"


def test_custom_mapping_file_json_and_yaml(tmp_path):
    bvh = walking_bvh(tmp_path / "walk.bvh", n_frames=5)
    mapping = {k: v.name for k, v in PRESETS["lafan1"].items()}
    mapping["left_foot"], mapping["right_foot"] = "LeftFoot", {"joint": "RightFoot", "at": "start"}
    (tmp_path / "m.json").write_text(json.dumps(mapping))
    (tmp_path / "m.yaml").write_text("\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"
                                               for k, v in mapping.items()))
    for file in ("m.json", "m.yaml"):
        motion = load_bvh(bvh, mapping=tmp_path / file)
        np.testing.assert_allclose(motion.joints[:, 10], motion.joints[:, 7])  # left_foot == left_ankle now
        np.testing.assert_allclose(motion.joints[:, 11], motion.joints[:, 8])


def test_unknown_joint_names_error_lists_missing_and_available(tmp_path):
    bvh = walking_bvh(tmp_path / "walk.bvh", n_frames=5)
    with pytest.raises(MotionImportError) as err:
        load_bvh(bvh, mapping="mixamo")  # expects LeftToeBase
    msg = str(err.value)
    assert "walk.bvh" in msg and "left_foot->LeftToeBase" in msg and "LeftToe" in msg and "mapping=" in msg
    assert "\n" not in msg
    bad = {k: v.name for k, v in PRESETS["lafan1"].items()}
    bad["left_pinky"] = "X"
    with pytest.raises(MotionImportError, match="unknown canonical joint name"):
        resolve_mapping(bad)
    with pytest.raises(MotionImportError, match="no source joint given"):
        resolve_mapping({"pelvis": "Hips"})
    with pytest.raises(MotionImportError, match="neither a preset .*lafan1.* nor an existing JSON/YAML file"):
        resolve_mapping("my_rig")


def test_clip_too_short_after_resampling():
    joints = np.zeros((3, 22, 3))
    joints[:, :, 1] = np.arange(22) * 0.05  # finite, non-degenerate values
    with pytest.raises(MotionImportError, match=r"clip\.bvh: only 1 frame\(s\) remain at 20.0 fps"):
        ImportedMotion(joints, 120.0, "clip.bvh").to_canonical()


def _write_truncations(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = walking_bvh(tmp_path / "good.bvh", n_frames=10).read_text().splitlines()
    motion_at = good.index("MOTION")
    cases = {
        "frames": ("\n".join(good[:-3]), "truncated"),                 # fewer frames than declared
        "hierarchy": ("\n".join(good[:12]), "MOTION"),                 # cut inside the hierarchy
        "count": ("\n".join(good[:-1] + [good[-1] + " 1.0"]), "values"),  # one extra channel value
        "text": ("\n".join(good[:-1] + [good[-1].replace(good[-1].split()[3], "abc", 1)]), "non-numeric"),
        "channel": ("\n".join(good).replace("Zrotation", "Qrotation", 1), "unknown channel"),
        "header": ("\n".join(good[:motion_at + 1] + ["Frames: x"] + good[motion_at + 2:]), "not numbers"),
    }
    out = {}
    for name, (text, problem) in cases.items():
        path = tmp_path / f"bad_{name}.bvh"
        path.write_text(text + "\n")
        out[name] = (path, problem)
    return out


def test_malformed_bvh_errors_name_file_line_and_problem(tmp_path):
    for name, (path, problem) in _write_truncations(tmp_path).items():
        with pytest.raises(MotionImportError) as err:
            load_bvh(path)
        msg = str(err.value)
        assert msg.startswith(str(path)), (name, msg)
        assert problem in msg, (name, msg)
        assert "\n" not in msg
        if name in ("count", "text", "channel", "header"):
            assert msg.split(":")[1].isdigit(), (name, msg)  # file:line


def test_asf_parsing_and_cmu_fixture_fk():
    skeleton = parse_asf(CMU_ASF)
    assert len(skeleton.bones) == 31 and skeleton.length_scale == 0.45
    assert skeleton.bones["ltibia"].parent == "lfemur" and skeleton.bones["lclavicle"].parent == "thorax"
    motion = load_asf_amc(CMU_ASF, CMU_AMC, fps=60.0)
    assert motion.joints.shape == (240, 22, 3) and motion.fps == 60.0
    j = motion.joints
    # rigid bones: FK must keep the femur length = ASF length / 0.45 inches
    femur = np.linalg.norm(j[:, 4] - j[:, 1], axis=-1)
    np.testing.assert_allclose(femur, 7.1578 / 0.45 * 0.0254, rtol=1e-9)
    tibia = np.linalg.norm(j[:, 7] - j[:, 4], axis=-1)
    np.testing.assert_allclose(tibia, 7.49137 / 0.45 * 0.0254, rtol=1e-9)
    # Y up: the head is above the pelvis, which is above the ankles, in every frame
    assert (j[:, 15, 1] > j[:, 0, 1]).all() and (j[:, 0, 1] > j[:, 7, 1]).all()
    # root position is the AMC's first three root values, in metres
    first_root = CMU_AMC.read_text().split("\nroot ")[1].split()[:3]
    np.testing.assert_allclose(j[0, 0], np.array(first_root, float) / 0.45 * 0.0254, rtol=1e-9)


def test_asf_amc_first_frame_matches_acclaim_formula():
    """Left knee by hand from the ASF/AMC numbers: G = C M C^-1 chained from the root."""
    from scipy.spatial.transform import Rotation

    def euler(order, angles):
        return Rotation.from_euler(order, angles, degrees=True).as_matrix()

    values = {}
    frame1 = CMU_AMC.read_text().split("\n1\n")[1].split("\n2\n")[0]
    for line in frame1.splitlines():
        name, *vals = line.split()
        values[name] = np.array(vals, float)
    root = values["root"]
    g_root = euler("xyz", root[3:6])
    c_hip, c_fem = np.eye(3), euler("xyz", [0, 0, 20])
    g_hip = g_root @ c_hip @ c_hip.T  # lhipjoint has no dofs
    g_fem = g_hip @ c_fem @ euler("xyz", values["lfemur"]) @ c_fem.T
    def unit(v):
        return np.array(v) / np.linalg.norm(v)

    hip = root[:3] + g_hip @ (unit([0.566809, -0.746272, 0.349008]) * 2.40479)
    knee = hip + g_fem @ (unit([0.34202, -0.939693, 0]) * 7.1578)
    motion = load_asf_amc(CMU_ASF, CMU_AMC, fps=60.0)
    np.testing.assert_allclose(motion.joints[0, 1], hip / 0.45 * 0.0254, atol=1e-12)
    np.testing.assert_allclose(motion.joints[0, 4], knee / 0.45 * 0.0254, atol=1e-12)


def test_asf_amc_in_radians_gives_the_same_joints(tmp_path):
    """`:units angle rad` applies to ASF axis angles and AMC rotations alike."""
    asf_lines = []
    for line in CMU_ASF.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["angle"]:
            line = "  angle rad"
        elif parts[:1] == ["axis"] and len(parts) == 5:
            line = "axis " + " ".join(str(np.radians(float(v))) for v in parts[1:4]) + " " + parts[4]
        asf_lines.append(line)
    amc_lines = []
    for line in CMU_AMC.read_text().splitlines():
        parts = line.split()
        if len(parts) > 1 and not line.startswith(("#", ":")):
            vals = np.array(parts[1:], float)
            rot = slice(3, None) if parts[0] == "root" else slice(None)
            vals[rot] = np.radians(vals[rot])
            line = parts[0] + " " + " ".join(repr(float(v)) for v in vals)
        amc_lines.append(line)
    (tmp_path / "rad.asf").write_text("\n".join(asf_lines) + "\n")
    (tmp_path / "rad.amc").write_text("\n".join(amc_lines) + "\n")
    rad = load_asf_amc(tmp_path / "rad.asf", tmp_path / "rad.amc", fps=60.0)
    deg = load_asf_amc(CMU_ASF, CMU_AMC, fps=60.0)
    np.testing.assert_allclose(rad.joints, deg.joints, atol=1e-9)


def test_amc_errors(tmp_path):
    text = CMU_AMC.read_text()
    cut = tmp_path / "cut.amc"
    head, tail = text.split("\n5\n")
    cut.write_text(head + "\n5\n" + "\n".join(tail.splitlines()[:3]) + "\n")  # frame 5 has 3 of its bones
    with pytest.raises(MotionImportError, match=r"cut\.amc.*missing in 1 frame"):
        load_asf_amc(CMU_ASF, cut)
    wrong = tmp_path / "wrong.amc"
    wrong.write_text(text.replace("\nltibia ", "\nltibia 1.0 ", 1))
    with pytest.raises(MotionImportError, match=r"wrong\.amc:\d+: bone 'ltibia' has 2 values, the ASF declares 1"):
        load_asf_amc(CMU_ASF, wrong)


def test_load_motion_dispatch_and_npy(tmp_path):
    amc = tmp_path / "clip.amc"
    amc.write_text(CMU_AMC.read_text())
    (tmp_path / "clip.asf").write_text(CMU_ASF.read_text())
    assert load_motion(amc, fps=60).joints.shape == (240, 22, 3)
    joints = np.random.default_rng(0).normal(size=(7, 22, 3))
    np.save(tmp_path / "j.npy", joints)
    loaded = load_motion(tmp_path / "j.npy")
    np.testing.assert_array_equal(loaded.joints, joints)
    assert loaded.fps == 20.0
    with pytest.raises(MotionImportError, match=r"x\.xyz: unsupported extension"):
        (tmp_path / "x.xyz").write_text("")
        load_motion(tmp_path / "x.xyz")
    with pytest.raises(MotionImportError, match=r"x\.txt: not a DeepMimic motion file"):
        (tmp_path / "x.txt").write_text("")
        load_motion(tmp_path / "x.txt")
    with pytest.raises(MotionImportError, match=r"y\.npz: AMASS .npz needs .*body_model_dir="):
        np.savez(tmp_path / "y.npz", a=np.zeros(1))
        load_motion(tmp_path / "y.npz")


@pytest.mark.parametrize("case, problem", [
    ("nan", "NaN"), ("zero", "0 frame"), ("one", "1 frame"), ("shape", "expected (T, 22, 3)"), ("object", "cannot read"),
])
def test_bad_arrays_give_one_line_errors(tmp_path, case, problem):
    arrays = {"nan": np.ones((5, 22, 3)), "zero": np.zeros((0, 22, 3)), "one": np.zeros((1, 22, 3)),
              "shape": np.zeros((5, 24, 3)), "object": np.array([{"a": 1}], dtype=object)}
    arr = arrays[case]
    if case == "nan":
        arr[3, 4, 1] = np.nan
    path = tmp_path / f"{case}.npy"
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(MotionImportError) as err:
        load_motion(path)
    msg = str(err.value)
    assert f"{case}.npy" in msg and problem in msg and "\n" not in msg
    if case == "nan":
        assert "frames 3" in msg


def test_bvh_nan_and_one_frame(tmp_path):
    text = walking_bvh(tmp_path / "w.bvh", n_frames=4).read_text().splitlines()
    nan = tmp_path / "nan.bvh"
    nan.write_text("\n".join(text[:-1] + [text[-1].replace(text[-1].split()[5], "nan", 1)]))
    with pytest.raises(MotionImportError, match=r"nan\.bvh: 1 frame\(s\) have NaN.*frames 3"):
        load_bvh(nan)
    one = tmp_path / "one.bvh"
    frames_at = text.index("Frames: 4")
    one.write_text("\n".join(text[:frames_at] + ["Frames: 1"] + text[frames_at + 1:frames_at + 3]))
    with pytest.raises(MotionImportError, match=r"one\.bvh: clip has 1 frame"):
        load_bvh(one)


# --- HumanML3D released folders -------------------------------------------------------------

TEXTS = {
    "000001": "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n"
              "someone steps ahead then stops#someone/PRON step/VERB ahead/ADV then/ADV stop/VERB#1.5#3.25\n",
    "M000001": "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#nan#nan\n",
    "000002": "the man waves his left hand#the/DET man/NOUN wave/VERB his/DET left/ADJ hand/NOUN#0.0#0.0\n",
}


def test_humanml3d_reader_on_the_released_layout(tmp_path):
    root = write_humanml3d(tmp_path / "HumanML3D", {"000001": 12, "M000001": 12, "000002": 9}, TEXTS,
                           {"train": ["000001", "M000001"], "test": ["000002"]})
    assert read_split(root, "train") == ["000001", "M000001"]
    samples = [load_sample(root, i) for i in read_split(root, "train")]
    assert [s.id for s in samples] == ["000001", "M000001"] and [s.mirrored for s in samples] == [False, True]
    s = samples[0]
    np.testing.assert_array_equal(s.features, np.load(root / "new_joint_vecs" / "000001.npy"))
    assert s.features.shape == (11, 263) and s.joints.shape == (12, 22, 3)
    assert s.texts[0] == {"text": "a person walks forward.", "tokens": ["a/DET", "person/NOUN", "walk/VERB", "forward/ADV"],
                          "start": None, "end": None}
    assert s.texts[1]["start"] == 1.5 and s.texts[1]["end"] == 3.25
    assert samples[1].texts[0]["start"] is None  # nan = whole clip


def test_humanml3d_without_joints_and_malformed_lines(tmp_path):
    root = write_humanml3d(tmp_path / "H", {"000002": 9}, TEXTS, {"test": ["000002"]}, with_joints=False)
    assert load_sample(root, "000002").joints is None
    bad = root / "texts" / "000002.txt"
    bad.write_text(TEXTS["000002"] + "only a caption\n")
    with pytest.raises(MotionImportError, match=r"000002\.txt:2: expected 4 '#'-separated fields"):
        read_texts(bad)
    bad.write_text("walks#walk/VERB#one#2.0\n")
    with pytest.raises(MotionImportError, match=r"000002\.txt:1: time 'one'#'2.0' is not a number"):
        read_texts(bad)
    np.save(root / "new_joint_vecs" / "000002.npy", np.zeros((5, 251), np.float32))
    with pytest.raises(MotionImportError, match=r"000002\.npy: features has shape \(5, 251\)"):
        load_sample(root, "000002")
    with pytest.raises(MotionImportError, match=r"val\.txt: split file not found"):
        read_split(root, "val")


def test_caption_lines_are_read_as_humanml3d_reads_them(tmp_path):
    """NaN is 0.0 (HumanML3D's loaders), a reversed span is swapped, an empty span and a malformed
    line are left out and reported (strict readers raise on them)."""
    path = tmp_path / "000001.txt"
    path.write_text("whole clip#a/DET#nan#nan\n"
                    "from the start#a/DET#nan#3.5\n"
                    "reversed#a/DET#5.0#2.0\n"
                    "empty#a/DET#3.0#3.0\n"
                    "only a caption\n"
                    "fine#a/DET#1.0#2.0\n")
    bad: list[str] = []
    texts = read_texts(path, bad)
    assert [(t["text"], t["start"], t["end"]) for t in texts] == [
        ("whole clip", None, None), ("from the start", 0.0, 3.5), ("reversed", 2.0, 5.0), ("fine", 1.0, 2.0)]
    assert len(bad) == 2 and "000001.txt:4: empty time span 3.0#3.0" in bad[0] and "000001.txt:5:" in bad[1]
    with pytest.raises(MotionImportError, match="000001.txt:4: empty time span"):
        read_texts(path)
