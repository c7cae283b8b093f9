"""Real mocap through the whole import path: CMU (trimmed fixture, and the full clip) and LAFAN1
(only from ../shared, never copied into the repo) -> canonical joints -> 263 features -> joints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from motion.importers import ImportedMotion, load_motion
from motion.features import features_to_joints
from motion.skeleton import DEFAULT_BONE_LENGTHS, bone_lengths, facing_angles

FIXTURES = Path(__file__).parents[1] / "fixtures"
FEET = [7, 8, 10, 11]


def check_canonical(motion: ImportedMotion, min_speed: float = 0.2) -> dict[str, float]:
    joints = motion.to_canonical()
    assert joints.shape[1:] == (22, 3)
    n_expected = int(np.floor((motion.num_frames - 1) * 20.0 / motion.fps)) + 1
    assert abs(len(joints) - n_expected) <= 1
    lengths = bone_lengths(joints)[:, 1:]
    assert lengths.std(axis=0).max() < 1e-3  # rigid bones over time (< 1 mm)
    np.testing.assert_allclose(lengths[0], DEFAULT_BONE_LENGTHS[1:], atol=1e-6)  # the uniform skeleton
    lowest = joints[..., 1].min(axis=1)
    assert abs(joints[:, FEET, 1].min()) < 0.01  # floor at the feet
    assert np.isin(joints[..., 1].argmin(axis=1)[np.argsort(lowest)[:10]], FEET).all()
    # pelvis above the lowest foot of the same frame (the CMU subject steps onto raised terrain),
    # in the most upright 10 % of frames (LAFAN1 also crouches and crawls)
    pelvis = float(np.percentile(joints[:, 0, 1] - joints[:, FEET, 1].min(axis=1), 90))
    assert 0.8 <= pelvis <= 1.1, pelvis
    root_xz = joints[:, 0, [0, 2]]
    speed = float(np.linalg.norm(np.diff(root_xz, axis=0), axis=1).mean() * 20.0)
    assert min_speed <= speed <= 2.5, speed  # people walk at ~0.5-1.8 m/s
    np.testing.assert_allclose(joints[0, 0, [0, 2]], 0.0, atol=1e-9)
    # first frame faces +Z with the feature pipeline's smoothed facing
    assert abs(facing_angles(joints, 20.0)[0]) < 1e-6
    features = motion.features()
    assert features.shape == (len(joints) - 1, 263) and features.dtype == np.float32
    back = features_to_joints(features.astype(np.float64))
    assert np.abs(back - joints[:-1]).max() <= 1e-4  # float32 storage included
    return {"pelvis": pelvis, "speed": speed, "frames": len(joints)}


def test_cmu_fixture_canonical_and_round_trip():
    motion = load_motion(FIXTURES / "cmu_walk_60fps.amc", fps=60.0)
    stats = check_canonical(motion)
    assert stats["frames"] == 80  # 4 s at 20 fps


def test_cmu_full_clip(shared_mocap):
    motion = load_motion(shared_mocap / "cmu" / "cmu_clip_a.amc")
    assert motion.fps == 120.0 and motion.num_frames == 2751
    check_canonical(motion)


@pytest.mark.parametrize("clip, frames", [("lafan1_clip_a.bvh", 7184), ("lafan1_clip_b.bvh", 3945)])
def test_lafan1_clips(shared_mocap, clip, frames):
    motion = load_motion(shared_mocap / "lafan1" / clip)  # preset lafan1, units auto (cm)
    assert motion.fps == 30.0 and motion.num_frames == frames
    raw_pelvis = np.median(motion.joints[:, 0, 1])
    assert 0.7 < raw_pelvis < 1.1  # centimetres were detected and converted
    check_canonical(motion)
