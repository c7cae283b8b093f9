"""trimo-convert: folder conversion with good and bad files, outputs, exit status."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from fixtures.mocap_builders import walking_bvh
from motion.importers import load_motion
from motion.features import features_to_joints, joints_to_features
from tools.convert_mocap import EXIT_NOTHING, EXIT_OK, EXIT_SOME_FAILED, main

FIXTURES = Path(__file__).parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def make_inputs(root: Path) -> dict[str, Path]:
    (root / "bvh").mkdir(parents=True)
    (root / "arrays").mkdir()
    good_bvh = walking_bvh(root / "bvh" / "walk.bvh", n_frames=60)
    cmu = load_motion(FIXTURES / "cmu_walk_60fps.amc", fps=60.0).to_canonical()
    np.save(root / "arrays" / "cmu_joints.npy", cmu)  # 20 fps joints, the .npy default
    truncated = root / "bvh" / "truncated.bvh"
    truncated.write_text("\n".join(good_bvh.read_text().splitlines()[:-5]) + "\n")
    np.save(root / "arrays" / "wrong_shape.npy", np.zeros((10, 24, 3)))
    nan = np.array(cmu)
    nan[4, 3, 0] = np.nan
    np.save(root / "arrays" / "nan_frames.npy", nan)
    np.save(root / "arrays" / "one_frame.npy", cmu[:1])
    np.savez(root / "arrays" / "amass_poses.npz", poses=np.zeros((5, 156)))
    (root / "notes.txt").write_text("not mocap")  # ignored: not a mocap extension
    return {"walk": good_bvh, "cmu": root / "arrays" / "cmu_joints.npy"}


def test_folder_with_good_and_bad_files(tmp_path, capsys):
    good = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    rc = main([str(tmp_path / "in"), "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == EXIT_SOME_FAILED == 1
    failed = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 5
    reasons = {Path(line.split(":")[0].removeprefix("FAILED ")).name: line for line in failed}
    assert "truncated" in reasons["truncated.bvh"]
    assert "expected (T, 22, 3)" in reasons["wrong_shape.npy"]
    assert "NaN" in reasons["nan_frames.npy"] and "frames 4" in reasons["nan_frames.npy"]
    assert "1 frame" in reasons["one_frame.npy"]
    assert "body_model_dir" in reasons["amass_poses.npz"]
    assert "converted 2 of 7 file(s)" in captured.out and "5 failed" in captured.out

    # good files: canonical joints and features at 20 fps, folder layout kept
    walk_joints = np.load(out / "bvh" / "walk.joints.npy")
    walk_feats = np.load(out / "bvh" / "walk.features.npy")
    assert walk_joints.shape == (40, 22, 3) and walk_feats.shape == (39, 263)  # 2 s at 30 -> 20 fps
    assert walk_joints.dtype == walk_feats.dtype == np.float32
    expected = load_motion(good["walk"]).to_canonical()
    np.testing.assert_allclose(walk_joints, expected, atol=1e-6)
    np.testing.assert_allclose(walk_feats, joints_to_features(expected), atol=1e-6)
    assert np.abs(features_to_joints(walk_feats.astype(np.float64)) - walk_joints[:-1]).max() < 1e-4
    assert (out / "arrays" / "cmu_joints.joints.npy").is_file() and (out / "arrays" / "cmu_joints.features.npy").is_file()
    assert not (out / "arrays" / "one_frame.joints.npy").exists()

    # converting again does not pick up its own outputs when they sit inside the input folder
    rc = main([str(tmp_path / "in" / "bvh"), "-o", str(tmp_path / "in" / "bvh" / "converted")])
    assert rc == EXIT_SOME_FAILED
    assert "converted 1 of 2" in capsys.readouterr().out


def test_all_good_exit_zero_and_nothing_to_do(tmp_path, capsys):
    bvh = walking_bvh(tmp_path / "one.bvh", n_frames=12)
    assert main([str(bvh), "-o", str(tmp_path / "o"), "--mapping", "lafan1", "--units", "cm"]) == EXIT_OK
    assert np.load(tmp_path / "o" / "one.joints.npy").shape == (8, 22, 3)
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "-o", str(tmp_path / "o2")]) == EXIT_NOTHING == 2
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "o3")]) == EXIT_NOTHING
    assert "not found" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    bvh = walking_bvh(tmp_path / "w.bvh", n_frames=12)
    bad = tmp_path / "bad.bvh"
    bad.write_text("HIERARCHY\nROOT Hips\n{\n")
    res = subprocess.run([sys.executable, "-m", "tools.convert_mocap", str(tmp_path), "-o", str(tmp_path / "out"),
                          "--mapping", "mixamo"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 1
    # mixamo expects LeftToeBase: both files fail, each with a one-line reason naming it
    assert res.stderr.count("FAILED") == 2 and "bad.bvh" in res.stderr and "LeftToeBase" in res.stderr
    assert not (tmp_path / "out" / "w.joints.npy").exists()
    assert bvh.is_file()


def test_convert_features_rewrites_a_set_in_the_other_definition(tmp_path, capsys):
    """trimo-convert-features: from stored joints the result is exactly the other definition of
    those joints; without joints it goes through features_to_joints and says its round-trip error."""
    import sys as _sys

    _sys.path.insert(0, str(REPO / "tests" / "shards"))
    from test_converters_kitml import TEXTS, write_kitml

    from motion.features import joints_to_features
    from shards.reader import iter_decoded, load_index
    from tools import convert_features, convert_kitml

    kit = write_kitml(tmp_path / "KIT-ML", {"00001": 40, "00002": 30}, TEXTS, {"train": ["00001", "00002"]})
    for joints_flag, name in ((["--with-joints"], "with"), ([], "without")):
        assert convert_kitml.main([str(kit), "-o", str(tmp_path / name), "--splits", "train", *joints_flag]) == 0
        out = tmp_path / f"{name}_h3d"
        assert convert_features.main([str(tmp_path / name), "-o", str(out), "--to", "humanml3d", "--check", "2"]) == 0
        index = load_index(str(out / "train"))
        assert index.motion_features == "humanml3d" and index.total == 2 and index.feature_stats is not None
        printed = capsys.readouterr().out
        error = float(printed.split("largest difference ")[1].split()[0])
        samples = list(iter_decoded(sorted(str(p) for p in (out / "train").glob("*.tar"))))
        if name == "with":
            for s in samples:
                np.testing.assert_allclose(s["motion"], joints_to_features(s["joints"], definition="humanml3d"),
                                           atol=1e-5)
        else:
            assert [len(s["motion"]) for s in samples] == [62 - 1, 46 - 1]   # one frame shorter
        assert error < 0.05
